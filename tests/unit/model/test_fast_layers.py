"""Tests for imgclf.model.fast_layers: the faster training stand-ins, the swap back to stock."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.model.architectures import ModelSpec, build_model
from imgclf.model.fast_layers import (
    FastConv2D,
    FusedBatchNormalization,
    SmallMapConv2D,
    with_stock_layers,
)

SETTINGS = {"momentum": 0.4, "epsilon": 1e-5, "scale": False}


def paired_layers(dtype: str, **settings):
    """A fused and a stock layer with the same config and weights (a non-zero shift)."""
    fused = FusedBatchNormalization(**{**SETTINGS, **settings}, dtype=dtype)
    stock = keras.layers.BatchNormalization(**{**SETTINGS, **settings}, dtype=dtype)
    for layer in (fused, stock):
        layer.build((None, 5, 5, 8))
    fused.beta.assign(np.linspace(-1.0, 1.0, 8, dtype=np.float32))
    stock.set_weights(fused.get_weights())
    return fused, stock


def train_step(layer, images: np.ndarray):
    """Outputs, input gradient and shift gradient of a loss that weighs every value apart."""
    inputs = tf.constant(images)
    weights = tf.constant(np.random.default_rng(1).normal(size=images.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = tf.cast(layer(inputs, training=True), tf.float32)
        loss = tf.reduce_sum(tf.square(outputs) * weights)
    input_grad, shift_grad = tape.gradient(loss, [inputs, layer.beta])
    return outputs.numpy(), input_grad.numpy(), shift_grad.numpy()


# Relative L1 error allowed: float32 rounding, or bfloat16's 8-bit mantissa (about 0.4%).
@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-5), ("mixed_bfloat16", 5e-3)])
def test_fused_training_step_matches_keras_batchnorm(dtype: str, tolerance: float) -> None:
    images = np.random.default_rng(0).normal(2.0, 3.0, (64, 5, 5, 8)).astype(np.float32)
    fused, stock = paired_layers(dtype)
    fused_step, stock_step = train_step(fused, images), train_step(stock, images)
    for fused_value, stock_value in zip(fused_step, stock_step, strict=True):
        error = np.abs(fused_value - stock_value).sum() / np.abs(stock_value).sum()
        assert error < tolerance
    # The running statistics move by the biased batch variance, as Keras' own layer's do.
    np.testing.assert_allclose(fused.moving_mean.numpy(), stock.moving_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), stock.moving_variance.numpy(), rtol=1e-5
    )
    assert not np.allclose(fused.moving_mean.numpy(), 0.0)


def test_training_runs_the_fused_kernel_and_inference_the_stock_code() -> None:
    fused, _ = paired_layers("float32")
    images = tf.zeros((4, 5, 5, 8))

    def op_types(training: bool) -> set[str]:
        step = tf.function(lambda batch: fused(batch, training=training))
        graph = step.get_concrete_function(images).graph
        return {op.type for op in graph.get_operations()}

    assert "FusedBatchNormV3" in op_types(training=True)
    assert "FusedBatchNormV3" not in op_types(training=False)


def test_with_stock_layers_keeps_the_weights_and_predictions() -> None:
    spec = ModelSpec(
        image_shape=(16, 16, 3),
        num_classes=4,
        channel_mean=[120.0] * 3,
        channel_std=[60.0] * 3,
        width=4,
        widths=(8, 8),
    )
    model = build_model("fast_cnn", spec)
    norms = [layer for layer in model.layers if isinstance(layer, FusedBatchNormalization)]
    assert len(norms) == 4
    # 16 px: group 1 pools to 8x8, group 2 to 4x4, where the kernel gradient goes by taps.
    assert type(model.get_layer("group1_conv1")) is FastConv2D
    assert type(model.get_layer("group1_conv2")) is FastConv2D
    assert type(model.get_layer("group2_conv2")) is SmallMapConv2D
    images = np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    model(images, training=True)  # moves the running statistics away from their start

    stock = with_stock_layers(model)

    assert not [layer for layer in stock.layers if isinstance(layer, FusedBatchNormalization)]
    for layer in norms:
        assert type(stock.get_layer(layer.name)) is keras.layers.BatchNormalization
    for name in ("group1_conv1", "group1_conv2", "group2_conv2"):
        assert type(stock.get_layer(name)) is keras.layers.Conv2D
    for source, copied in zip(model.get_weights(), stock.get_weights(), strict=True):
        np.testing.assert_array_equal(source, copied)
    np.testing.assert_allclose(
        stock.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
    assert "imgclf" not in json.dumps(json.loads(stock.to_json()))
    assert with_stock_layers(stock) is stock


def conv_gradients(layer, images: np.ndarray):
    """Outputs, input gradient and kernel gradient of a loss that weighs every value apart."""
    inputs = tf.constant(images)
    weights = tf.constant(np.random.default_rng(2).normal(size=(*images.shape[:3], 16)))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = tf.cast(layer(inputs), tf.float32)
        loss = tf.reduce_sum(tf.square(outputs) * tf.cast(weights, tf.float32))
    input_grad, kernel_grad = tape.gradient(loss, [inputs, layer.kernel])
    return outputs.numpy(), input_grad.numpy(), kernel_grad.numpy()


# What the stand-ins compute themselves (SmallMapConv2D's kernel gradient, both layers' input
# gradient) is held against Keras' conv in float32, not against Keras' conv in bfloat16: how
# oneDNN's own bfloat16 gradients round depends on the processor (on an AVX2-only CPU, without
# native bfloat16, its kernel gradient is off by 1.3-1.8% where the taps are off by 0.5%, and its
# input gradient by 0.7% where the forward conv's is off by 0.4%). The bfloat16 bound comes from
# its precision: inputs, kernel and outputs each round to an 8-bit significand (unit roundoff
# 2**-8), and the loss squares the outputs, so a few roundoffs; a wrong tap or a transposed
# kernel is off by tens of percent. FastConv2D's kernel gradient is oneDNN's own op, so it is held
# against the stock layer in the same precision.
BFLOAT16_TOLERANCE = 4 * 2**-8


def relative_error(computed: np.ndarray, exact: np.ndarray) -> float:
    return float(np.abs(computed - exact).sum() / np.abs(exact).sum())


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [("float32", 1e-5), ("mixed_bfloat16", BFLOAT16_TOLERANCE)]
)
@pytest.mark.parametrize(
    ("layer_type", "side", "kernel"),
    [(SmallMapConv2D, 3, 3), (SmallMapConv2D, 2, 3), (FastConv2D, 7, 3), (FastConv2D, 6, 5)],
)
def test_fast_convs_match_keras_conv(dtype, tolerance, layer_type, side, kernel) -> None:
    images = np.random.default_rng(0).normal(size=(32, side, side, 12)).astype(np.float32)
    settings = {"padding": "same", "use_bias": False}
    ours = layer_type(16, kernel, **settings, dtype=dtype)
    exact = keras.layers.Conv2D(16, kernel, **settings, dtype="float32")
    stock = keras.layers.Conv2D(16, kernel, **settings, dtype=dtype)
    for layer in (ours, exact, stock):
        layer.build(images.shape)
    exact.set_weights(ours.get_weights())
    stock.set_weights(ours.get_weights())
    outputs, input_grad, kernel_grad = conv_gradients(ours, images)
    exact_outputs, exact_input_grad, exact_kernel_grad = conv_gradients(exact, images)
    assert relative_error(outputs, exact_outputs) < tolerance
    assert relative_error(input_grad, exact_input_grad) < tolerance
    if layer_type is SmallMapConv2D:
        assert relative_error(kernel_grad, exact_kernel_grad) < tolerance
    else:
        assert relative_error(kernel_grad, conv_gradients(stock, images)[2]) < 1e-6


def gradient_op_types(layer, images) -> set[str]:
    """The op types of a graph that takes the loss's gradient to the input and the kernel."""
    layer.build(images.shape)

    @tf.function
    def gradients(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            loss = tf.reduce_sum(tf.square(layer(batch)))
        return tape.gradient(loss, [batch, layer.kernel])

    graph = gradients.get_concrete_function(images).graph
    return {op.type for op in graph.get_operations()}


def test_fast_conv_takes_its_input_gradient_from_a_forward_conv() -> None:
    types = gradient_op_types(FastConv2D(16, 3, padding="same"), tf.zeros((4, 7, 7, 12)))
    assert "Conv2DBackpropInput" not in types and "Conv2DBackpropFilter" in types
    stock = gradient_op_types(keras.layers.Conv2D(16, 3, padding="same"), tf.zeros((4, 7, 7, 12)))
    assert "Conv2DBackpropInput" in stock  # what the stand-in replaces
    valid = gradient_op_types(FastConv2D(16, 3, padding="valid"), tf.zeros((4, 7, 7, 12)))
    assert "Conv2DBackpropInput" in valid  # unsupported settings: the stock op and gradient


def test_small_map_conv_takes_no_onednn_kernel_gradient() -> None:
    layer = SmallMapConv2D(16, 3, padding="same", use_bias=False)
    images = tf.zeros((4, 3, 3, 12))
    types = gradient_op_types(layer, images)
    assert "Conv2DBackpropFilter" not in types and "MatMul" in types
    assert "Conv2DBackpropInput" not in types
    strided = SmallMapConv2D(16, 3, strides=2, padding="same")
    strided.build(images.shape)
    assert strided(images).shape == (4, 2, 2, 16)  # unsupported settings: the stock op
