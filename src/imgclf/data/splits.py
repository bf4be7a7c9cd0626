"""Seeded, stratified splits of a labelled array."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, held_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held) with held_fraction of every class held out.

    Each class with at least two images keeps at least one and holds out at least one, so
    small classes still appear on both sides.
    """
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        rng.shuffle(indices)
        count = len(indices)
        n_held = int(round(held_fraction * count))
        if count >= 2:
            n_held = min(max(n_held, 1), count - 1)
        held.append(indices[:n_held])
        kept.append(indices[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def val_split(
    labels: np.ndarray, val_fraction: float, preprocess_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) of the preprocess stage's val carve from the train images.

    It draws with preprocess.seed + 1, so it never repeats the test carve's draw (preprocess.seed)
    on a source without a test split.
    """
    return stratified_split(labels, val_fraction, preprocess_seed + 1)
