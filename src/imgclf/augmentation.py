"""Augmentation as pure array functions, offline (augment stage) and per batch (train stage).

Offline, flip, rotation, translation and crop are drawn per image and composed into one affine
map, so each augmented image is resampled once (bilinear, mirrored borders) instead of being
blurred by four warps; colour jitter and cutout follow. Online, every training batch of every
epoch gets a fresh random crop and flip, colour jitter, cutout, and MixUp or CutMix (which
also mix the one-hot labels into soft ones). Images stay uint8 throughout.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgclf.data.arrays import to_uint8

# Images are warped in chunks to bound the float32 coordinate grids (~40 MB per chunk).
_CHUNK_IMAGES = 1024


@dataclass(frozen=True)
class AffineDraw:
    """Per-image transform parameters; arrays of length N."""

    flip: np.ndarray  # bool: mirror left-right
    angle_radians: np.ndarray
    scale: np.ndarray  # share of the side kept by the crop (1.0: no crop)
    shift_y: np.ndarray  # pixels
    shift_x: np.ndarray  # pixels


def draw_affine(
    count: int,
    image_size: tuple[int, int],
    rng: np.random.Generator,
    *,
    flip: bool,
    rotation_degrees: float,
    translate_fraction: float,
    crop_fraction: float,
) -> AffineDraw:
    """Draw one random flip/rotation/translation/crop per image."""
    scale = rng.uniform(1.0 - crop_fraction, 1.0, size=count)
    # A crop keeps a window of side `scale`; it may sit anywhere inside the image.
    sides = np.array(image_size, dtype=np.float64)[:, None]  # (height, width) as a column
    crop_room = (1.0 - scale) / 2.0 * sides
    shift = rng.uniform(-1.0, 1.0, size=(2, count)) * (translate_fraction * sides + crop_room)
    return AffineDraw(
        flip=rng.random(count) < 0.5 if flip else np.zeros(count, dtype=bool),
        angle_radians=np.deg2rad(rng.uniform(-rotation_degrees, rotation_degrees, size=count)),
        scale=scale,
        shift_y=shift[0],
        shift_x=shift[1],
    )


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Fold integer coordinates back into [0, size) by mirroring at the borders."""
    period = 2 * size
    index = np.mod(index, period)
    return np.where(index >= size, period - 1 - index, index)


def apply_affine(images: np.ndarray, draw: AffineDraw) -> np.ndarray:
    """Resample uint8 images [N, H, W, C] under the drawn transforms."""
    count, height, width, _ = images.shape
    out = np.empty_like(images)
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    grid_y -= (height - 1) / 2.0
    grid_x -= (width - 1) / 2.0
    for start in range(0, count, _CHUNK_IMAGES):
        part = slice(start, min(start + _CHUNK_IMAGES, count))
        sign = np.where(draw.flip[part], -1.0, 1.0)[:, None, None]
        cos = (np.cos(draw.angle_radians[part]) * draw.scale[part])[:, None, None]
        sin = (np.sin(draw.angle_radians[part]) * draw.scale[part])[:, None, None]
        x = sign * grid_x
        source_x = cos * x - sin * grid_y + (width - 1) / 2.0 + draw.shift_x[part, None, None]
        source_y = sin * x + cos * grid_y + (height - 1) / 2.0 + draw.shift_y[part, None, None]
        out[part] = _bilinear(images[part], source_y, source_x)
    return out


