"""The configured network from params, with fast_cnn's whitening layer learnt from the data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

    from imgclf.params import ModelParams, RegParams

# Images sampled for the whitening statistics: 5,000 CIFAR images give ~4.5M patches, a
# covariance estimate far tighter than the 12 x 12 matrix needs, in well under a second.
WHITENING_SAMPLE = 5000


def learn_whitening(
    model_params: ModelParams, train_images: np.ndarray, seed: int
) -> np.ndarray | None:
    """fast_cnn's frozen first-layer kernel from a seeded sample of the normalised training
    images; None when the model has no whitening layer."""
    from imgclf.model.whitening import sample_images, whitening_kernel

    if model_params.arch != "fast_cnn" or not model_params.whitening:
        return None
    sample = sample_images(train_images, WHITENING_SAMPLE, seed).astype(np.float32)
    mean, std = channel_statistics(sample)
    normalised = (sample - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return whitening_kernel(normalised, model_params.whitening_patch)


def build_classifier(
    model_params: ModelParams,
    reg_params: RegParams,
    image_shape: tuple[int, int, int],
    num_classes: int,
    train_images: np.ndarray,
    whitening: np.ndarray | None = None,
) -> keras.Model:
    """The configured architecture, normalising with the training images' channel statistics.

    `whitening` is fast_cnn's first-layer kernel from `learn_whitening` (None: no such layer).
    """
    from imgclf.model.architectures import ModelSpec, build_model
    from imgclf.model.regularizers import build_kernel_regularizer

    mean, std = channel_statistics(train_images)
    spec = ModelSpec(
        image_shape=image_shape,
        num_classes=num_classes,
        channel_mean=mean,
        channel_std=std,
        width=model_params.width,
        dropout=reg_params.dropout,
        kernel_regularizer=build_kernel_regularizer(reg_params.l1, reg_params.l2),
        spatial_dropout=reg_params.spatial_dropout,
        max_norm=reg_params.max_norm,
        widths=model_params.widths,
        activation=model_params.activation,
        whitening_kernel=whitening,
        dirac_init=model_params.dirac_init,
        batchnorm_momentum=model_params.batchnorm_momentum,
        batchnorm_epsilon=model_params.batchnorm_epsilon,
        batchnorm_scale=model_params.batchnorm_scale,
        logit_scale=model_params.logit_scale,
    )
    return build_model(model_params.arch, spec)


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0-255 scale."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
    return pixels.mean(axis=0).tolist(), np.maximum(pixels.std(axis=0), 1e-3).tolist()


def accept_any_image_size(model: keras.Model) -> None:
    """Let the in-memory model take images of any side (progressive resizing's smaller epochs).

    Only the running model's input check widens: a model that pools globally computes the same
    way at any side, and the saved file still declares (and serving still resizes to) the
    size it was built for.
    """
    from keras.layers import InputSpec

    channels = model.inputs[0].shape[-1]
    model.input_spec = InputSpec(ndim=4, axes={-1: channels})
