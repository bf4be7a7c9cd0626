"""imgclf.model.tta: the views averaged inside the saved model, against NumPy."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.model.tta import with_test_time_augmentation


def _base() -> keras.Model:
    """A model that is not mirror- or shift-invariant, on raw uint8 pixels."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(6, 6, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="base")


def _images() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(5, 6, 6, 3), dtype=np.uint8)


def test_none_is_the_model_itself() -> None:
    base = _base()
    assert with_test_time_augmentation(base, "none") is base


def test_flip_averages_the_image_and_its_mirror() -> None:
    base, images = _base(), _images()
    expected = (base.predict(images, verbose=0) + base.predict(images[:, :, ::-1], verbose=0)) / 2
    tta = with_test_time_augmentation(base, "flip")
    np.testing.assert_allclose(tta.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, base.predict(images, verbose=0), atol=1e-3)


def test_flip_translate_adds_the_one_pixel_shifts(tmp_path: Path) -> None:
    base, images = _base(), _images()

    def mirrored(view: np.ndarray) -> np.ndarray:
        return (base.predict(view, verbose=0) + base.predict(view[:, :, ::-1], verbose=0)) / 2

    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = (mirrored(padded[:, :6, :6]) + mirrored(padded[:, 2:, 2:])) / 2
    expected = (mirrored(images) + shifted) / 2
    tta = with_test_time_augmentation(base, "flip_translate")
    np.testing.assert_allclose(tta.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # The saved file holds the views: reloaded (stock Keras, safe mode) it scores the same.
    tta.save(tmp_path / "tta.keras")
    reloaded = keras.saving.load_model(tmp_path / "tta.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_unknown_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="flip_translate"):
        with_test_time_augmentation(_base(), "rotate")
