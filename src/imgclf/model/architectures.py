"""Keras Functional architectures; each takes raw uint8 pixels and normalises inside."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
from keras import layers

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


ARCHITECTURES: dict[str, Callable[[ModelSpec], keras.Model]] = {
    "seed_cnn": build_seed_cnn,
    "resnet_small": build_resnet_small,
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
