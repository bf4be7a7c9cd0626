"""Tests for imgclf.model: architectures, losses, regularizers, optimizers and schedules."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from imgclf.model.architectures import ARCHITECTURES, ModelSpec, build_model
from imgclf.model.losses import build_loss
from imgclf.model.optimizers import WarmupSchedule, build_optimizer, build_schedule
from imgclf.model.regularizers import build_kernel_regularizer
from imgclf.params import LossParams, OptimizerParams


def make_spec(image_shape: tuple[int, int, int], **overrides) -> ModelSpec:
    channels = image_shape[-1]
    fields = {
        "image_shape": image_shape,
        "num_classes": 5,
        "channel_mean": [120.0] * channels,
        "channel_std": [60.0] * channels,
        "width": 4,
    }
    fields.update(overrides)
    return ModelSpec(**fields)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("image_shape", [(32, 32, 3), (28, 28, 1)])
def test_build_model_maps_raw_pixels_to_probabilities(arch: str, image_shape: tuple) -> None:
    model = build_model(arch, make_spec(image_shape, num_classes=5))
    assert model.name == arch
    assert model.inputs[0].dtype == "uint8"
    assert tuple(model.inputs[0].shape) == (None, *image_shape)
    images = np.random.default_rng(0).integers(0, 256, (3, *image_shape), dtype=np.uint8)
    probabilities = keras.ops.convert_to_numpy(model(images, training=False))
    assert probabilities.shape == (3, 5)
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_regularizer_and_dropout_reach_every_kernel(arch: str) -> None:
    regularizer = build_kernel_regularizer(0.0, 1e-3)
    model = build_model(arch, make_spec((24, 24, 3), kernel_regularizer=regularizer, dropout=0.3))
    kernel_layers = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]
    assert kernel_layers
    assert all(layer.kernel_regularizer is regularizer for layer in kernel_layers)
    # One penalty per regularised kernel, each l2 * sum(w^2) of that kernel.
    expected = sorted(
        1e-3 * float(np.sum(np.square(layer.kernel.numpy()))) for layer in kernel_layers
    )
    actual = sorted(float(loss) for loss in model.losses)
    np.testing.assert_allclose(actual, expected, rtol=1e-5)
    assert model.get_layer("dropout").rate == pytest.approx(0.3)


def test_unknown_architecture_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="vgg") as caught:
        build_model("vgg", make_spec((32, 32, 3)))
    for name in ARCHITECTURES:
        assert name in str(caught.value)


def test_fast_cnn_whitening_dirac_and_frozen_batchnorm_scale() -> None:
    from imgclf.model.whitening import whitening_kernel

    images = np.random.default_rng(0).normal(size=(20, 16, 16, 3)).astype(np.float32)
    kernel = whitening_kernel(images, 2)
    spec = make_spec((16, 16, 3), widths=(8, 12), whitening_kernel=kernel, logit_scale=0.5)
    model = build_model("fast_cnn", spec)
    whiten = model.get_layer("whiten")
    assert not whiten.trainable
    np.testing.assert_array_equal(whiten.get_weights()[0], kernel)
    # Dirac: the first min(C_in, C_out) filters pass their own input channel through.
    group2 = model.get_layer("group2_conv1").get_weights()[0]  # 8 -> 12 channels
    identity = np.zeros((3, 3, 8, 8), dtype=np.float32)
    identity[1, 1, np.arange(8), np.arange(8)] = 1.0
    np.testing.assert_array_equal(group2[..., :8], identity)
    assert np.abs(group2[..., 8:]).sum() > 0  # the other filters keep their random init
    first = model.get_layer("group1_conv1").get_weights()[0]  # 24 -> 8: eight identity filters
    np.testing.assert_array_equal(first[1, 1, np.arange(8), np.arange(8)], np.ones(8))
    norm = model.get_layer("group1_bn1")
    assert norm.gamma is None and norm.momentum == pytest.approx(0.4)
    # The whitening layer applies the activation itself, after a zero bias (one fused kernel).
    assert whiten.activation is keras.activations.get("relu")
    np.testing.assert_array_equal(whiten.get_weights()[1], np.zeros(kernel.shape[-1]))
    assert model.get_layer("logit_scale").scale == pytest.approx(0.5)


def test_fast_cnn_refuses_widths_that_pool_the_image_away() -> None:
    with pytest.raises(ValueError, match="fewer groups in model.widths"):
        build_model("fast_cnn", make_spec((8, 8, 3), widths=(4, 4, 4, 4)))
    build_model("fast_cnn", make_spec((8, 8, 3), widths=(4, 4, 4)))  # 8 -> 4 -> 2 -> 1


def test_fast_cnn_without_whitening_or_dirac() -> None:
    model = build_model("fast_cnn", make_spec((16, 16, 3), widths=(8,), dirac_init=False))
    assert "whiten" not in [layer.name for layer in model.layers]
    kernel = model.get_layer("group1_conv1").get_weights()[0]
    assert not np.array_equal(kernel[1, 1, np.arange(3), np.arange(3)], np.ones(3))


Y_TRUE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
Y_PRED = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.6, 0.3, 0.1]])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_crossentropy_matches_numpy(smoothing: float) -> None:
    loss = build_loss(LossParams(name="categorical_crossentropy", label_smoothing=smoothing))
    target = Y_TRUE * (1 - smoothing) + smoothing / 3
    expected = np.mean(-np.sum(target * np.log(Y_PRED), axis=1))
    assert float(loss(Y_TRUE, Y_PRED)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("alpha", "gamma", "smoothing"), [(0.25, 2.0, 0.0), (0.5, 1.0, 0.1)])
def test_focal_matches_numpy(alpha: float, gamma: float, smoothing: float) -> None:
    loss = build_loss(
        LossParams(name="focal", focal_alpha=alpha, focal_gamma=gamma, label_smoothing=smoothing)
    )
    target = Y_TRUE * (1 - smoothing) + smoothing / 3
    per_class = -alpha * target * (1 - Y_PRED) ** gamma * np.log(Y_PRED)
    expected = np.mean(per_class.sum(axis=1))
    assert float(loss(Y_TRUE, Y_PRED)) == pytest.approx(expected, rel=1e-5)


def test_unknown_loss_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="categorical_crossentropy, focal"):
        build_loss(LossParams.model_construct(name="hinge"))


def test_no_regularizer_when_both_penalties_are_zero() -> None:
    assert build_kernel_regularizer(0.0, 0.0) is None


@pytest.mark.parametrize(("l1", "l2"), [(0.01, 0.0), (0.0, 0.002), (0.01, 0.002)])
def test_regularizer_penalty_is_l1_abs_plus_l2_square(l1: float, l2: float) -> None:
    weights = np.array([[0.5, -1.5], [2.0, -0.25]], dtype=np.float32)
    regularizer = build_kernel_regularizer(l1, l2)
    expected = l1 * np.abs(weights).sum() + l2 * np.square(weights).sum()
    assert float(regularizer(keras.ops.convert_to_tensor(weights))) == pytest.approx(expected)


def rates(schedule: WarmupSchedule, steps: list[int]) -> list[float]:
    return [float(schedule(step)) for step in steps]


def test_constant_schedule_with_and_without_warmup() -> None:
    plain = WarmupSchedule(0.1, warmup_steps=0, total_steps=20, decay="constant")
    assert rates(plain, [0, 7, 19, 40]) == pytest.approx([0.1] * 4)
    warm = WarmupSchedule(0.1, warmup_steps=4, total_steps=20, decay="constant")
    # Linear warm-up: (step + 1) / warmup_steps of the peak, then the peak.
    assert rates(warm, [0, 1, 3, 4, 19]) == pytest.approx([0.025, 0.05, 0.1, 0.1, 0.1])


def test_cosine_schedule_values() -> None:
    plain = WarmupSchedule(0.2, warmup_steps=0, total_steps=10, decay="cosine")
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * step / 10)) for step in (0, 3, 5, 10)]
    assert rates(plain, [0, 3, 5, 10, 15]) == pytest.approx([*expected, 0.0], abs=1e-7)
    warm = WarmupSchedule(0.2, warmup_steps=4, total_steps=12, decay="cosine")
    # After warm-up the cosine runs over the remaining 8 steps.
    assert rates(warm, [0, 3, 4, 8, 10, 12]) == pytest.approx(
        [0.05, 0.2, 0.2, 0.1, 0.2 * 0.5 * (1 + math.cos(math.pi * 6 / 8)), 0.0], abs=1e-7
    )


def test_exponential_schedule_values() -> None:
    plain = WarmupSchedule(0.1, 0, 100, decay="exponential", decay_rate_per_step=0.9)
    assert rates(plain, [0, 1, 5]) == pytest.approx([0.1, 0.09, 0.1 * 0.9**5], rel=1e-5)
    warm = WarmupSchedule(0.1, 2, 100, decay="exponential", decay_rate_per_step=0.5)
    assert rates(warm, [0, 1, 2, 3, 5]) == pytest.approx([0.05, 0.1, 0.1, 0.05, 0.0125], rel=1e-5)


def test_build_schedule_turns_epochs_into_steps() -> None:
    params = OptimizerParams(
        lr=0.1, schedule="exponential", warmup_epochs=1.0, warmup_start_fraction=0, decay_rate=0.5
    )
    schedule = build_schedule(params, steps_per_epoch=4, epochs=3)
    assert (schedule.warmup_steps, schedule.total_steps) == (4, 12)
    # decay_rate is per epoch: one epoch after warm-up the rate has halved.
    assert rates(schedule, [0, 3, 4, 6, 8, 12]) == pytest.approx(
        [0.025, 0.1, 0.1, 0.1 * 0.5**0.5, 0.05, 0.025], rel=1e-5
    )
    half = build_schedule(OptimizerParams(warmup_epochs=0.5), steps_per_epoch=6, epochs=2)
    assert half.warmup_steps == 3


def test_build_optimizer_sgd_settings() -> None:
    params = OptimizerParams(
        name="sgd",
        lr=0.2,
        momentum=0.8,
        nesterov=True,
        weight_decay=0.01,
        warmup_epochs=1.0,
        warmup_start_fraction=0,
        batchnorm_lr_multiplier=1,  # plain Keras SGD (the multiplier has its own tests)
    )
    optimizer = build_optimizer(params, steps_per_epoch=4, epochs=3)
    assert type(optimizer) is keras.optimizers.SGD
    assert optimizer.momentum == pytest.approx(0.8)
    assert optimizer.nesterov is True
    assert optimizer.weight_decay == pytest.approx(0.01)
    # The schedule is wired in: at iteration 0 the warm-up gives a quarter of the peak.
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert isinstance(schedule, WarmupSchedule) and schedule.total_steps == 12


@pytest.mark.parametrize(
    ("name", "cls", "weight_decay", "expected_decay"),
    [
        ("adam", keras.optimizers.Adam, 0.0, None),
        ("adam", keras.optimizers.Adam, 0.05, 0.05),
        ("adamw", keras.optimizers.AdamW, 0.05, 0.05),
        ("rmsprop", keras.optimizers.RMSprop, 0.0, None),
    ],
)
def test_build_optimizer_classes(name, cls, weight_decay, expected_decay) -> None:
    params = OptimizerParams(
        name=name, lr=0.01, momentum=0.5, weight_decay=weight_decay, warmup_epochs=0
    )
    optimizer = build_optimizer(params, steps_per_epoch=2, epochs=2)
    assert type(optimizer) is cls
    if expected_decay is None:
        assert optimizer.weight_decay is None
    else:
        assert optimizer.weight_decay == pytest.approx(expected_decay)
    if name == "rmsprop":
        assert optimizer.momentum == pytest.approx(0.5)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)


def test_unknown_optimizer_and_schedule_list_the_valid_names() -> None:
    with pytest.raises(ValueError, match="sgd, adam, adamw, rmsprop"):
        build_optimizer(OptimizerParams.model_construct(name="adagrad"), 2, 2)
    with pytest.raises(ValueError, match="constant, cosine, exponential"):
        build_schedule(OptimizerParams.model_construct(schedule="triangular"), 2, 2)


def test_warmup_schedule_survives_serialization() -> None:
    schedule = WarmupSchedule(0.3, 5, 50, decay="cosine", decay_rate_per_step=0.97)
    config = json.loads(json.dumps(keras.optimizers.schedules.serialize(schedule)))
    restored = keras.optimizers.schedules.deserialize(config)
    assert type(restored) is WarmupSchedule
    assert restored.get_config() == schedule.get_config()
    steps = [0, 4, 5, 20, 50]
    assert rates(restored, steps) == pytest.approx(rates(schedule, steps))
