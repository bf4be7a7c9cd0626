"""Random uint8 images for the augmentation tests."""

from __future__ import annotations

import numpy as np


def random_images(count: int, side: int = 12, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (count, side, side, channels), dtype=np.uint8
    )
