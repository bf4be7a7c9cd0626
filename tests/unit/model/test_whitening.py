"""imgclf.model.whitening: the patch-whitening kernel against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.model.whitening import extract_patches, sample_images, whitening_kernel


def _correlated_images(count: int = 300, seed: int = 0) -> np.ndarray:
    """Smooth, channel-correlated images: their 2x2 patches are far from white."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(count, 12, 12, 1))
    base = base + np.roll(base, 1, axis=1) + np.roll(base, 1, axis=2)  # neighbours correlate
    mixing = np.array([[1.0, 0.8, 0.5]])
    return (base * mixing + 0.1 * rng.normal(size=(count, 12, 12, 3))).astype(np.float32)


def test_whitened_patches_have_identity_covariance() -> None:
    images = _correlated_images()
    kernel = whitening_kernel(images, patch_size=2, epsilon=1e-6)
    assert kernel.shape == (2, 2, 3, 24)
    patches = extract_patches(images.astype(np.float64), 2)
    raw = patches.T @ patches / len(patches)
    assert np.abs(raw - np.diag(np.diag(raw))).max() > 0.3  # correlated before
    whitened = patches @ kernel.reshape(12, 24)[:, :12]
    covariance = whitened.T @ whitened / len(whitened)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-3)


def test_second_half_of_the_filters_are_the_negatives_largest_eigenvalue_first() -> None:
    images = _correlated_images()
    filters = whitening_kernel(images, patch_size=2).reshape(12, 24)
    np.testing.assert_array_equal(filters[:, 12:], -filters[:, :12])
    # Scaled by 1/sqrt(eigenvalue): the first filter (largest eigenvalue) is the shortest.
    norms = np.linalg.norm(filters[:, :12], axis=0)
    assert np.all(np.diff(norms) >= -1e-6)


def test_patches_are_ordered_like_a_keras_conv_kernel() -> None:
    import keras

    images = _correlated_images(count=4)
    kernel = whitening_kernel(images, patch_size=2)
    conv = keras.layers.Conv2D(24, 2, use_bias=False)
    conv.build(images.shape)
    conv.set_weights([kernel])
    outputs = keras.ops.convert_to_numpy(conv(images)).reshape(-1, 24)
    expected = extract_patches(images, 2) @ kernel.reshape(12, 24)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("count", [3, 50])
def test_sample_is_seeded_and_bounded(count: int) -> None:
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    first, again = sample_images(images, count, seed=4), sample_images(images, count, seed=4)
    np.testing.assert_array_equal(first, again)
    assert len(first) == min(count, 10)
    assert not np.array_equal(sample_images(images, 3, seed=5), sample_images(images, 3, seed=4))
