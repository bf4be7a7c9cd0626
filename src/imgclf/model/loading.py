"""The one way imgclf reads a model file: a Keras v3 `.keras` archive, in safe mode."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.errors import ImgclfError

if TYPE_CHECKING:
    import keras

MODEL_SUFFIX = ".keras"
# Every Keras v3 archive holds its architecture here; a legacy HDF5 or a pickle holds no zip.
CONFIG_MEMBER = "config.json"


class ModelFileError(ImgclfError, ValueError):
    """A model file is not a Keras v3 archive, or would need unsafe code to load."""


def check_model_file(path: Path) -> None:
    """Raise ModelFileError unless `path` is a `.keras` zip archive holding config.json.

    Legacy `.h5` files and pickles can run code or bypass Keras' safe mode, so they are refused
    before Keras opens them, by name and by content.
    """
    path = Path(path)
    if path.suffix != MODEL_SUFFIX:
        raise ModelFileError(
            f"{path}: refused to load a {path.suffix or 'suffix-less'} model file; imgclf only "
            f"loads Keras v3 {MODEL_SUFFIX} archives (re-save the model with model.save('x.keras'))"
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path}: not a Keras v3 archive (not a zip file); refused to load it, as a legacy "
            "HDF5 file or a pickle renamed to .keras would be"
        )
    with zipfile.ZipFile(path) as archive:
        if CONFIG_MEMBER not in archive.namelist():
            raise ModelFileError(f"{path}: a zip without {CONFIG_MEMBER}, not a Keras v3 archive")


def load_model_file(path: Path) -> keras.Model:
    """Load a `.keras` model uncompiled, with Keras' safe mode on (no lambdas, no pickled code)."""
    import keras

    check_model_file(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except ValueError as error:
        # Keras names the unsafe part (a Lambda layer's bytecode, say) in its message.
        raise ModelFileError(f"{path}: cannot be loaded in safe mode: {error}") from error
