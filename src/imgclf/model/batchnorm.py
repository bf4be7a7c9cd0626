"""BatchNorm whose training step runs as one fused kernel under TensorFlow.

Keras 3 computes a training batch's BatchNorm from elementwise float32 ops (cast, moments,
normalise, cast back) and differentiates them op by op. On a 2-core CPU those ops took about a
third of fast_cnn's training step; TensorFlow's FusedBatchNormV3 does the same arithmetic, and
its gradient, in one kernel each (1.45x the images/s, docs/fast-recipe.md). Inference, other
backends (JAX compiles the elementwise ops together anyway) and anything unusual keep Keras'
own code, and `with_stock_batchnorm` swaps the layers back before a model is saved, so the file
still loads with plain Keras.
"""

from __future__ import annotations

import keras
from keras import layers

# FusedBatchNormV3's input types; its statistics, scale and shift are always float32.
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


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
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
        )


def with_stock_batchnorm(model: keras.Model) -> keras.Model:
    """`model` with every FusedBatchNormalization replaced by the stock layer, weights copied.

    The other layers are shared, not copied. A model without fused layers comes back as is.
    """
    if not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers):
        return model

    def stock(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, FusedBatchNormalization):
            return layers.BatchNormalization.from_config(layer.get_config())
        return layer

    copy = keras.models.clone_model(model, clone_function=stock)
    for source in model.layers:
        if isinstance(source, FusedBatchNormalization):
            copy.get_layer(source.name).set_weights(source.get_weights())
    return copy
