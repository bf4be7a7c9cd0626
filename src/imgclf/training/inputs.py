"""Training input: seeded, reshuffled batches of raw pixels with the online augmentation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import keras
import numpy as np

from imgclf.params import progressive_epochs_used
from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation, mirror_half

if TYPE_CHECKING:
    from imgclf.params import AugmentParams, Params


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    online: OnlineAugmentation | None = None,
    current_epoch: CurrentEpoch | None = None,
):
    """Batches of (uint8 images, one-hot float labels), reshuffled every epoch when seeded.

    With `online`, every batch is augmented afresh (crop+flip, colour jitter, cutout, MixUp or
    CutMix, whichever are on; mixing makes the labels soft), and downscaled in the epochs of
    progressive resizing, which read the epoch from `current_epoch` (CurrentEpochCallback sets
    it). tf.data under the TensorFlow backend. Under JAX, DeviceBatches (device_inputs.py)
    makes the batches on the device, unless the augmentation needs what only the NumPy-fed
    ArrayBatches does (MixUp, CutMix, progressive resizing) or the split would fill the
    device; neither needs TensorFlow.
    """
    if online is not None and online.alternating_flip:
        images = mirror_half(images, shuffle_seed)
    if keras.backend.backend() == "jax":
        from imgclf.training import device_inputs

        if device_inputs.device_ready(online, images.nbytes):
            return device_inputs.DeviceBatches(
                images,
                labels,
                num_classes,
                batch_size,
                shuffle_seed=shuffle_seed,
                online=online,
                current_epoch=current_epoch,
            )
    steps_per_epoch = -(-len(images) // batch_size)
    transform = (
        online.batch_transform(shuffle_seed, steps_per_epoch, current_epoch) if online else None
    )
    if keras.backend.backend() == "tensorflow":
        # Progressive resizing changes the side between epochs: leave it open in the graph.
        shape = images.shape[1:]
        if online is not None and online.resizes:
            shape = (None, None, shape[-1])
        return _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed, transform, shape)
    return ArrayBatches(
        images, labels, num_classes, batch_size, shuffle_seed=shuffle_seed, transform=transform
    )


def _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed, transform, shape):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
    )
    if transform is not None:

        def augment(batch, batch_labels):
            changed, mixed = tf.numpy_function(
                transform, [batch, batch_labels], (tf.uint8, tf.float32), stateful=True
            )
            changed.set_shape((None, *shape))
            mixed.set_shape((None, num_classes))
            return changed, mixed

        # One call at a time keeps the seeded draws in a reproducible order; prefetch still
        # overlaps it with the training step.
        dataset = dataset.map(augment, num_parallel_calls=1)
    # No autotuning: Keras makes a new iterator every epoch, and closing one waited for
    # tf.data's tuning thread to end its current sleep, which doubles from 10 ms; on 2 cores
    # that left both idle for seconds at epoch ends (8.5 s once after a 12 s fit).
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


class ArrayBatches(keras.utils.PyDataset):
    """Batches cut from in-memory arrays, in a seeded order drawn anew each epoch."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        *,
        shuffle_seed: int | None,
        transform=None,
    ) -> None:
        super().__init__()
        self.images, self.labels, self.transform = images, labels, transform
        self.num_classes, self.batch_size = num_classes, batch_size
        self._rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
        self._order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        one_hot = np.eye(self.num_classes, dtype=np.float32)[self.labels[chosen]]
        batch = self.images[chosen]
        return (batch, one_hot) if self.transform is None else self.transform(batch, one_hot)

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._rng.shuffle(self._order)


def make_datasets(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    batch_size: int,
    seed: int,
    online: OnlineAugmentation,
    current_epoch: CurrentEpoch | None = None,
):
    """The training batches (shuffled by `seed`, online augmentation if on) and the val ones.

    batch_size is the global batch: with several replicas, tf.distribute splits each batch.
    """
    return (
        make_dataset(
            *train,
            num_classes,
            batch_size,
            shuffle_seed=seed,
            online=online,
            current_epoch=current_epoch,
        ),
        make_dataset(*val, num_classes, batch_size, shuffle_seed=None),
    )


def online_augmentation(settings: AugmentParams, small_epochs: int = 0) -> OnlineAugmentation:
    """The train stage's per-batch augmentation from the augment params; the first
    `small_epochs` epochs at augment.progressive_side (progressive_epochs gives the count)."""
    return OnlineAugmentation(
        crop_pixels=settings.online_crop_pixels if settings.online_crop_flip else None,
        flip=settings.online_flip,
        color_jitter=settings.online_color_jitter,
        cutout_fraction=settings.online_cutout_fraction,
        mixup_alpha=settings.mixup_alpha,
        cutmix_alpha=settings.cutmix_alpha,
        small_side=settings.progressive_side if small_epochs else None,
        small_epochs=small_epochs,
    )


def progressive_epochs(
    params: Params, epochs: int, image_shape: tuple[int, ...], say: Callable[[str], None] = print
) -> int:
    """Epochs at augment.progressive_side for these images: none when it is not smaller than
    them (a data set of small images; `say` tells why) or the model takes one size only."""
    count = progressive_epochs_used(params.augment, params.model.arch, epochs)
    side = params.augment.progressive_side
    if count and side >= min(image_shape[:2]):
        say(
            f"train: augment.progressive_side ({side}) is not smaller than the images "
            f"({image_shape[0]}x{image_shape[1]}): every epoch trains at full size"
        )
        return 0
    return count


class CurrentEpochCallback(keras.callbacks.Callback):
    """Tells the input pipeline's CurrentEpoch which epoch starts (after a resume, too).

    Keras opens the training iterator after on_epoch_begin, so every batch of an epoch is made
    after its epoch is set."""

    def __init__(self, current_epoch: CurrentEpoch) -> None:
        super().__init__()
        self.current_epoch = current_epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current_epoch.epoch = epoch
