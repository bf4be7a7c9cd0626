"""Training batches made on the accelerator under Keras' JAX backend.

The uint8 split goes to the device once; each epoch's seeded shuffle is a device permutation,
and every batch is gathered and augmented (crop+flip, the alternating flip, colour jitter,
cutout, progressive resizing's downscaling) by one jitted function, so no batch passes through
host NumPy. The draws follow `online_augmentation.py`'s NumPy transforms (same offset range,
flip probability, factor ranges and box placement), from JAX's generator instead of NumPy's;
the downscaling uses its area weights. Label mixing (MixUp, CutMix) is not ported:
`device_ready` says when the NumPy `ArrayBatches` path must make the batches instead.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import keras
import numpy as np

from imgclf.augmentation import CUTOUT_FILL, scale_colors
from imgclf.training.online_augmentation import area_resampling

if TYPE_CHECKING:
    from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation


def device_ready(
    online: OnlineAugmentation | None, nbytes: int = 0, memory_bytes: int | None = None
) -> bool:
    """Whether the device path can make these batches: all augmentation but label mixing, and a
    split of `nbytes` that takes at most half of the device's `memory_bytes`
    (the rest is the model's; None: as the device says, and one that does not say, such as the
    CPU, is taken to have room)."""
    if memory_bytes is None:
        memory_bytes = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    if memory_bytes is not None and nbytes > memory_bytes / 2:
        return False
    if online is None:
        return True
    return online.mixup_alpha == 0 and online.cutmix_alpha == 0


def crop_flip(images: jax.Array, key: jax.Array, pad: int, flip: bool) -> jax.Array:
    """Per image: a window of the original size at a uniform offset in [0, 2 * pad] of the
    mirror-padded image and, with `flip`, a left-right flip with probability 1/2 (as
    random_crop_flip)."""
    count, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    top_key, left_key, flip_key = jax.random.split(key, 3)
    tops = jax.random.randint(top_key, (count,), 0, 2 * pad + 1)
    lefts = jax.random.randint(left_key, (count,), 0, 2 * pad + 1)

    def window(image, top, left):
        return jax.lax.dynamic_slice(image, (top, left, 0), (height, width, channels))

    out = jax.vmap(window)(padded, tops, lefts)
    if not flip:
        return out
    mirrored = jax.random.bernoulli(flip_key, 0.5, (count,))
    return jnp.where(mirrored[:, None, None, None], out[:, :, ::-1], out)


def jitter_colors(images: jax.Array, key: jax.Array, strength: float) -> jax.Array:
    """Brightness, contrast and (colour images) saturation, each scaled by a factor from
    [1 - strength, 1 + strength] per image, as augmentation.jitter_colors."""
    factors = jax.random.uniform(
        key, (3, images.shape[0], 1, 1, 1), minval=1.0 - strength, maxval=1.0 + strength
    )
    pixels = scale_colors(images.astype(jnp.float32), factors)
    return jnp.clip(jnp.rint(pixels), 0, 255).astype(jnp.uint8)


def cutout(images: jax.Array, key: jax.Array, fraction: float) -> jax.Array:
    """One mid-grey square of side `fraction` of the shorter side per image, centred anywhere
    (clipped at the borders), as augmentation.cutout."""
    count, height, width = images.shape[:3]
    side = max(1, round(fraction * min(height, width)))
    top_key, left_key = jax.random.split(key)
    tops = jax.random.randint(top_key, (count,), 0, height) - side // 2
    lefts = jax.random.randint(left_key, (count,), 0, width) - side // 2
    rows, columns = jnp.arange(height), jnp.arange(width)
    in_rows = (rows >= tops[:, None]) & (rows < tops[:, None] + side)
    in_columns = (columns >= lefts[:, None]) & (columns < lefts[:, None] + side)
    box = (in_rows[:, :, None] & in_columns[:, None, :])[..., None]
    return jnp.where(box, jnp.uint8(CUTOUT_FILL), images)


def downscale(images: jax.Array, side: int) -> jax.Array:
    """uint8 images area-resampled so the shorter side is `side`, with the taps and weights of
    online_augmentation.downscale (every input pixel counts), rounded as to_uint8."""
    rows, row_weights, columns, column_weights = area_resampling(*images.shape[1:3], side)
    pixels = images.astype(jnp.float32)
    # "highest": a GPU's default float32 matmul precision (TF32) would round the weights.
    mix = partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
    pixels = mix("nstwc,st->nswc", pixels[:, rows], row_weights)
    pixels = mix("nhstc,st->nhsc", pixels[:, :, columns], column_weights)
    return jnp.clip(jnp.rint(pixels), 0, 255).astype(jnp.uint8)


@partial(jax.jit, static_argnames=("batch_size", "size", "num_classes", "online", "side"))
def make_batch(
    images, labels, order, key, epoch, index, *, batch_size, size, num_classes, online, side=None
):
    """Batch `index` of `epoch`: `size` images from `order` (a permutation of the split),
    augmented as `online` says (None: as stored) with draws keyed by (key, epoch, index), and
    downscaled to `side` (None: full size). One call per batch: the epoch and index are traced,
    so every full batch of every epoch at one side runs one compiled function."""
    chosen = jax.lax.dynamic_slice_in_dim(order, index * batch_size, size)
    batch, one_hot = images[chosen], jax.nn.one_hot(labels[chosen], num_classes)
    if online is None:
        return batch, one_hot
    key = jax.random.fold_in(jax.random.fold_in(key, epoch), index)
    crop_key, color_key, cutout_key = jax.random.split(key, 3)
    if online.crop_pixels is not None:
        batch = crop_flip(batch, crop_key, online.crop_pixels, not online.alternating_flip)
        if online.alternating_flip:
            # The images were pre-mirrored by mirror_half: odd epochs mirror them all back.
            batch = jnp.where(epoch % 2 == 1, batch[:, :, ::-1], batch)
    if online.color_jitter > 0:
        batch = jitter_colors(batch, color_key, online.color_jitter)
    if online.cutout_fraction > 0:
        batch = cutout(batch, cutout_key, online.cutout_fraction)
    if side is not None:
        batch = downscale(batch, side)
    return batch, one_hot


@partial(jax.jit, static_argnames="count")
def _permutation(key: jax.Array, epoch: int, count: int) -> jax.Array:
    return jax.random.permutation(jax.random.fold_in(key, epoch), count)


class DeviceBatches(keras.utils.PyDataset):
    """Batches of (uint8 images, one-hot float labels) as jax.Arrays made on the device.

    The order of epoch e is a permutation drawn from (shuffle_seed, e) and each batch's draws
    from (seed, e, index), so a batch read twice (Keras reads one ahead to learn the shapes)
    or after a resume is the same batch. The epoch comes from `current_epoch` (the training
    loop's CurrentEpochCallback), else from a count of the epochs Keras ended.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        *,
        shuffle_seed: int | None,
        online: OnlineAugmentation | None = None,
        current_epoch: CurrentEpoch | None = None,
    ) -> None:
        super().__init__()
        self.images, self.labels = jax.device_put(images), jax.device_put(labels.astype(np.int32))
        self.num_classes, self.batch_size, self.count = num_classes, batch_size, len(images)
        self.online = online if online is not None and online.active else None
        self.current_epoch, self._epochs_ended = current_epoch, 0
        seed = shuffle_seed if shuffle_seed is not None else np.random.SeedSequence().entropy
        self._shuffle_key = None if shuffle_seed is None else jax.random.key(seed % 2**32)
        # seed + 1, as the NumPy transform's generator: a stream apart from the shuffle's.
        self._augment_key = jax.random.key((int(seed) + 1) % 2**32)
        self._order, self._order_epoch = jnp.arange(self.count, dtype=jnp.int32), None

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __getitem__(self, index: int) -> tuple[jax.Array, jax.Array]:
        epoch = self.epoch
        return make_batch(
            self.images,
            self.labels,
            self.order(epoch),
            self._augment_key,
            epoch,
            index,
            batch_size=self.batch_size,
            size=min(self.batch_size, self.count - index * self.batch_size),
            num_classes=self.num_classes,
            online=self.online,
            side=self.side(epoch),
        )

    def side(self, epoch: int) -> int | None:
        """The shorter side progressive resizing trains this epoch at; None: full size."""
        if self.online is None or not self.online.resizes:
            return None
        full = min(self.images.shape[1:3])
        side = self.online.image_side(epoch, full)
        return side if side < full else None

    @property
    def epoch(self) -> int:
        return self.current_epoch.epoch if self.current_epoch is not None else self._epochs_ended

    def order(self, epoch: int) -> jax.Array:
        """The device permutation of the split for this epoch (as stored when unseeded)."""
        if self._shuffle_key is not None and self._order_epoch != epoch:
            self._order = _permutation(self._shuffle_key, epoch, self.count)
            self._order_epoch = epoch
        return self._order

    def on_epoch_end(self) -> None:
        self._epochs_ended += 1
