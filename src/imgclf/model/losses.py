"""Loss registry: loss.name maps to one builder taking the loss section.

Every loss takes the model's output probabilities (its float32 softmax) and one-hot or soft
(MixUp-style) labels, as training feeds them; the imgclf losses below also turn integer labels
into one-hot ones. They are written with keras.ops, so they run under every Keras backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

from imgclf.params import LossParams

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before a log, as Keras' own losses do.
EPSILON = 1e-7
# The reverse cross-entropy needs log(0) for the zero entries of one-hot labels; like the SCE
# authors' code, labels are clipped to this floor, so log(0) stands in as log(1e-4) = -9.21.
SCE_LABEL_FLOOR = 1e-4
# Stands in for minus infinity when masking logits (log-probabilities are >= log(EPSILON)).
_MASKED = -1e9


def class_weights_from_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse class frequencies, scaled to average 1 over the training images.

    w_k = N / (K * n_k): a balanced set gets all ones, and the weighted loss keeps the scale of
    the plain one on the training set, so a tuned learning rate still fits.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    if len(counts) > num_classes:
        raise ValueError(f"labels go up to {len(counts) - 1}, beyond the {num_classes} classes")
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(
            f"class-weighted loss: classes {missing.tolist()} have no training images, so "
            "their weight would be infinite; add images of them or use another loss.name"
        )
    return len(labels) / (num_classes * counts.astype(np.float64))


def _smooth(labels, label_smoothing: float):
    if label_smoothing == 0:
        return labels
    num_classes = ops.cast(ops.shape(labels)[-1], labels.dtype)
    return labels * (1.0 - label_smoothing) + label_smoothing / num_classes


def _crossentropy(labels, probabilities):
    return -ops.sum(labels * ops.log(probabilities), axis=-1)


class ProbabilityLoss(keras.losses.Loss):
    """Base of the imgclf losses: one-hot labels and clipped probabilities into per_example.

    A subclass names its constructor arguments in `config_keys`; they are saved with the model.
    """

    config_keys: tuple[str, ...] = ()

    def get_config(self) -> dict:
        return {**super().get_config(), **{key: getattr(self, key) for key in self.config_keys}}

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        if len(y_true.shape) == len(y_pred.shape) - 1 or (
            y_true.shape[-1] == 1 and num_classes != 1
        ):
            indices = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
            y_true = ops.one_hot(indices, num_classes, dtype=y_pred.dtype)
        return self.per_example(y_true, ops.clip(y_pred, EPSILON, 1.0 - EPSILON))

    def per_example(self, labels, probabilities):  # pragma: no cover - abstract
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="imgclf")
class ClassWeightedCrossentropy(ProbabilityLoss):
    """Cross-entropy times the weight of each example's class (for soft labels, their mix)."""

    config_keys = ("class_weights", "label_smoothing")

    def __init__(
        self,
        class_weights: Sequence[float],
        label_smoothing: float = 0.0,
        name: str = "class_weighted_crossentropy",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(weight) for weight in class_weights]
        self.label_smoothing = label_smoothing

    def per_example(self, labels, probabilities):
        weights = ops.convert_to_tensor(self.class_weights, dtype=labels.dtype)
        example_weight = ops.sum(labels * weights, axis=-1)  # before smoothing spreads the label
        return example_weight * _crossentropy(_smooth(labels, self.label_smoothing), probabilities)


