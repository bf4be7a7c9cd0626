"""Loss registry: loss.name maps to one builder taking the loss section."""

from __future__ import annotations

from collections.abc import Callable

import keras

from imgclf.params import LossParams


def _categorical_crossentropy(params: LossParams) -> keras.losses.Loss:
    return keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)


def _focal(params: LossParams) -> keras.losses.Loss:
    return keras.losses.CategoricalFocalCrossentropy(
        alpha=params.focal_alpha, gamma=params.focal_gamma, label_smoothing=params.label_smoothing
    )


LOSSES: dict[str, Callable[[LossParams], keras.losses.Loss]] = {
    "categorical_crossentropy": _categorical_crossentropy,
    "focal": _focal,
}


def build_loss(params: LossParams) -> keras.losses.Loss:
    """Build the loss named by params.name; losses take one-hot labels."""
    try:
        builder = LOSSES[params.name]
    except KeyError:
        raise ValueError(f"unknown loss.name {params.name!r}; valid: {', '.join(LOSSES)}") from None
    return builder(params)
