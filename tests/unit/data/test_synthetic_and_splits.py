"""Tests for the synthetic source and the seeded stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.splits import stratified_split
from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic


def test_synthetic_shapes_dtypes_and_balance() -> None:
    images, labels = draw_synthetic(50, seed=1, image_size=16)
    assert images.shape == (50, 16, 16, 3) and images.dtype == np.uint8
    assert labels.shape == (50,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [5] * 10)
    assert len(SYNTHETIC_CLASSES) == 10


def test_synthetic_uneven_count_stays_within_one_per_class() -> None:
    _, labels = draw_synthetic(23, seed=0, image_size=8)
    counts = np.bincount(labels, minlength=len(SYNTHETIC_CLASSES))
    assert counts.sum() == 23 and counts.max() - counts.min() == 1


def test_synthetic_is_deterministic_per_seed() -> None:
    first = draw_synthetic(20, seed=4, image_size=12)
    again = draw_synthetic(20, seed=4, image_size=12)
    other = draw_synthetic(20, seed=5, image_size=12)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_synthetic_images_are_distinct() -> None:
    images, _ = draw_synthetic(60, seed=2)
    # Duplicates would show up as train/test leakage in the validate stage.
    assert len(np.unique(images.reshape(len(images), -1), axis=0)) == 60


# 50, 20, 3, 2 and 1 images per class.
LABELS = np.repeat(np.arange(5), [50, 20, 3, 2, 1])
# held = round(0.2 * n), at least one and at most n - 1 when n >= 2.
EXPECTED_HELD = [10, 4, 1, 1, 0]


def test_split_holds_the_fraction_of_every_class() -> None:
    labels = np.random.default_rng(0).permutation(LABELS)
    kept, held = stratified_split(labels, 0.2, seed=7)
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=5), EXPECTED_HELD)
    np.testing.assert_array_equal(
        np.bincount(labels[kept], minlength=5), np.bincount(labels) - EXPECTED_HELD
    )


def test_split_is_a_sorted_partition() -> None:
    labels = np.random.default_rng(1).permutation(LABELS)
    kept, held = stratified_split(labels, 0.3, seed=0)
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)


@pytest.mark.parametrize("fraction", [0.01, 0.49])
def test_small_classes_appear_on_both_sides(fraction: float) -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    kept, held = stratified_split(labels, fraction, seed=0)
    assert set(labels[kept]) == {0, 1, 2}
    assert set(labels[held]) == {0, 1, 2}


def test_split_is_deterministic_per_seed() -> None:
    first = stratified_split(LABELS, 0.2, seed=3)
    again = stratified_split(LABELS, 0.2, seed=3)
    other = stratified_split(LABELS, 0.2, seed=4)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[1], other[1])
