"""The loss levers against NumPy: values, and gradients w.r.t. the logits before the softmax."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from imgclf.model.losses import (
    LOSSES,
    ClassWeightedCrossentropy,
    build_loss,
    class_weights_from_labels,
)
from imgclf.params import LossParams

# Three examples, four classes: one-hot rows and a MixUp-style soft row.
ONE_HOT = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=np.float64)
SOFT = np.array([[0.7, 0.3, 0, 0], [0, 0, 1, 0], [0, 0.4, 0, 0.6]], dtype=np.float64)
# Logits with distinct entries away from hinge kinks, so finite differences are well defined.
LOGITS = np.array([[1.2, -0.3, 0.4, 0.05], [0.1, 0.9, -1.1, 0.6], [-0.5, 0.3, 1.7, -0.9]])
WEIGHTS = np.array([0.5, 2.0, 1.25, 0.8])
# The reverse cross-entropy's floor for zero labels: log(1e-4) stands in for log(0).
SCE_LABEL_FLOOR = 1e-4


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def smooth(labels: np.ndarray, amount: float) -> np.ndarray:
    return labels * (1 - amount) + amount / labels.shape[-1]


# --- NumPy references: the mean over the batch of each example's loss ------------------------


def np_class_weighted(labels, probs, weights=WEIGHTS, smoothing=0.0):
    per_example = -(smooth(labels, smoothing) * np.log(probs)).sum(axis=1)
    return np.mean((labels @ weights) * per_example)


def np_poly1(labels, probs, epsilon=1.0, smoothing=0.0):
    target = smooth(labels, smoothing)
    cross = -(target * np.log(probs)).sum(axis=1)
    return np.mean(cross + epsilon * (1 - (target * probs).sum(axis=1)))


def np_sce(labels, probs, alpha=0.1, beta=1.0):
    forward = -(labels * np.log(probs)).sum(axis=1)
    reverse = -(probs * np.log(np.clip(labels, SCE_LABEL_FLOOR, 1.0))).sum(axis=1)
    return np.mean(alpha * forward + beta * reverse)


def np_squared_hinge(labels, probs, margin=1.0):
    logits = np.log(probs)
    total = 0.0
    for row, target in zip(logits, labels, strict=True):
        for k, share in enumerate(target):
            others = np.delete(row, k)
            total += share * max(0.0, margin + others.max() - row[k]) ** 2
    return total / len(logits)


# case id -> (loss.name, its loss params, the NumPy reference, the reference's settings)
CASES = {
    "class_weighted": ("class_weighted_crossentropy", {}, np_class_weighted, {}),
    "class_weighted_smoothed": (
        "class_weighted_crossentropy",
        {"label_smoothing": 0.1},
        np_class_weighted,
        {"smoothing": 0.1},
    ),
    "poly1": ("poly1", {"poly_epsilon": 1.0}, np_poly1, {"epsilon": 1.0}),
    "poly1_eps2_smoothed": (
        "poly1",
        {"poly_epsilon": 2.0, "label_smoothing": 0.2},
        np_poly1,
        {"epsilon": 2.0, "smoothing": 0.2},
    ),
    "poly1_eps_minus1": ("poly1", {"poly_epsilon": -1.0}, np_poly1, {"epsilon": -1.0}),
    "sce": ("symmetric_crossentropy", {}, np_sce, {}),
    "sce_weights": (
        "symmetric_crossentropy",
        {"sce_alpha": 0.5, "sce_beta": 0.25},
        np_sce,
        {"alpha": 0.5, "beta": 0.25},
    ),
    "squared_hinge": ("squared_hinge", {}, np_squared_hinge, {}),
    "squared_hinge_margin3": (
        "squared_hinge",
        {"hinge_margin": 3.0},
        np_squared_hinge,
        {"margin": 3.0},
    ),
}


def loss_for(case: str):
    """The built loss and its NumPy reference as f(labels, probabilities)."""
    name, settings, reference, reference_settings = CASES[case]
    # Smoothing only where a case sets it (the shipped default smooths by 0.2).
    loss = build_loss(
        LossParams(name=name, **{"label_smoothing": 0.0, **settings}), class_weights=WEIGHTS
    )
    return loss, (lambda labels, probs: reference(labels, probs, **reference_settings))


def backend_gradient(function, value: np.ndarray) -> np.ndarray:
    """d function / d value by the running Keras backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(value.astype(np.float32))
        with tf.GradientTape() as tape:
            result = function(variable)
        return tape.gradient(result, variable).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(value.astype(np.float32)))
    pytest.skip(f"no gradient helper for the {backend} backend")


