"""Keras Functional architectures; each takes raw uint8 pixels and normalises inside."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from imgclf.model.fast_layers import FastConv2D, FusedBatchNormalization, SmallMapConv2D
from imgclf.model.regularizers import build_kernel_constraint


@dataclass(frozen=True)
class ModelSpec:
    """What every architecture builder needs besides its name."""

    image_shape: tuple[int, int, int]
    num_classes: int
    channel_mean: Sequence[float]  # per-channel pixel mean of the training images, 0-255 scale
    channel_std: Sequence[float]
    width: int = 32
    dropout: float = 0.0
    kernel_regularizer: keras.regularizers.Regularizer | None = None
    spatial_dropout: float = 0.0  # dropout of whole feature maps after each conv block
    max_norm: float | None = None  # cap on each unit's incoming kernel norm; None or 0: off
    # fast_cnn only (model.* params of the same names):
    widths: Sequence[int] = (32, 64, 192)
    activation: str = "relu"
    whitening_kernel: np.ndarray | None = None  # frozen first conv (whitening.py); None: off
    dirac_init: bool = True
    batchnorm_momentum: float = 0.4  # Keras sense: weight of the old running statistic
    batchnorm_epsilon: float = 1e-5
    batchnorm_scale: bool = False  # False: BatchNorm's scale is frozen at 1, only its shift trains
    logit_scale: float = 1.0

    def kernel_settings(self, kind: str) -> dict:
        """Regularizer and max-norm constraint for a `conv` or `dense` layer's kernel."""
        return {
            "kernel_regularizer": self.kernel_regularizer,
            "kernel_constraint": build_kernel_constraint(self.max_norm, kind),
        }


def _classifier(features: keras.KerasTensor, spec: ModelSpec) -> keras.KerasTensor:
    if spec.dropout > 0:
        features = layers.Dropout(spec.dropout, name="dropout")(features)
    logits = layers.Dense(spec.num_classes, **spec.kernel_settings("dense"), name="logits")(
        features
    )
    # float32 softmax so the saved model serves probabilities under any precision policy.
    return layers.Activation("softmax", dtype="float32", name="probabilities")(logits)


def _spatial_dropout(x: keras.KerasTensor, spec: ModelSpec, name: str) -> keras.KerasTensor:
    """Drop whole channels after a conv block (reg.spatial_dropout); no layer when off."""
    if spec.spatial_dropout <= 0:
        return x
    return layers.SpatialDropout2D(spec.spatial_dropout, name=name)(x)


def _image_input(spec: ModelSpec) -> keras.KerasTensor:
    return keras.Input(shape=spec.image_shape, dtype="uint8", name="image")


def build_seed_cnn(spec: ModelSpec) -> keras.Model:
    """The classic Conv32-Pool-Conv64-Pool-Conv64-Dense64 CIFAR-10 baseline, pixels / 255."""
    inputs = _image_input(spec)
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    conv, dense = spec.kernel_settings("conv"), spec.kernel_settings("dense")
    x = layers.Conv2D(32, 3, activation="relu", **conv)(x)
    x = layers.MaxPooling2D()(x)
    x = _spatial_dropout(x, spec, "spatial_dropout_1")
    x = layers.Conv2D(64, 3, activation="relu", **conv)(x)
    x = layers.MaxPooling2D()(x)
    x = _spatial_dropout(x, spec, "spatial_dropout_2")
    x = layers.Conv2D(64, 3, activation="relu", **conv)(x)
    x = _spatial_dropout(x, spec, "spatial_dropout_3")
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu", **dense)(x)
    return keras.Model(inputs, _classifier(x, spec), name="seed_cnn")


def _conv_bn(x: keras.KerasTensor, filters: int, spec: ModelSpec, name: str) -> keras.KerasTensor:
    x = layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        **spec.kernel_settings("conv"),
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _residual(x: keras.KerasTensor, filters: int, spec: ModelSpec, name: str) -> keras.KerasTensor:
    branch = _conv_bn(x, filters, spec, f"{name}_a")
    branch = _conv_bn(branch, filters, spec, f"{name}_b")
    return layers.Add(name=f"{name}_add")([x, branch])


def build_resnet_small(spec: ModelSpec) -> keras.Model:
    """A ResNet-9-style BatchNorm residual net; `width` sets the first stage's channels."""
    inputs = _image_input(spec)
    variance = [std**2 for std in spec.channel_std]
    x = layers.Normalization(mean=list(spec.channel_mean), variance=variance, name="normalize")(
        inputs
    )
    width = spec.width
    x = _conv_bn(x, width, spec, "stem")
    x = _conv_bn(x, 2 * width, spec, "stage1")
    x = layers.MaxPooling2D(name="stage1_pool")(x)
    x = _residual(x, 2 * width, spec, "stage1_res")
    x = _spatial_dropout(x, spec, "stage1_spatial_dropout")
    x = _conv_bn(x, 4 * width, spec, "stage2")
    x = layers.MaxPooling2D(name="stage2_pool")(x)
    x = _spatial_dropout(x, spec, "stage2_spatial_dropout")
    x = _conv_bn(x, 8 * width, spec, "stage3")
    x = layers.MaxPooling2D(name="stage3_pool")(x)
    x = _residual(x, 8 * width, spec, "stage3_res")
    x = _spatial_dropout(x, spec, "stage3_spatial_dropout")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    return keras.Model(inputs, _classifier(x, spec), name="resnet_small")


