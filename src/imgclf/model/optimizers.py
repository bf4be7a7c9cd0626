"""Optimizer and learning-rate schedule registries."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
from keras import ops

from imgclf.params import OptimizerParams


@keras.saving.register_keras_serializable(package="imgclf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to the peak rate, then constant, cosine or exponential decay."""

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        decay: str = "constant",
        decay_rate_per_step: float = 1.0,
    ) -> None:
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay
        self.decay_rate_per_step = decay_rate_per_step

    def __call__(self, step):  # noqa: D102 - Keras calls this with the optimizer's iteration
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        warm = self.peak_learning_rate * ops.minimum((step + 1.0) / warmup, 1.0)
        after = ops.maximum(step - self.warmup_steps, 0.0)
        if self.decay == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = ops.minimum(after / span, 1.0)
            factor = 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.decay == "exponential":
            factor = ops.power(self.decay_rate_per_step, after)
        else:
            factor = ops.ones_like(after)
        if self.warmup_steps > 0:
            return ops.where(step < self.warmup_steps, warm, self.peak_learning_rate * factor)
        return self.peak_learning_rate * factor

    def get_config(self) -> dict:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "decay_rate_per_step": self.decay_rate_per_step,
        }


def build_schedule(params: OptimizerParams, steps_per_epoch: int, epochs: int) -> WarmupSchedule:
    """The learning rate per step for optimizer.schedule, with optimizer.warmup_epochs."""
    if params.schedule not in ("constant", "cosine", "exponential"):
        raise ValueError(
            f"unknown optimizer.schedule {params.schedule!r}; valid: constant, cosine, exponential"
        )
    return WarmupSchedule(
        peak_learning_rate=params.lr,
        warmup_steps=int(round(params.warmup_epochs * steps_per_epoch)),
        total_steps=steps_per_epoch * epochs,
        decay=params.schedule,
        # decay_rate is per epoch in params.yaml; spread it evenly over the epoch's steps.
        decay_rate_per_step=params.decay_rate ** (1.0 / steps_per_epoch),
    )


def _sgd(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(
        learning_rate=rate,
        momentum=params.momentum,
        nesterov=params.nesterov,
        weight_decay=params.weight_decay or None,
    )


def _adam(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=rate, weight_decay=params.weight_decay or None)


def _adamw(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.AdamW(learning_rate=rate, weight_decay=params.weight_decay)


def _rmsprop(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.RMSprop(
        learning_rate=rate, momentum=params.momentum, weight_decay=params.weight_decay or None
    )


OPTIMIZERS: dict[str, Callable[[OptimizerParams, object], keras.optimizers.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
}


def build_optimizer(
    params: OptimizerParams, steps_per_epoch: int, epochs: int
) -> keras.optimizers.Optimizer:
    """Build optimizer.name with its learning-rate schedule."""
    try:
        builder = OPTIMIZERS[params.name]
    except KeyError:
        raise ValueError(
            f"unknown optimizer.name {params.name!r}; valid: {', '.join(OPTIMIZERS)}"
        ) from None
    return builder(params, build_schedule(params, steps_per_epoch, epochs))
