"""optimizer.name muon: conv kernels against a NumPy Newton-Schulz, the rest against Keras' SGD."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.model.muon import ConvMuon
from imgclf.model.optimizers import OPTIMIZERS, WarmupSchedule, build_optimizer
from imgclf.params import (
    OPTIMIZER_NAMES,
    OptimizerParams,
    ParamsError,
    lever_warnings,
    parse_params,
)

MUON = {"name": "muon", "schedule": "constant", "lr": 0.5, "muon_lr_ratio": 0.4}


def numpy_of(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(keras.ops.copy(variable))


def newton_schulz(matrix: np.ndarray, steps: int = 5) -> np.ndarray:
    """Keller Jordan's quintic iteration (Keras' coefficients), in float64 NumPy."""
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.T if tall else matrix
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(6, 6, 2))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(5, name="hidden")(keras.layers.GlobalMaxPooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def muon(**settings) -> ConvMuon:
    optimizer = build_optimizer(OptimizerParams(**{**MUON, **settings}), 1, 1)
    assert isinstance(optimizer, ConvMuon)
    return optimizer


def gradients_for(variables, seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=variable.shape).astype("float32") for variable in variables]


def test_muon_is_registered_and_named_in_params() -> None:
    assert "muon" in OPTIMIZERS and "muon" in OPTIMIZER_NAMES


def test_conv_kernels_and_hidden_dense_are_orthogonalised_the_head_and_the_rest_are_not() -> None:
    model = tiny_model()
    optimizer = muon()
    taken = {v.path for v in model.trainable_variables if optimizer.orthogonalises(v)}
    assert taken == {"conv/kernel", "hidden/kernel"}  # 4-D conv, 2-D hidden; not logits/kernel


def test_a_conv_kernel_step_is_the_numpy_newton_schulz_of_its_nesterov_momentum() -> None:
    kernel = tiny_model().get_layer("conv").kernel  # [3, 3, 2, 4]: a [18, 4] matrix
    start = numpy_of(kernel).astype(np.float64)
    first, second = gradients_for([kernel, kernel], seed=2)
    optimizer = muon(muon_momentum=0.6, nesterov=True)
    expected, buffer = start, np.zeros_like(start)
    for gradient in (first, second):
        before = numpy_of(kernel)
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [kernel])
        buffer = 0.6 * buffer + gradient
        direction = (gradient + 0.6 * buffer).reshape(-1, 4)
        expected = expected - 0.5 * 0.4 * newton_schulz(direction).reshape(start.shape)
    np.testing.assert_allclose(numpy_of(kernel), expected, atol=2e-5)
    # The step taken is near-orthogonal: every singular value of the [18, 4] update near 1
    # (a gradient's own spread far wider), not an AdamW or SGD step.
    step = (before - numpy_of(kernel)).reshape(-1, 4) / (0.5 * 0.4)
    singular = np.linalg.svd(step, compute_uv=False)
    assert singular.min() > 0.6 and singular.max() < 1.25


def test_biases_batchnorm_and_the_head_take_keras_sgd_steps_shifts_at_the_multiplier() -> None:
    model = tiny_model()
    optimizer = muon(momentum=0.85, nesterov=True, batchnorm_lr_multiplier=64)
    rest = [v for v in model.trainable_variables if not optimizer.orthogonalises(v)]
    assert {v.path for v in rest} >= {"bn/beta", "bn/gamma", "logits/kernel", "logits/bias"}
    copies = [keras.Variable(numpy_of(v), name=v.name) for v in rest]
    # One Keras SGD per variable (an optimizer is built for the variables it first sees).
    references = [
        keras.optimizers.SGD(
            learning_rate=0.5 * (64 if v.path.endswith("/beta") else 1),
            momentum=0.85,
            nesterov=True,
        )
        for v in rest
    ]
    for seed in (3, 4):
        gradients = [keras.ops.convert_to_tensor(g) for g in gradients_for(rest, seed)]
        optimizer.apply(gradients, rest)
        for reference, copy, gradient in zip(references, copies, gradients, strict=True):
            reference.apply([gradient], [copy])
    for variable, copy in zip(rest, copies, strict=True):
        np.testing.assert_allclose(
            numpy_of(variable), numpy_of(copy), rtol=1e-5, err_msg=variable.path
        )


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="Keras' LossScaleOptimizer.apply outside a traced step leaks a JAX tracer (SGD too)",
)
def test_under_loss_scaling_the_steps_are_the_unscaled_ones() -> None:
    """Mixed precision wraps the optimizer in LossScaleOptimizer; it must unscale for Muon."""
    model, twin = tiny_model(), tiny_model()
    gradients = gradients_for(model.trainable_variables)
    scale = 2.0**10
    plain = muon()
    wrapped = keras.optimizers.LossScaleOptimizer(muon(), initial_scale=scale)
    plain.apply([keras.ops.convert_to_tensor(g) for g in gradients], model.trainable_variables)
    wrapped.apply(
        [keras.ops.convert_to_tensor(g * scale) for g in gradients], twin.trainable_variables
    )
    for ours, theirs in zip(model.trainable_variables, twin.trainable_variables, strict=True):
        np.testing.assert_allclose(numpy_of(ours), numpy_of(theirs), rtol=1e-5, atol=1e-6)


def test_params_reach_the_optimizer_with_the_schedule() -> None:
    params = OptimizerParams(
        name="muon", muon_lr_ratio=0.3, muon_momentum=0.5, momentum=0.8, weight_decay=0.01
    )
    optimizer = build_optimizer(params, steps_per_epoch=4, epochs=3)
    assert isinstance(optimizer, ConvMuon)
    assert isinstance(optimizer._learning_rate, WarmupSchedule)  # warm-up and decay compose
    assert (optimizer.muon_lr_ratio, optimizer.momentum) == (0.3, 0.5)
    assert optimizer.sgd_momentum == 0.8 and optimizer.nesterov is True
    assert optimizer.weight_decay == optimizer.adam_weight_decay == pytest.approx(0.01)
    assert optimizer.rms_rate is None  # the record's plain orthogonal step
    config = optimizer.get_config()
    assert ConvMuon.from_config(config).get_config()["muon_lr_ratio"] == 0.3


@pytest.mark.parametrize(
    ("key", "value"), [("muon_lr_ratio", 0), ("muon_lr_ratio", 101), ("muon_momentum", 1.0)]
)
def test_a_muon_key_out_of_range_names_itself(key: str, value: float) -> None:
    with pytest.raises(ParamsError, match=f"optimizer.{key}"):
        parse_params({"optimizer": {"name": "muon", key: value}})


def test_muon_reads_nesterov_and_the_batchnorm_multiplier_so_no_note_says_otherwise() -> None:
    params = parse_params({"optimizer": {"name": "muon", "nesterov": True}})
    assert params.optimizer.batchnorm_lr_multiplier != 1.0
    notes = lever_warnings(params)
    assert "warning.nesterov_ignored" not in notes
    assert "warning.batchnorm_lr_multiplier_ignored" not in notes


@pytest.fixture
def keep_dtype_policy():
    """The assembly sets Keras' global precision policy: give later tests theirs back."""
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["off", "on"])
@pytest.mark.usefixtures("keep_dtype_policy")
def test_fast_cnn_fits_with_muon_through_the_assembly_and_its_loss_falls(precision: str) -> None:
    """Also under float16 (precision on), where Keras wraps it in a LossScaleOptimizer."""
    from imgclf.training.assemble import assemble

    rng = np.random.default_rng(0)
    labels = np.arange(64) % 4
    images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    images[..., 0] = (20 + 60 * labels[:, None, None]).astype(np.uint8)  # learnable
    params = parse_params(
        {
            "model": {"arch": "fast_cnn", "widths": [8, 8, 8]},
            "optimizer": {"name": "muon", "warmup_epochs": 0},
            "train": {"epochs": 4, "batch_size": 16, "seed": 3, "mixed_precision": precision},
            "augment": {"progressive_side": None},
        }
    )
    trainer = assemble(params, (images, labels), None, ["a", "b", "c", "d"], say=lambda _: None)
    optimizer = trainer.model.optimizer
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
    assert isinstance(optimizer, ConvMuon)
    muon_paths = {v.path for v in trainer.model.trainable_variables if optimizer.orthogonalises(v)}
    assert muon_paths and all(
        len(v.shape) == 4 for v in trainer.model.trainable_variables if v.path in muon_paths
    )  # fast_cnn: only its conv filters
    losses = [row["loss"] for row in trainer.fit(verbose=0).history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