# Up to this side oneDNN's bfloat16 kernel gradient loses to matrix products (3x3 maps of 192
# channels: 9.2 against 2.9 ms a batch of 256); at 7x7 and beyond it wins or draws.
SMALL_MAP_SIDE = 4


def _fast_group(x: keras.KerasTensor, filters: int, spec: ModelSpec, name: str):
    """conv -> max-pool -> BatchNorm -> activation -> conv -> BatchNorm -> activation.

    Pooling right after the first conv halves the cost of everything after it; BatchNorm after
    the pool normalises the statistics the next layer actually sees. Under TensorFlow the
    BatchNorms train fused, every conv takes its input gradient from a forward convolution and
    one on a map no wider than SMALL_MAP_SIDE its kernel gradient from matrix products
    (fast_layers.py); the saved model holds the stock layers.
    """
    norm = {
        "momentum": spec.batchnorm_momentum,
        "epsilon": spec.batchnorm_epsilon,
        "scale": spec.batchnorm_scale,
    }
    conv = {"padding": "same", "use_bias": False, **spec.kernel_settings("conv")}
    x = FastConv2D(filters, 3, **conv, name=f"{name}_conv1")(x)
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = FusedBatchNormalization(**norm, name=f"{name}_bn1")(x)
    x = layers.Activation(spec.activation, name=f"{name}_act1")(x)
    sides = x.shape[1:3]
    small_map = None not in sides and max(sides) <= SMALL_MAP_SIDE
    conv2 = SmallMapConv2D if small_map else FastConv2D
    x = conv2(filters, 3, **conv, name=f"{name}_conv2")(x)
    x = FusedBatchNormalization(**norm, name=f"{name}_bn2")(x)
    x = layers.Activation(spec.activation, name=f"{name}_act2")(x)
    return _spatial_dropout(x, spec, f"{name}_spatial_dropout")


def build_fast_cnn(spec: ModelSpec) -> keras.Model:
    """The speed-record recipe's network: optional patch whitening, then conv groups.

    Layout after airbench94 (conv -> pool -> BN -> GELU blocks, logits scaled down before the
    softmax), with widths from model.widths; built only from stock Keras layers, so the saved
    file loads without imgclf.
    """
    _check_fast_cnn_fits(spec)
    inputs = _image_input(spec)
    variance = [std**2 for std in spec.channel_std]
    x = layers.Normalization(mean=list(spec.channel_mean), variance=variance, name="normalize")(
        inputs
    )
    if spec.whitening_kernel is not None:
        kernel = spec.whitening_kernel
        # A zero bias and the activation in the layer let TensorFlow fuse conv, bias and ReLU
        # into one oneDNN kernel: the separate full-size ReLU took 5 of a 62 ms CPU step.
        whiten = layers.Conv2D(
            kernel.shape[-1],
            kernel.shape[0],
            activation=spec.activation,
            trainable=False,
            name="whiten",
        )
        x = whiten(x)
        whiten.set_weights([kernel, np.zeros(kernel.shape[-1], np.float32)])
    for index, width in enumerate(spec.widths, start=1):
        x = _fast_group(x, width, spec, f"group{index}")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    if spec.dropout > 0:
        x = layers.Dropout(spec.dropout, name="dropout")(x)
    x = layers.Dense(
        spec.num_classes, use_bias=False, **spec.kernel_settings("dense"), name="logits"
    )(x)
    # Small logits early keep the softmax from saturating while the net is still far off.
    x = layers.Rescaling(spec.logit_scale, name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="fast_cnn")
    if spec.dirac_init:
        initialize_dirac(model)
    return model


def _check_fast_cnn_fits(spec: ModelSpec) -> None:
    """Each group halves the side: refuse widths that would pool the image away."""
    side = min(spec.image_shape[:2])
    if spec.whitening_kernel is not None:
        side -= spec.whitening_kernel.shape[0] - 1
    for _ in spec.widths:
        side //= 2
    if side < 1:
        raise ValueError(
            f"model.widths has {len(spec.widths)} groups, each halving the side, but the images "
            f"are {spec.image_shape[0]}x{spec.image_shape[1]}: use fewer groups in model.widths "
            "or larger images (data.image_size)"
        )


def initialize_dirac(model: keras.Model) -> None:
    """Make each trained 3x3 conv's first C_in filters the identity (the rest keep their init).

    The records' "dirac" start: every conv first passes its input through, so a deep stack
    begins close to a shallow one and trains quickly from the first step.
    """
    for layer in model.layers:
        if not isinstance(layer, layers.Conv2D) or not layer.trainable:
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
        rows, cols, inputs, outputs = kernel.shape
        identity = min(inputs, outputs)
        kernel[..., :identity] = 0.0
        kernel[rows // 2, cols // 2, np.arange(identity), np.arange(identity)] = 1.0
        layer.kernel.assign(kernel)


ARCHITECTURES: dict[str, Callable[[ModelSpec], keras.Model]] = {
    "seed_cnn": build_seed_cnn,
    "resnet_small": build_resnet_small,
    "fast_cnn": build_fast_cnn,
}


def build_model(arch: str, spec: ModelSpec) -> keras.Model:
    """Build the named architecture; an unknown name lists the valid ones."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(
            f"unknown model.arch {arch!r}; valid: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return builder(spec)