def _bilinear(images: np.ndarray, source_y: np.ndarray, source_x: np.ndarray) -> np.ndarray:
    count, height, width, _ = images.shape
    y0 = np.floor(source_y)
    x0 = np.floor(source_x)
    weight_y = (source_y - y0)[..., None]
    weight_x = (source_x - x0)[..., None]
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    rows = (_mirror(y0, height), _mirror(y0 + 1, height))
    cols = (_mirror(x0, width), _mirror(x0 + 1, width))
    batch = np.arange(count)[:, None, None]
    pixels = images.astype(np.float32)

    def row_blend(row: np.ndarray) -> np.ndarray:
        return pixels[batch, row, cols[0]] * (1 - weight_x) + pixels[batch, row, cols[1]] * weight_x

    top, bottom = row_blend(rows[0]), row_blend(rows[1])
    blended = top * (1 - weight_y) + bottom * weight_y
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def augment_copies(
    images: np.ndarray,
    labels: np.ndarray,
    copies: int,
    seed: int,
    *,
    flip: bool,
    rotation_degrees: float,
    translate_fraction: float,
    crop_fraction: float,
    color_jitter: float = 0.0,
    cutout_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the originals followed by `copies` augmented copies of each, with labels."""
    rng = np.random.default_rng(seed)
    batches = [images]
    for _ in range(copies):
        draw = draw_affine(
            len(images),
            images.shape[1:3],
            rng,
            flip=flip,
            rotation_degrees=rotation_degrees,
            translate_fraction=translate_fraction,
            crop_fraction=crop_fraction,
        )
        copy = apply_affine(images, draw)
        if color_jitter > 0:
            copy = jitter_colors(copy, rng, color_jitter)
        if cutout_fraction > 0:
            copy = cutout(copy, rng, cutout_fraction)
        batches.append(copy)
    return np.concatenate(batches), np.tile(labels, copies + 1)


def preview_grid(originals: np.ndarray, variants: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """One row per original: the original, then each of its variants, on a white grid."""
    count, height, width, channels = originals.shape
    columns = 1 + len(variants)
    grid = np.full(
        (count * (height + gap) + gap, columns * (width + gap) + gap, channels), 255, np.uint8
    )
    for row in range(count):
        for column, source in enumerate([originals, *variants]):
            top = gap + row * (height + gap)
            left = gap + column * (width + gap)
            grid[top : top + height, left : left + width] = source[row]
    return grid


def random_crop_flip(
    images: np.ndarray, rng: np.random.Generator, pad_pixels: int, flip: bool = True
) -> np.ndarray:
    """Per image: a random window of the original size from the mirror-padded image, and (with
    `flip`) a left-right flip for half of them. Cheap enough for every batch of every epoch."""
    count, height, width, _ = images.shape
    pad = pad_pixels
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rows = rng.integers(0, 2 * pad + 1, size=count)[:, None] + np.arange(height)
    columns = rng.integers(0, 2 * pad + 1, size=count)[:, None] + np.arange(width)
    if flip:
        flipped = rng.random(count) < 0.5
        columns = np.where(flipped[:, None], columns[:, ::-1], columns)
    batch = np.arange(count)[:, None, None]
    return padded[batch, rows[:, :, None], columns[:, None, :]]


# --- Photometric and erasing --------------------------------------------------------------------

CUTOUT_FILL = 128  # mid-grey: close to the mean pixel the models subtract


def jitter_colors(images: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per image: brightness, contrast and (colour images) saturation each scaled by a factor
    drawn from [1 - strength, 1 + strength], in that order."""
    count, channels = len(images), images.shape[-1]
    factors = rng.uniform(1.0 - strength, 1.0 + strength, size=(3, count, 1, 1, 1))
    pixels = images.astype(np.float32) * factors[0]
    mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
    pixels = (pixels - mean) * factors[1] + mean
    if channels == 3:
        gray = pixels.mean(axis=3, keepdims=True)
        pixels = (pixels - gray) * factors[2] + gray
    return to_uint8(pixels)


def box_mask(
    count: int, image_size: tuple[int, int], box_size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A bool mask [N, H, W]: one box per image, centred anywhere, clipped at the borders."""
    (height, width), (box_height, box_width) = image_size, box_size
    top = rng.integers(0, height, size=count) - box_height // 2
    left = rng.integers(0, width, size=count) - box_width // 2
    rows, columns = np.arange(height), np.arange(width)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + box_height)
    in_columns = (columns >= left[:, None]) & (columns < left[:, None] + box_width)
    return in_rows[:, :, None] & in_columns[:, None, :]


def cutout(images: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Random erasing: one square of side `fraction` of the shorter side per image, filled with
    mid-grey; its centre is anywhere in the image, so part of it may fall outside."""
    height, width = images.shape[1:3]
    side = max(1, round(fraction * min(height, width)))
    out = images.copy()
    out[box_mask(len(images), (height, width), (side, side), rng)] = CUTOUT_FILL
    return out


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

    @property
    def active(self) -> bool:
        return self.crop_pixels is not None or any(
            value > 0
            for value in (
                self.color_jitter,
                self.cutout_fraction,
                self.mixup_alpha,
                self.cutmix_alpha,
            )
        )

    @property
    def alternating_flip(self) -> bool:
        """Whether the training images must be pre-mirrored by `mirror_half` (epoch 0)."""
        return self.crop_pixels is not None and self.flip == "alternating"

    def batch_transform(self, seed: int | None, steps_per_epoch: int = 1) -> BatchTransform | None:
        """A stateful (images uint8, one-hot labels) -> same function; None when nothing is on.

        One generator serves every batch, so a seed fixes the whole sequence of draws as long
        as batches arrive in order. The alternating flip counts batches to know the epoch: it
        mirrors every batch of the odd epochs (the images were pre-mirrored by mirror_half).
        """
        if not self.active:
            return None
        rng = np.random.default_rng(None if seed is None else seed + 1)
        batches = itertools.count()

        def transform(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if self.crop_pixels is not None:
                images = random_crop_flip(
                    images, rng, self.crop_pixels, flip=not self.alternating_flip
                )
                if self.alternating_flip and (next(batches) // steps_per_epoch) % 2:
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
            return images, labels.astype(np.float32)

        return transform
