"""Common image corruptions at three severities, as pure functions of uint8 image batches.

The recipes and strengths follow CIFAR-10-C (Hendrycks & Dietterich, 2019): its severities 1, 3
and 5 become our 1, 2 and 3, so the numbers read against published CIFAR-10-C results (which
use all five). Blur radii are given for 32-pixel images and scale with the image side.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from imgclf.data.arrays import to_uint8

SEVERITIES = (1, 2, 3)
# Per corruption, the strength at severities 1, 2, 3 (CIFAR-10-C levels 1, 3, 5).
NOISE_STD = (0.04, 0.08, 0.10)  # Gaussian noise, fraction of the 0-255 range
BLUR_SIGMA_32PX = (0.4, 0.7, 1.0)  # Gaussian blur, pixels on a 32-pixel image
BRIGHTNESS_SHIFT = (0.05, 0.15, 0.30)  # added to the HSV value channel (0-1)
CONTRAST_FACTOR = (0.75, 0.40, 0.15)  # distance to the image mean is multiplied by this
JPEG_QUALITY = (80, 58, 40)  # JPEG re-compression quality


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    std = NOISE_STD[severity - 1] * 255.0
    return to_uint8(images + rng.normal(0.0, std, images.shape))


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = BLUR_SIGMA_32PX[severity - 1] * min(images.shape[1:3]) / 32
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), 256):  # bounded float memory on large test sets
        chunk = images[start : start + 256].astype(np.float32)
        for axis in (1, 2):  # separable: rows, then columns, mirrored at the borders
            padding = [(0, 0)] * 4
            padding[axis] = (radius, radius)
            padded = np.pad(
                chunk, padding, mode="reflect" if radius < chunk.shape[axis] else "edge"
            )
            length = chunk.shape[axis]
            chunk = sum(
                weight * np.take(padded, np.arange(offset, offset + length), axis=axis)
                for offset, weight in enumerate(taps)
            )
        out[start : start + 256] = to_uint8(chunk)
    return out


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # Raising HSV value while hue and saturation stay: every channel scales by new/old value.
    value = images.max(axis=-1, keepdims=True).astype(np.float64) / 255.0
    raised = np.minimum(value + BRIGHTNESS_SHIFT[severity - 1], 1.0)
    scale = np.divide(raised, value, out=np.zeros_like(value), where=value > 0)
    grey = np.where(value > 0, 0.0, raised * 255.0)  # black has no hue: it turns grey
    return to_uint8(images * scale + grey)


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    return to_uint8((images - mean) * CONTRAST_FACTOR[severity - 1] + mean)


def jpeg(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(images)
    mode = "RGB" if images.shape[-1] == 3 else "L"
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        pixels = Image.fromarray(image if mode == "RGB" else image[..., 0], mode)
        pixels.save(buffer, format="JPEG", quality=JPEG_QUALITY[severity - 1])
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[index] = np.asarray(decoded.convert(mode)).reshape(image.shape)
    return out


Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "brightness": brightness,
    "contrast": contrast,
    "jpeg": jpeg,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """uint8 images [N, H, W, C] (C: 1 or 3) corrupted by `name` at severity 1-3; the same seed,
    the same result."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images [N, H, W, 1 or 3], got {images.dtype} {images.shape}"
        )
    # Each (corruption, severity) draws from its own stream: the order they run in is free.
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])
    return CORRUPTIONS[name](images, severity, rng)


def subset_indices(total: int, limit: int | None, seed: int) -> np.ndarray:
    """All of range(total), or a seeded sorted choice of `limit` of them."""
    if limit is None or limit >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))


def corruption_accuracy(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    clean: np.ndarray | None = None,
) -> dict:
    """Accuracy on the clean images and under every corruption and severity.

    predict maps a uint8 batch to class probabilities; clean: its probabilities on `images`
    when they are already known (evaluate scored them), so that pass is not made twice.
    Returns clean_accuracy, mean_accuracy (over all corruptions and severities) and per
    corruption {"severity_1": ..., "severity_2": ..., "severity_3": ..., "mean": ...}.
    """
    if clean is not None and len(clean) != len(labels):
        raise ValueError(f"clean holds {len(clean)} predictions for {len(labels)} images")

    def accuracy(probabilities: np.ndarray) -> float:
        return float((probabilities.argmax(axis=1) == labels).mean()) if len(labels) else 0.0

    per_corruption = {}
    for name in CORRUPTIONS:
        scores = {
            f"severity_{severity}": accuracy(predict(corrupt(images, name, severity, seed)))
            for severity in SEVERITIES
        }
        per_corruption[name] = {**scores, "mean": float(np.mean(list(scores.values())))}
    return {
        "clean_accuracy": accuracy(predict(images) if clean is None else clean),
        "mean_accuracy": float(np.mean([scores["mean"] for scores in per_corruption.values()])),
        **per_corruption,
    }


def corruption_table(result: dict) -> list[dict[str, float]]:
    """corruption_accuracy as rows by severity (0: clean), a column per corruption."""
    rows = [{"severity": 0, **{name: result["clean_accuracy"] for name in CORRUPTIONS}}]
    for severity in SEVERITIES:
        level = f"severity_{severity}"
        rows.append({"severity": severity, **{name: result[name][level] for name in CORRUPTIONS}})
    return rows
