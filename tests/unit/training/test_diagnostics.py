"""Per-epoch diagnostics against NumPy on a softmax regression, where everything has a formula."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.training.diagnostics import GradientProbe, data_loss_metrics, global_norm, probe_batch
from imgclf.training.fit import compile_model, fit_model
from imgclf.training.inputs import ArrayBatches

L2 = 0.01
FEATURES = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
ONE_HOT = np.eye(3, dtype="float32")[LABELS]


def softmax_regression(seed: int = 0, dropout: float = 0.0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Dropout(dropout)(inputs) if dropout else inputs
    logits = keras.layers.Dense(3, kernel_regularizer=keras.regularizers.L2(L2))(hidden)
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def numpy_reference(model: keras.Model, features: np.ndarray, one_hot: np.ndarray) -> dict:
    """Cross-entropy, L2 penalty and the gradient of their sum, worked out in NumPy."""
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_weights())
    logits = features @ kernel + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    error = (probabilities - one_hot) / len(features)  # d(mean cross-entropy)/d(logits)
    return {
        "data": float(-np.log((probabilities * one_hot).sum(axis=1)).mean()),
        "penalty": float(L2 * np.sum(kernel**2)),
        "gradients": [features.T @ error + 2 * L2 * kernel, error.sum(axis=0)],
        "weight_norm": float(np.sqrt(np.sum(kernel**2) + np.sum(bias**2))),
    }


def test_probe_gradient_matches_the_formula() -> None:
    model = softmax_regression()
    loss = keras.losses.CategoricalCrossentropy()
    data, penalty, gradients = GradientProbe(model, loss, FEATURES, ONE_HOT)()
    expected = numpy_reference(model, FEATURES, ONE_HOT)
    assert data == pytest.approx(expected["data"], rel=1e-5)
    assert penalty == pytest.approx(expected["penalty"], rel=1e-5)
    for got, want in zip(gradients, expected["gradients"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert global_norm(gradients) == pytest.approx(global_norm(expected["gradients"]), rel=1e-4)


def test_probe_under_mixed_precision_undoes_the_loss_scale() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = softmax_regression()
        compile_model(model, loss=keras.losses.CategoricalCrossentropy(), optimizer="sgd")
        model.optimizer.build(model.trainable_variables)  # as the first training step does
        assert float(model.optimizer.dynamic_scale.numpy()) > 1  # what the probe must undo
        _, _, gradients = GradientProbe(model, model.loss, FEATURES, ONE_HOT)()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    expected = numpy_reference(model, FEATURES, ONE_HOT)["gradients"]
    for got, want in zip(gradients, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-3)  # float16 arithmetic


def test_probe_changes_no_state_and_repeats_itself() -> None:
    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(4,))
    normalised = keras.layers.BatchNormalization()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.5)(normalised))
    model = keras.Model(inputs, outputs)
    before = [np.array(variable.numpy()) for variable in model.variables]
    probe = GradientProbe(model, keras.losses.CategoricalCrossentropy(), FEATURES, ONE_HOT)
    first, second = probe(), probe()
    # Batch statistics, moving averages and dropout seeds: all as they were.
    for variable, value in zip(model.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert first[0] == second[0]
    for a, b in zip(first[2], second[2], strict=True):
        np.testing.assert_array_equal(a, b)


def test_epoch_logs_split_the_loss_exactly_and_add_the_norms() -> None:
    # lr = 0: the weights never move, so every term has its closed form. Batches of 4, 4 and
    # 2 images check that data_loss weights batches by size as `loss` does.
    model = softmax_regression()
    expected = numpy_reference(model, FEATURES, ONE_HOT)
    loss = keras.losses.CategoricalCrossentropy()
    result = fit_model(
        model,
        ArrayBatches(FEATURES, LABELS, 3, 4, shuffle_seed=None),
        None,
        epochs=2,
        callbacks=[],
        loss=loss,
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        verbose=0,
        probe=(FEATURES, ONE_HOT),
    )
    for row in result.history:
        assert row["data_loss"] == pytest.approx(expected["data"], rel=1e-5)
        assert row["reg_loss"] == pytest.approx(expected["penalty"], rel=1e-4)
        assert row["loss"] == pytest.approx(expected["data"] + expected["penalty"], rel=1e-5)
        assert row["weight_norm"] == pytest.approx(expected["weight_norm"], rel=1e-6)
        norm = global_norm(expected["gradients"])
        assert row["probe_grad_norm"] == pytest.approx(norm, rel=1e-4)
        assert row["learning_rate"] == 0.0


def test_no_data_loss_metric_for_a_loss_that_is_not_a_mean() -> None:
    assert data_loss_metrics(keras.losses.CategoricalCrossentropy(reduction="sum")) == []
    assert len(data_loss_metrics(keras.losses.CategoricalFocalCrossentropy())) == 1
    model = softmax_regression()
    compile_model(model, loss=keras.losses.CategoricalCrossentropy(), optimizer="sgd")
    assert "data_loss" in model.evaluate(FEATURES, ONE_HOT, verbose=0, return_dict=True)


def test_probe_batch_is_a_fixed_seeded_choice_with_one_hot_labels() -> None:
    images = np.arange(20)[:, None, None, None].repeat(3, axis=-1).astype(np.uint8)
    labels = np.arange(20) % 4
    chosen, one_hot = probe_batch(images, labels, 4, size=6, seed=2)
    again, _ = probe_batch(images, labels, 4, size=6, seed=2)
    np.testing.assert_array_equal(chosen, again)
    picked = chosen[:, 0, 0, 0].astype(int)
    assert len(set(picked)) == 6 and list(picked) == sorted(picked)
    np.testing.assert_array_equal(one_hot, np.eye(4)[labels[picked]])
    assert not np.array_equal(chosen, probe_batch(images, labels, 4, size=6, seed=3)[0])
    assert len(probe_batch(images, labels, 4, size=50, seed=0)[0]) == 20


def test_a_model_compiled_with_data_loss_clones_saves_and_loads(tmp_path) -> None:
    """The metric serialises with its loss: clone_model and a compiled .keras round trip work."""
    import keras
    import numpy as np

    from imgclf.model.losses import build_loss
    from imgclf.params import parse_params
    from imgclf.training.diagnostics import data_loss_metrics

    loss = build_loss(parse_params({"loss": {"name": "poly1", "label_smoothing": 0.1}}).loss)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss=loss, metrics=data_loss_metrics(loss))
    x = np.random.default_rng(0).random((8, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    model.fit(x, y, epochs=1, verbose=0)
    keras.models.clone_model(model)
    model.save(tmp_path / "compiled.keras")
    reloaded = keras.saving.load_model(tmp_path / "compiled.keras")
    before = model.evaluate(x, y, verbose=0, return_dict=True)["data_loss"]
    after = reloaded.evaluate(x, y, verbose=0, return_dict=True)["data_loss"]
    assert after == pytest.approx(before, rel=1e-5)
