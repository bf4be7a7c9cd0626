"""Augmentation as pure array functions: the augment stage's offline copies.

Flip, rotation, translation and crop are drawn per image and composed into one affine map, so
each augmented image is resampled once (bilinear, mirrored borders) instead of being blurred by
four warps; colour jitter and cutout follow. Images stay uint8 throughout. What happens to every
training batch (crop and flip, MixUp, CutMix) is `training/online_augmentation.py`, which reuses the
colour jitter and cutout here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

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
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the originals followed by `copies` augmented copies of each, with labels.

    progress: a bar counting the copies; None shows it only when stderr is a terminal.
    """
    rng = np.random.default_rng(seed)
    batches = [images]
    hidden = None if progress is None else not progress  # tqdm's None: only on a terminal
    for _ in tqdm(range(copies), desc="augment", unit="copy", disable=hidden):
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


# --- Photometric and erasing --------------------------------------------------------------------

CUTOUT_FILL = 128  # mid-grey: close to the mean pixel the models subtract


def jitter_colors(images: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Per image: brightness, contrast and (colour images) saturation each scaled by a factor
    drawn from [1 - strength, 1 + strength], in that order."""
    factors = rng.uniform(1.0 - strength, 1.0 + strength, size=(3, len(images), 1, 1, 1))
    return to_uint8(scale_colors(images.astype(np.float32), factors))


def scale_colors(pixels, factors):
    """Float pixels [N, H, W, C] with brightness, contrast and (C = 3) saturation scaled by
    factors [3, N, 1, 1, 1], in that order: plain arithmetic, for NumPy and JAX arrays alike."""
    pixels = pixels * factors[0]
    mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
    pixels = (pixels - mean) * factors[1] + mean
    if pixels.shape[-1] == 3:
        gray = pixels.mean(axis=3, keepdims=True)
        pixels = (pixels - gray) * factors[2] + gray
    return pixels


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
