"""Augmentation per training batch (the train stage): crop and flip, colour jitter, cutout,
MixUp and CutMix, drawn afresh for every batch of every epoch, and the smaller images of
progressive resizing in the first epochs.

Apart from `imgclf.augmentation` (the augment stage's offline copies and the primitives both share)
because this part runs inside the input pipeline, holds state across batches (one generator,
the epoch count of the alternating flip and of progressive resizing) and turns one-hot labels
into soft ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgclf.augmentation import box_mask, cutout, jitter_colors
from imgclf.data.arrays import to_uint8


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, pad_pixels: int, flip: bool = True
) -> np.ndarray:
    """Per image: a random window of the original size from the mirror-padded image, and (with
    `flip`) a left-right flip for half of them. Cheap enough for every batch of every epoch."""
    count, height, width, _ = images.shape
    pad = pad_pixels
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    tops = rng.integers(0, 2 * pad + 1, size=count)
    lefts = rng.integers(0, 2 * pad + 1, size=count)
    flipped = rng.random(count) < 0.5 if flip else np.zeros(count, dtype=bool)
    # One slice per image: a gather with index arrays took ~7x as long (6 ms a 256-image
    # batch), CPU time the training step on the same cores then lacks.
    out = np.empty_like(images)
    for index, (top, left, mirror) in enumerate(zip(tops, lefts, flipped, strict=True)):
        window = padded[index, top : top + height, left : left + width]
        out[index] = window[:, ::-1] if mirror else window
    return out


def area_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Area resampling along one axis as (target, taps) input indices and weights: each output
    pixel averages the input pixels its span covers, weighted by the covered share (each row of
    weights sums to 1; spans shorter than one pixel are not needed, so `target` < `source`)."""
    span = source / target
    taps = int(np.ceil(span)) + 1  # the most pixels a span of that length can touch
    starts = np.arange(target) * span
    indices = np.floor(starts)[:, None].astype(np.int64) + np.arange(taps)
    covered = np.minimum(starts[:, None] + span, indices + 1) - np.maximum(starts[:, None], indices)
    weights = np.clip(covered, 0.0, None) / span
    return np.minimum(indices, source - 1), weights.astype(np.float32)


def area_resampling(height: int, width: int, side: int) -> tuple[np.ndarray, ...]:
    """Row indices and weights, then column indices and weights (area_taps), that resample a
    height x width image so its shorter side is `side`, the other keeping the aspect ratio."""
    scale = side / min(height, width)
    return (*area_taps(height, round(height * scale)), *area_taps(width, round(width * scale)))


def downscale(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, H, W, C) images area-resampled so the shorter side is `side` (the other keeps
    the aspect ratio): every input pixel counts, so a smaller copy keeps what the whole image
    shows (a crop would cut part of it away).

    Gathers and weighted sums, no matrix product: NumPy's BLAS threads would compete with the
    training step for the same cores."""
    rows, row_weights, columns, column_weights = area_resampling(*images.shape[1:3], side)
    pixels = images.astype(np.float32)
    # (N, side, taps, W, C) -> (N, side, W, C), then the same along the width.
    pixels = np.einsum("nstwc,st->nswc", pixels[:, rows], row_weights)
    pixels = np.einsum("nhstc,st->nhsc", pixels[:, :, columns], column_weights)
    return to_uint8(pixels)


# --- Label mixing ---------------------------------------------------------------------------------


def mixup(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Blend the batch with a shuffled copy of itself by one weight drawn from Beta(alpha,
    alpha); labels (one-hot or soft) blend by the same weight."""
    weight = rng.beta(alpha, alpha)
    partner = rng.permutation(len(images))
    pixels = weight * images.astype(np.float32) + (1 - weight) * images[partner]
    return to_uint8(pixels), (weight * labels + (1 - weight) * labels[partner]).astype(np.float32)


