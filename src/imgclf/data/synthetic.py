"""A small, learnable, procedurally drawn 10-class image set for offline runs and tests."""

from __future__ import annotations

import numpy as np

SYNTHETIC_CLASSES = (
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "hstripes",
    "vstripes",
    "diagonal",
    "checker",
    "dots",
)
# Each class leans towards its own hue so one epoch of a small net clearly beats chance, while
# the shape still carries the label when the hue jitter makes neighbours overlap.
_BASE_HUES = np.linspace(0.0, 0.9, len(SYNTHETIC_CLASSES))


def _shape_mask(label: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = yy.shape[0]
    radius = rng.uniform(0.22, 0.34) * size
    cy, cx = rng.uniform(radius, size - radius, size=2)
    dy, dx = yy - cy, xx - cx
    period = rng.integers(4, 7)
    phase = rng.integers(0, period)
    inside = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    masks = {
        "disc": dy**2 + dx**2 <= radius**2,
        "square": inside,
        "triangle": (dy >= -radius) & (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2),
        "ring": np.abs(np.sqrt(dy**2 + dx**2) - radius * 0.75) <= radius * 0.22,
        "cross": ((np.abs(dy) <= radius * 0.25) | (np.abs(dx) <= radius * 0.25)) & inside,
        "hstripes": ((yy.astype(int) + phase) % period < period // 2),
        "vstripes": ((xx.astype(int) + phase) % period < period // 2),
        "diagonal": np.abs(dy - dx) <= radius * 0.3,
        "checker": (((yy.astype(int) // 4) + (xx.astype(int) // 4)) % 2 == 0) & inside,
        "dots": ((yy.astype(int) % 6 < 2) & (xx.astype(int) % 6 < 2)) & inside,
    }
    return masks[SYNTHETIC_CLASSES[label]]


def _hue_to_rgb(hue: float) -> np.ndarray:
    channel_phase = np.array([0.0, 1 / 3, 2 / 3])
    return 0.5 + 0.5 * np.cos(2 * np.pi * (hue - channel_phase))


def draw_synthetic(count: int, seed: int, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Draw `count` images with balanced labels: uint8 [N, S, S, 3] and int64 [N]."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % len(SYNTHETIC_CLASSES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        hue = _BASE_HUES[label] + rng.normal(0.0, 0.06)
        foreground = _hue_to_rgb(hue) * rng.uniform(0.7, 1.0)
        background = rng.uniform(0.0, 0.35, size=3)
        mask = _shape_mask(int(label), yy, xx, rng)[..., None]
        picture = np.where(mask, foreground, background)
        picture = picture + rng.normal(0.0, 0.06, size=picture.shape)
        images[i] = np.clip(picture * 255.0, 0, 255).astype(np.uint8)
    return images, labels
