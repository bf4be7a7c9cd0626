"""imgclf loads models only from Keras v3 `.keras` archives, in safe mode."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.model.loading import ModelFileError, load_model_file


def tiny_model(with_lambda: bool = False) -> keras.Model:
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    if with_lambda:
        hidden = keras.layers.Lambda(lambda x: x * 2.0, name="doubled")(hidden)
    return keras.Model(inputs, keras.layers.Softmax()(hidden))


def test_a_keras_archive_loads_uncompiled_with_its_weights(tmp_path: Path) -> None:
    model = tiny_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model_file(path)
    assert not loaded.compiled
    features = np.arange(8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(
        loaded.predict(features, verbose=0), model.predict(features, verbose=0)
    )


def test_a_legacy_h5_model_is_refused_by_name_and_by_content(tmp_path: Path) -> None:
    legacy = tmp_path / "model.h5"
    keras.saving.save_model(tiny_model(), legacy)  # Keras still writes the legacy format
    with pytest.raises(ModelFileError, match=r"model\.h5: refused to load a \.h5 model file"):
        load_model_file(legacy)
    disguised = tmp_path / "model.keras"
    disguised.write_bytes(legacy.read_bytes())
    with pytest.raises(ModelFileError, match="not a zip file"):
        load_model_file(disguised)


def test_a_pickled_model_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name in ("model.pkl", "model.keras"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(Planted()))
        with pytest.raises(ModelFileError, match=name):
            load_model_file(path)
    assert not marker.exists()


def test_a_zip_without_a_keras_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.bin", b"\x00" * 16)
    with pytest.raises(ModelFileError, match="without config.json"):
        load_model_file(path)


def test_a_lambda_layer_is_refused_in_safe_mode(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    tiny_model(with_lambda=True).save(path)
    with pytest.raises(ModelFileError, match="safe mode"):
        load_model_file(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="absent.keras: no such model file"):
        load_model_file(tmp_path / "absent.keras")


def test_the_stages_and_the_registry_load_through_it() -> None:
    source = Path(__file__).resolve().parents[3] / "src" / "imgclf"
    for module in ("stages/evaluate.py", "promotion/model_registry.py"):
        text = (source / module).read_text(encoding="utf-8")
        assert "load_model_file(" in text and "keras.saving.load_model" not in text, module