def numeric_gradient(function, value: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """Central finite differences of a float64 NumPy function."""
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        up, down = value.copy(), value.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (function(up) - function(down)) / (2 * step)
    return gradient


@pytest.mark.parametrize("labels", [ONE_HOT, SOFT], ids=["one_hot", "soft"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_value_matches_numpy(case: str, labels: np.ndarray) -> None:
    loss, reference = loss_for(case)
    probs = softmax(LOGITS)
    expected = reference(labels, probs)
    actual = float(loss(labels.astype(np.float32), probs.astype(np.float32)))
    assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("labels", [ONE_HOT, SOFT], ids=["one_hot", "soft"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_gradient_wrt_logits_matches_finite_differences(case: str, labels) -> None:
    loss, reference = loss_for(case)
    targets = keras.ops.convert_to_tensor(labels.astype(np.float32))
    actual = backend_gradient(lambda z: loss(targets, keras.ops.softmax(z)), LOGITS)
    expected = numeric_gradient(lambda z: reference(labels, softmax(z)), LOGITS)
    assert np.abs(expected).max() > 1e-3  # the check would notice a zero gradient
    np.testing.assert_allclose(actual, expected, atol=2e-5, rtol=1e-3)


def test_analytic_gradients_agree_with_the_numpy_references() -> None:
    """Closed forms on the logits, so the references themselves are checked independently."""
    probs, batch = softmax(LOGITS), len(LOGITS)
    # Class-weighted CE: w_y * (p - y) per example.
    weighted = (ONE_HOT @ WEIGHTS)[:, None] * (probs - ONE_HOT) / batch
    np.testing.assert_allclose(
        numeric_gradient(lambda z: np_class_weighted(ONE_HOT, softmax(z)), LOGITS),
        weighted,
        atol=1e-7,
    )
    # Poly-1: (p - y) - epsilon * p * (y - p_t).
    true_prob = (ONE_HOT * probs).sum(axis=1, keepdims=True)
    poly = (probs - ONE_HOT - 2.0 * probs * (ONE_HOT - true_prob)) / batch
    np.testing.assert_allclose(
        numeric_gradient(lambda z: np_poly1(ONE_HOT, softmax(z), epsilon=2.0), LOGITS),
        poly,
        atol=1e-7,
    )
    # SCE: alpha * (p - y) + beta * p * (r - sum(p * r)), r = -log(clip(y)).
    reverse = -np.log(np.clip(ONE_HOT, SCE_LABEL_FLOOR, 1))
    sce = 0.1 * (probs - ONE_HOT) + probs * (reverse - (probs * reverse).sum(1, keepdims=True))
    np.testing.assert_allclose(
        numeric_gradient(lambda z: np_sce(ONE_HOT, softmax(z)), LOGITS), sce / batch, atol=1e-7
    )


def test_hinge_is_zero_beyond_the_margin_and_sees_the_logits() -> None:
    loss = build_loss(LossParams(name="squared_hinge", label_smoothing=0.0, hinge_margin=1.0))
    # True logit 2.5 above the rest: no loss; 0.5 above: (1 - 0.5)^2.
    confident = softmax(np.array([[2.5, 0.0, 0.0]]))
    close = softmax(np.array([[0.5, 0.0, -3.0]]))
    label = np.array([[1.0, 0.0, 0.0]])
    assert float(loss(label, confident)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(label, close)) == pytest.approx(0.25, rel=1e-4)


@pytest.mark.parametrize("case", ["class_weighted", "poly1", "squared_hinge"])
def test_integer_labels_become_one_hot(case: str) -> None:
    loss, _ = loss_for(case)
    probs = softmax(LOGITS).astype(np.float32)
    indices = ONE_HOT.argmax(axis=1)
    from_one_hot = float(loss(ONE_HOT.astype(np.float32), probs))
    assert float(loss(indices, probs)) == pytest.approx(from_one_hot, rel=1e-6)
    assert float(loss(indices[:, None], probs)) == pytest.approx(from_one_hot, rel=1e-6)


def test_class_weights_are_inverse_frequencies_with_mean_one_per_image() -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weights = class_weights_from_labels(labels, 3)
    # N / (K * n_k) = 9 / (3 * [6, 2, 1]).
    np.testing.assert_allclose(weights, [0.5, 1.5, 3.0])
    assert weights[labels].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(class_weights_from_labels(np.arange(12) % 4, 4), np.ones(4))


def test_class_weights_refuse_a_class_without_training_images() -> None:
    with pytest.raises(ValueError, match=r"classes \[1\] have no training images"):
        class_weights_from_labels(np.array([0, 0, 2]), 3)


def test_class_weighted_loss_needs_its_weights() -> None:
    with pytest.raises(ValueError, match="needs class weights from the training labels"):
        build_loss(LossParams(name="class_weighted_crossentropy"))


def test_imgclf_losses_round_trip_their_config() -> None:
    loss = build_loss(LossParams(name="class_weighted_crossentropy"), class_weights=WEIGHTS)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    again = keras.saving.deserialize_keras_object(config)
    assert isinstance(again, ClassWeightedCrossentropy)
    assert again.class_weights == pytest.approx(WEIGHTS.tolist())


def test_unknown_loss_lists_every_valid_name() -> None:
    with pytest.raises(ValueError, match="unknown loss.name 'hinge'") as caught:
        build_loss(LossParams.model_construct(name="hinge"))
    for name in LOSSES:
        assert name in str(caught.value)
