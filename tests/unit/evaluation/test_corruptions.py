"""Tests for imgclf.evaluation.corruptions: what each corruption does, by hand and by
its properties."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.data.synthetic import draw_synthetic
from imgclf.evaluation.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    corrupt,
    corruption_accuracy,
    corruption_table,
    subset_indices,
)

IMAGES, LABELS = draw_synthetic(12, seed=4)  # 32 x 32, the size the strengths are set for


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_keeps_shape_and_dtype_and_grows_with_severity(name: str) -> None:
    changes = []
    for severity in SEVERITIES:
        corrupted = corrupt(IMAGES, name, severity, seed=0)
        assert corrupted.shape == IMAGES.shape and corrupted.dtype == np.uint8
        assert not np.shares_memory(corrupted, IMAGES)
        changes.append(np.abs(corrupted.astype(float) - IMAGES).mean())
    assert 0 < changes[0] < changes[1] < changes[2], changes


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_same_seed_same_images(name: str) -> None:
    np.testing.assert_array_equal(corrupt(IMAGES, name, 2, seed=5), corrupt(IMAGES, name, 2, 5))


def test_noise_follows_the_seed_and_has_the_stated_strength() -> None:
    grey = np.full((20, 16, 16, 3), 128, np.uint8)
    first, other = corrupt(grey, "gaussian_noise", 1, 0), corrupt(grey, "gaussian_noise", 1, 1)
    assert not np.array_equal(first, other)
    # Severity 1: sigma 0.04 of the 0-255 range (no clipping this far from the ends).
    assert first.astype(float).std() == pytest.approx(0.04 * 255, rel=0.05)
    assert first.astype(float).mean() == pytest.approx(128, abs=0.3)


def test_brightness_raises_hsv_value_keeping_hue_by_hand() -> None:
    image = np.zeros((1, 1, 2, 3), np.uint8)
    image[0, 0, 0] = (100, 50, 0)
    # Severity 1 adds 0.05 to value 100/255: every channel scales by (100/255 + 0.05) / (100/255).
    scale = (100 / 255 + 0.05) / (100 / 255)
    out = corrupt(image, "brightness", 1, seed=0)
    np.testing.assert_array_equal(out[0, 0, 0], np.rint([100 * scale, 50 * scale, 0]))
    # Black has no hue: it becomes grey at the new value.
    np.testing.assert_array_equal(out[0, 0, 1], [13, 13, 13])  # 0.05 * 255 = 12.75


def test_contrast_pulls_towards_the_image_mean_by_hand() -> None:
    image = np.array([0, 100, 200, 100], np.uint8).reshape(1, 2, 2, 1).repeat(3, axis=-1)
    # Mean 100; severity 3 keeps 0.15 of each distance: 0 -> 85, 200 -> 115.
    out = corrupt(image, "contrast", 3, seed=0)
    np.testing.assert_array_equal(out[0, :, :, 0], [[85, 100], [115, 100]])


def test_blur_keeps_flat_images_and_spreads_a_point_symmetrically() -> None:
    flat = np.full((2, 32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(corrupt(flat, "gaussian_blur", 3, seed=0), flat)
    point = np.zeros((1, 33, 33, 3), np.uint8)
    point[0, 16, 16] = 255
    spread = corrupt(point, "gaussian_blur", 3, seed=0)[0, :, :, 0].astype(int)
    assert spread[16, 16] < 255 and spread[16, 17] > 0
    np.testing.assert_array_equal(spread, spread[::-1, :])
    np.testing.assert_array_equal(spread, spread.T)


def test_bad_requests_are_refused_with_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="gaussian_noise"):
        corrupt(IMAGES, "fog", 1, 0)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        corrupt(IMAGES, "jpeg", 4, 0)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(IMAGES.astype(np.float32), "jpeg", 1, 0)


def test_subset_is_seeded_sorted_and_unique() -> None:
    chosen = subset_indices(100, 10, seed=3)
    assert len(set(chosen.tolist())) == 10 and list(chosen) == sorted(chosen)
    np.testing.assert_array_equal(chosen, subset_indices(100, 10, seed=3))
    assert not np.array_equal(chosen, subset_indices(100, 10, seed=4))
    np.testing.assert_array_equal(subset_indices(5, None, 0), np.arange(5))
    np.testing.assert_array_equal(subset_indices(5, 9, 0), np.arange(5))


def test_corruption_accuracy_scores_a_real_predictor() -> None:
    # A fixed rule as the classifier: class 1 when the image is brighter than mid-grey.
    images = np.concatenate(
        [np.full((4, 8, 8, 3), 60, np.uint8), np.full((4, 8, 8, 3), 200, np.uint8)]
    )
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])

    def predict(batch: np.ndarray) -> np.ndarray:
        bright = batch.reshape(len(batch), -1).mean(axis=1) > 127
        return np.stack([~bright, bright], axis=1).astype(float)

    result = corruption_accuracy(predict, images, labels, seed=0)
    assert result["clean_accuracy"] == pytest.approx(7 / 8)
    # Brightness 3 lifts 60 to 60 * (60/255 + 0.3) / (60/255) = 136: all look bright.
    assert result["brightness"]["severity_3"] == pytest.approx(5 / 8)
    # Contrast only moves pixels towards each image's own (flat) mean: nothing changes.
    levels = ("severity_1", "severity_2", "severity_3", "mean")
    assert result["contrast"] == dict.fromkeys(levels, 7 / 8)
    for name in CORRUPTIONS:
        levels = [result[name][f"severity_{level}"] for level in SEVERITIES]
        assert result[name]["mean"] == pytest.approx(np.mean(levels))
    means = [result[name]["mean"] for name in CORRUPTIONS]
    assert result["mean_accuracy"] == pytest.approx(np.mean(means))
    table = corruption_table(result)
    assert [row["severity"] for row in table] == [0, 1, 2, 3]
    assert table[0] == {"severity": 0, **{name: 7 / 8 for name in CORRUPTIONS}}
    assert table[3]["brightness"] == result["brightness"]["severity_3"]


def test_known_clean_predictions_are_scored_without_a_second_pass() -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 1])
    seen: list[np.ndarray] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        seen.append(batch)
        return np.tile([0.0, 1.0], (len(batch), 1))

    clean = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])  # right on images 0 and 3: 2 of 4
    result = corruption_accuracy(predict, images, labels, seed=0, clean=clean)
    assert result["clean_accuracy"] == pytest.approx(2 / 4)
    assert len(seen) == len(CORRUPTIONS) * len(SEVERITIES)  # the corrupted passes only
    assert not any(np.array_equal(batch, images) for batch in seen)
    with pytest.raises(ValueError, match="3 predictions for 4 images"):
        corruption_accuracy(predict, images, labels, seed=0, clean=clean[:3])


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_grey_images_keep_one_channel(name: str) -> None:
    grey = np.random.default_rng(3).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    for severity in SEVERITIES:
        out = corrupt(grey, name, severity, seed=0)
        assert out.shape == grey.shape and out.dtype == np.uint8
    assert not np.array_equal(corrupt(grey, name, 3, seed=0), grey)


def test_grey_gallery_is_drawn(tmp_path) -> None:
    from imgclf.evaluation.figures import plot_image_gallery

    grey = np.random.default_rng(4).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    plot_image_gallery(grey, ["a", "b"], tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").stat().st_size > 1000