def cutmix(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Paste one box from a shuffled copy of the batch into every image; the box covers about
    1 - w of the area for w ~ Beta(alpha, alpha), and labels mix by the exact pasted share."""
    height, width = images.shape[1:3]
    side_share = np.sqrt(1.0 - rng.beta(alpha, alpha))
    box = (round(height * side_share), round(width * side_share))
    partner = rng.permutation(len(images))
    mask = box_mask(1, (height, width), box, rng)[0]
    out = images.copy()
    out[:, mask] = images[partner][:, mask]
    pasted = mask.mean()
    return out, ((1 - pasted) * labels + pasted * labels[partner]).astype(np.float32)


def mirror_half(images: np.ndarray, seed: int | None) -> np.ndarray:
    """A copy with a fixed, seeded random half of the images mirrored left-right.

    The first epoch of the alternating flip: every later odd epoch mirrors the whole set, so
    each image is seen once each way in every two epochs instead of by chance.
    """
    mirrored = np.random.default_rng(seed).random(len(images)) < 0.5
    out = images.copy()
    out[mirrored] = out[mirrored][:, :, ::-1]
    return out


# --- The per-batch pipeline of the train stage ---------------------------------------------------

BatchTransform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class CurrentEpoch:
    """The epoch the training loop is in (0-based), set as each epoch starts; the batch
    transform reads it for the alternating flip and the image size, which a count of batches
    would get wrong after a resume."""

    epoch: int = 0


@dataclass(frozen=True)
class OnlineAugmentation:
    """What happens to every training batch, in this order: crop+flip, colour jitter, cutout,
    then MixUp or CutMix (both on: one of the two per batch, evenly)."""

    crop_pixels: int | None = None  # None: no crop and flip
    flip: str = "random"  # with the crop: "random" half of each batch, or "alternating"
    color_jitter: float = 0.0
    cutout_fraction: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    small_side: int | None = None  # progressive resizing: the side of the first epochs' images
    small_epochs: int = 0  # how many first epochs train on them (downscaled by area)

    @property
    def active(self) -> bool:
        return (
            self.crop_pixels is not None
            or self.resizes
            or any(
                value > 0
                for value in (
                    self.color_jitter,
                    self.cutout_fraction,
                    self.mixup_alpha,
                    self.cutmix_alpha,
                )
            )
        )

    @property
    def resizes(self) -> bool:
        """Whether some epochs train on smaller images (batches then change size mid-run)."""
        return self.small_side is not None and self.small_epochs > 0

    def image_side(self, epoch: int, full_side: int) -> int:
        """The shorter side, in pixels, of the images the 0-based `epoch` trains on, given the
        training images' own shorter side (downscaling keeps the ratio)."""
        return self.small_side if self.resizes and epoch < self.small_epochs else full_side

    @property
    def alternating_flip(self) -> bool:
        """Whether the training images must be pre-mirrored by `mirror_half` (epoch 0)."""
        return self.crop_pixels is not None and self.flip == "alternating"

    def batch_transform(
        self, seed: int | None, steps_per_epoch: int = 1, current_epoch: CurrentEpoch | None = None
    ) -> BatchTransform | None:
        """A stateful (images uint8, one-hot labels) -> same function; None when nothing is on.

        One generator serves every batch, so a seed fixes the whole sequence of draws as long
        as batches arrive in order. The alternating flip mirrors every batch of the odd epochs
        (the images were pre-mirrored by mirror_half); progressive resizing downscales the
        first ones. Both read the epoch from `current_epoch` when given (the training loop sets
        it: a resumed run, or a loader that reads a batch ahead to learn the shapes, as Keras'
        PyDataset adapter does, leaves a count of batches off), else count batches.
        """
        if not self.active:
            return None
        rng = np.random.default_rng(None if seed is None else seed + 1)
        batches = itertools.count()

        def transform(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            counted = next(batches) // steps_per_epoch
            epoch = current_epoch.epoch if current_epoch is not None else counted
            if self.crop_pixels is not None:
                images = random_crop_flip(
                    images, rng, self.crop_pixels, flip=not self.alternating_flip
                )
                if self.alternating_flip and epoch % 2:
                    images = images[:, :, ::-1]
            if self.color_jitter > 0:
                images = jitter_colors(images, rng, self.color_jitter)
            if self.cutout_fraction > 0:
                images = cutout(images, rng, self.cutout_fraction)
            mixers = [
                (mix, alpha)
                for mix, alpha in ((mixup, self.mixup_alpha), (cutmix, self.cutmix_alpha))
                if alpha > 0
            ]
            if mixers:
                mix, alpha = mixers[rng.integers(len(mixers))] if len(mixers) > 1 else mixers[0]
                images, labels = mix(images, labels, rng, alpha)
            if self.resizes and epoch < self.small_epochs:
                images = downscale(images, self.small_side)
            return images, labels.astype(np.float32)

        return transform