@keras.saving.register_keras_serializable(package="imgclf")
class PolyOneCrossentropy(ProbabilityLoss):
    """Poly-1 (Leng et al., 2022): CE + epsilon * (1 - p_t), p_t = sum(labels * probabilities).

    With label smoothing both terms use the smoothed labels, as in the paper's code.
    """

    config_keys = ("epsilon", "label_smoothing")

    def __init__(
        self, epsilon: float = 1.0, label_smoothing: float = 0.0, name: str = "poly1", **kwargs
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.epsilon = epsilon
        self.label_smoothing = label_smoothing

    def per_example(self, labels, probabilities):
        labels = _smooth(labels, self.label_smoothing)
        true_probability = ops.sum(labels * probabilities, axis=-1)
        return _crossentropy(labels, probabilities) + self.epsilon * (1.0 - true_probability)


@keras.saving.register_keras_serializable(package="imgclf")
class SymmetricCrossentropy(ProbabilityLoss):
    """SCE (Wang et al., 2019): alpha * CE(labels, p) + beta * CE(p, labels), for noisy labels.

    The reverse term -sum(p * log(labels)) takes log(SCE_LABEL_FLOOR) for a zero label.
    """

    config_keys = ("alpha", "beta")

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        name: str = "symmetric_crossentropy",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha, self.beta = alpha, beta

    def per_example(self, labels, probabilities):
        forward = _crossentropy(labels, probabilities)
        reverse = _crossentropy(probabilities, ops.clip(labels, SCE_LABEL_FLOOR, 1.0))
        return self.alpha * forward + self.beta * reverse


@keras.saving.register_keras_serializable(package="imgclf")
class MulticlassSquaredHinge(ProbabilityLoss):
    """Crammer-Singer squared hinge on the logits: max(0, margin + max_{j!=y} z_j - z_y)^2.

    The logits are recovered as log-probabilities (log-softmax differs from the logits by one
    constant per example, which every margin cancels). Soft labels weight each class's hinge.
    """

    config_keys = ("margin",)

    def __init__(self, margin: float = 1.0, name: str = "squared_hinge", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def per_example(self, labels, probabilities):
        logits = ops.log(probabilities)
        num_classes = probabilities.shape[-1]
        top = ops.one_hot(ops.argmax(logits, axis=-1), num_classes, dtype=logits.dtype)
        first = ops.max(logits, axis=-1, keepdims=True)
        second = ops.max(ops.where(top > 0, _MASKED, logits), axis=-1, keepdims=True)
        # For each class k, the largest logit among the other classes.
        best_other = ops.where(top > 0, second, first)
        hinge = ops.relu(self.margin + best_other - logits)
        return ops.sum(labels * ops.square(hinge), axis=-1)


LossBuilder = Callable[[LossParams, "Sequence[float] | None"], keras.losses.Loss]


def _categorical_crossentropy(params: LossParams, class_weights=None) -> keras.losses.Loss:
    return keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing)


def _focal(params: LossParams, class_weights=None) -> keras.losses.Loss:
    return keras.losses.CategoricalFocalCrossentropy(
        alpha=params.focal_alpha, gamma=params.focal_gamma, label_smoothing=params.label_smoothing
    )


def _class_weighted_crossentropy(params: LossParams, class_weights=None) -> keras.losses.Loss:
    if class_weights is None:
        raise ValueError(
            "loss.name 'class_weighted_crossentropy' needs class weights from the training "
            "labels (class_weights_from_labels); none were given"
        )
    return ClassWeightedCrossentropy(class_weights, label_smoothing=params.label_smoothing)


def _poly1(params: LossParams, class_weights=None) -> keras.losses.Loss:
    return PolyOneCrossentropy(params.poly_epsilon, label_smoothing=params.label_smoothing)


def _symmetric_crossentropy(params: LossParams, class_weights=None) -> keras.losses.Loss:
    return SymmetricCrossentropy(params.sce_alpha, params.sce_beta)


def _squared_hinge(params: LossParams, class_weights=None) -> keras.losses.Loss:
    return MulticlassSquaredHinge(params.hinge_margin)


LOSSES: dict[str, LossBuilder] = {
    "categorical_crossentropy": _categorical_crossentropy,
    "focal": _focal,
    "class_weighted_crossentropy": _class_weighted_crossentropy,
    "poly1": _poly1,
    "symmetric_crossentropy": _symmetric_crossentropy,
    "squared_hinge": _squared_hinge,
}
# Losses built from class weights that the train stage computes from the training labels.
CLASS_WEIGHTED_LOSSES = frozenset({"class_weighted_crossentropy"})


def build_loss(
    params: LossParams, class_weights: Sequence[float] | None = None
) -> keras.losses.Loss:
    """Build the loss named by params.name; class_weights only for CLASS_WEIGHTED_LOSSES."""
    try:
        builder = LOSSES[params.name]
    except KeyError:
        raise ValueError(f"unknown loss.name {params.name!r}; valid: {', '.join(LOSSES)}") from None
    return builder(params, class_weights)
