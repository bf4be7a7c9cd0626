"""Stand-ins for stock Keras layers that train faster under TensorFlow on a CPU.

Each computes what its stock layer computes, to float rounding, through kernels that the
TensorFlow profiler showed to be much faster on a 2-core CPU (docs/guide/fast-recipe.md):
- FusedBatchNormalization: Keras 3 computes a training batch's BatchNorm from elementwise
  float32 ops (cast, moments, normalise, cast back) and differentiates them op by op, about a
  third of fast_cnn's step; TensorFlow's FusedBatchNormV3 does the arithmetic, and its
  gradient, in one kernel each.
- FastConv2D: oneDNN's input-gradient (backward-data) convolution runs far below its forward
  convolution on a float32 AVX2 CPU: 62 against 10 ms a batch for fast_cnn's last conv (3x3
  maps, 192 channels), 68 against 25 ms for the one before it (7x7 maps, 64 to 192). For a
  stride-1 `same` convolution that gradient is itself a forward convolution of the output
  gradient with the kernel turned half a turn and its channel axes swapped, which is what this
  layer runs.
- SmallMapConv2D: oneDNN's bfloat16 kernel-gradient kernel is slow on tiny feature maps; the
  same gradient as nine matrix products, one per kernel tap, takes about a third of the time
  there (the measured figures are beside SMALL_MAP_SIDE in architectures.py, which decides
  where it is used). Its input gradient is FastConv2D's.
Other backends (JAX compiles the elementwise ops together anyway), inference and unusual
settings keep Keras' own code, and `with_stock_layers` swaps the stock layers back before a
model is saved, so the file still loads with plain Keras.
"""

from __future__ import annotations

import keras
from keras import layers

# FusedBatchNormV3's input types; its statistics, scale and shift are always float32.
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


def _on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="imgclf")
class FusedBatchNormalization(layers.BatchNormalization):
    """keras.layers.BatchNormalization, trained through TensorFlow's fused kernel.

    Same weights, config and inference as the stock layer. In training the batch statistics
    are the biased ones the stock layer uses: the kernel's batch variance carries Bessel's
    correction, which is taken off before it enters the running average.
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fuses(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), "float32")
        offset = self.beta if self.center else tf.zeros((channels,), "float32")
        empty = tf.zeros((0,), "float32")  # no running statistics: training mode ignores them
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.cast(scale, "float32"),
            offset=tf.cast(offset, "float32"),
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,  # the raw op: tf.nn's wrapper raises epsilon to 1.001e-5
            is_training=True,
            data_format="NHWC",
        )
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return tf.cast(outputs, self.compute_dtype)

    def _fuses(self, inputs, training, mask) -> bool:
        return (
            bool(training)
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and _on_tensorflow()
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )


@keras.saving.register_keras_serializable(package="imgclf")
class FastConv2D(layers.Conv2D):
    """keras.layers.Conv2D whose input gradient is a forward convolution.

    For stride 1, no dilation, one group, `same` padding, channels last and an odd kernel;
    anything else, and any backend but TensorFlow, runs the stock convolution and gradient.
    The forward pass and the kernel gradient are TensorFlow's usual kernels.
    """

    def convolution_op(self, inputs, kernel):
        if not self._same_stride_one():
            return super().convolution_op(inputs, kernel)
        return _conv_same(inputs, kernel, self._kernel_gradient)

    def _same_stride_one(self) -> bool:
        rows, cols = self.kernel_size
        return (
            _on_tensorflow()
            and self.padding == "same"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
            and rows % 2 == 1
            and cols % 2 == 1
        )

    @staticmethod
    def _kernel_gradient(images, output_grad, kernel):
        import tensorflow as tf

        return tf.raw_ops.Conv2DBackpropFilter(
            input=images,
            filter_sizes=tf.shape(kernel),
            out_backprop=output_grad,
            strides=[1, 1, 1, 1],
            padding="SAME",
        )


@keras.saving.register_keras_serializable(package="imgclf")
class SmallMapConv2D(FastConv2D):
    """keras.layers.Conv2D whose kernel gradient is one matrix product per kernel tap (and
    whose input gradient is FastConv2D's); the same settings fall back to the stock code."""

    @staticmethod
    def _kernel_gradient(images, output_grad, kernel):
        return _kernel_gradient_by_taps(images, output_grad, kernel.shape)


def _conv_same(inputs, kernel, kernel_gradient):
    """A stride-1 `same` convolution whose input gradient is the forward convolution of the
    output gradient with the kernel flipped in both spatial axes and its channels swapped
    (exact for an odd kernel, whose `same` padding is the same on both sides)."""
    import tensorflow as tf

    @tf.custom_gradient
    def convolve(images, weights):
        def gradient(output_grad):
            turned = tf.transpose(tf.reverse(weights, axis=[0, 1]), perm=[0, 1, 3, 2])
            input_grad = tf.nn.conv2d(output_grad, turned, strides=1, padding="SAME")
            return input_grad, kernel_gradient(images, output_grad, weights)

        return tf.nn.conv2d(images, weights, strides=1, padding="SAME"), gradient

    # A tensor, not the variable: the gradient then reaches the kernel through its read.
    return convolve(inputs, tf.convert_to_tensor(kernel))


def _kernel_gradient_by_taps(images, output_grad, kernel_shape):
    """d(loss)/d(kernel) of a stride-1 `same` convolution: for each tap (i, j), the images
    shifted by that tap against the output gradient, summed over batch and positions."""
    import tensorflow as tf

    rows, cols, channels_in, channels_out = kernel_shape
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    pad_rows, pad_cols = rows // 2, cols // 2
    padded = tf.pad(images, [[0, 0], [pad_rows, pad_rows], [pad_cols, pad_cols], [0, 0]])
    flat_grad = tf.reshape(output_grad, (-1, channels_out))
    taps = [
        tf.matmul(
            tf.reshape(padded[:, i : i + height, j : j + width, :], (-1, channels_in)),
            flat_grad,
            transpose_a=True,
        )
        for i in range(rows)
        for j in range(cols)
    ]
    return tf.reshape(tf.stack(taps), kernel_shape)


STOCK_LAYERS = {
    FusedBatchNormalization: layers.BatchNormalization,
    FastConv2D: layers.Conv2D,
    SmallMapConv2D: layers.Conv2D,
}


def with_stock_layers(model: keras.Model) -> keras.Model:
    """`model` with each stand-in here replaced by its stock layer, weights copied.

    The other layers are shared, not copied. A model without stand-ins comes back as is.
    """
    if not any(type(layer) in STOCK_LAYERS for layer in model.layers):
        return model

    def stock(layer: keras.layers.Layer) -> keras.layers.Layer:
        if type(layer) in STOCK_LAYERS:
            return STOCK_LAYERS[type(layer)].from_config(layer.get_config())
        return layer

    copy = keras.models.clone_model(model, clone_function=stock)
    for source in model.layers:
        if type(source) in STOCK_LAYERS:
            copy.get_layer(source.name).set_weights(source.get_weights())
    return copy
