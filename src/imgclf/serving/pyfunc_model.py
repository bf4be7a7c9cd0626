"""The MLflow pyfunc model of a trained classifier: images in, class names out.

This is an MLflow "models from code" file: `tracking.artifacts.log_model` hands MLflow its path,
MLflow copies it into every logged model and runs it when the model is loaded (`mlflow.pyfunc.
load_model`, `mlflow models serve`). So it imports nothing from imgclf, and running it calls
`mlflow.models.set_model`, which is its whole purpose; nothing in imgclf imports it. Nothing is
unpickled: the Keras model is the `.keras` file train saved, loaded in safe mode, and the class
names come from the model config.

It takes a batch as raw pixels (whole numbers in 0-255, [N, H, W, C] at the model's size) or as
PNG/JPEG files (bytes, or base64 strings in JSON), decoded and resized as `imgclf predict` and
the folder source do. The logged signature lets every value through untouched, so this file,
not an MLflow cast, refuses what the model cannot use: an MlflowException with
INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400.
"""

from __future__ import annotations

import base64
import binascii
import io

import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from PIL import Image, ImageOps, UnidentifiedImageError

KERAS_ARTIFACT = "keras_model"
CLASS_NAMES_KEY = "class_names"
INPUT_NAME = "image"  # the signature's one input (tracking/artifacts.py names it too)
ACCEPTED_FORMATS = ("JPEG", "PNG")
SIXTEEN_BIT_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
NAMED_FAILURES = 5  # an error lists this many bad images, then a count
EXPECTED_INPUT = (
    'send PNG or JPEG files as base64 strings, {"inputs": {"image": ["<base64>", ...]}}, or raw '
    "8-bit pixels: whole numbers in 0-255, shape [N, height, width, channels]"
)


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Answers a batch of images with label, confidence and per-class probabilities."""

    def load_context(self, context) -> None:
        path = context.artifacts[KERAS_ARTIFACT]
        self.model = keras.saving.load_model(path, compile=False, safe_mode=True)
        self.class_names = list(context.model_config[CLASS_NAMES_KEY])

    # model_input has no type hint: with one, MLflow would check or convert it first.
    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        images = prepare_batch(model_input, tuple(self.model.input_shape[1:4]))
        probabilities = np.asarray(self.model.predict(images, verbose=0), dtype=np.float64)
        best = probabilities.argmax(axis=1)
        return pd.DataFrame(
            {
                "label": [self.class_names[index] for index in best],
                "confidence": probabilities[np.arange(len(best)), best],
                "probabilities": [
                    dict(zip(self.class_names, row.tolist(), strict=True)) for row in probabilities
                ],
            }
        )


def prepare_batch(model_input, input_shape: tuple) -> np.ndarray:
    """The model's uint8 [N, H, W, C] from encoded images or raw pixels, or a 400 saying why not.

    input_shape is the model's (H, W, C); None where the model takes any size.
    """
    batch = _unwrap(model_input)
    if len(batch) == 0:
        raise _invalid(f"the batch holds no image; {EXPECTED_INPUT}")
    if batch.ndim == 1 and batch.dtype.kind in "OSU":
        height, width, channels = input_shape
        size = (height, width) if height and width else None
        return decode_batch(batch, size, channels or 3)
    return check_pixels(batch, input_shape)


def _unwrap(model_input) -> np.ndarray:
    """The batch inside what MLflow hands over: {"image": array}, a DataFrame, a list or array."""
    if isinstance(model_input, dict):
        if INPUT_NAME not in model_input:
            raise _invalid(f"the input has no {INPUT_NAME!r} field ({sorted(model_input)})")
        model_input = model_input[INPUT_NAME]
    if isinstance(model_input, pd.DataFrame):
        if INPUT_NAME not in model_input.columns and len(model_input.columns) != 1:
            columns = list(model_input.columns)
            raise _invalid(f"the input has no {INPUT_NAME!r} column ({columns})")
        column = INPUT_NAME if INPUT_NAME in model_input.columns else model_input.columns[0]
        model_input = model_input[column]
    if isinstance(model_input, pd.Series):
        model_input = model_input.to_numpy()
    if isinstance(model_input, (list, tuple)):
        try:
            return np.asarray(model_input, dtype=object)
        except ValueError as error:  # rows of different lengths
            raise _invalid(f"the images cannot form one batch ({error})") from error
    if not isinstance(model_input, np.ndarray) or model_input.ndim == 0:
        raise _invalid(f"got {type(model_input).__name__}, not a batch of images")
    return model_input


def decode_batch(items: np.ndarray, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Decode every encoded image; one error lists each that fails, by its index in the batch."""
    decoded, failures = [], []
    for index, item in enumerate(items):
        try:
            decoded.append(decode_image(_encoded_bytes(item), size, channels))
        except ValueError as error:
            failures.append(f"image {index}: {error}")
    if failures:
        more = len(failures) - NAMED_FAILURES
        listed = "; ".join(failures[:NAMED_FAILURES]) + (f"; and {more} more" if more > 0 else "")
        raise _invalid(f"{len(failures)} of {len(items)} images cannot be used: {listed}")
    if len({pixels.shape for pixels in decoded}) > 1:
        raise _invalid("the images decode to different sizes and the model resizes none")
    return np.stack(decoded)


def _encoded_bytes(item) -> bytes:
    """The file bytes of one encoded image: bytes as they are, a string base64-decoded."""
    if isinstance(item, np.ndarray) and item.ndim == 0:
        item = item.item()  # how MLflow parses {"instances": [{"image": "<base64>"}, ...]}
    if isinstance(item, bytes):
        return item
    if not isinstance(item, str):
        raise ValueError(
            f"a {type(item).__name__} is neither a base64 string nor bytes (pixel arrays must "
            "all have the same shape)"
        )
    if item.startswith("data:") and "," in item:
        item = item.split(",", 1)[1]  # a data URL, as browsers make them
    try:
        # Line breaks, as plain `base64` writes them, are no data; other stray characters are.
        return base64.b64decode("".join(item.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(
            f"not valid base64 ({error}); send the file's bytes base64-encoded (base64 -w0 FILE)"
        ) from error


def decode_image(data: bytes, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Decode a PNG or JPEG file's bytes into uint8 [H, W, channels], resized to size (h, w).

    The same steps, in the same order, as imgclf.data.user_files.decode_image (which this file
    may not import), so a served image gets the very pixels predict and the folder source give;
    tests/unit/serving/test_pyfunc_model.py holds the two byte for byte.
    """
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise Image.DecompressionBombError(f"{image.width}x{image.height} > {limit}")
            if size is not None:
                # Lets the JPEG decoder shrink big photos by 1/2..1/8 while decoding.
                image.draft("RGB", (size[1], size[0]))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _convert_to_rgb(image)
    except Image.DecompressionBombError as error:
        raise ValueError(f"too large to decode safely ({error} pixels)") from error
    except UnidentifiedImageError as error:  # its message names only a BytesIO object
        raise ValueError("not a PNG or JPEG image") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ValueError(f"not a readable PNG or JPEG image ({error})") from error
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    if channels == 1:
        return np.asarray(rgb.convert("L"), dtype=np.uint8)[..., np.newaxis]
    return np.asarray(rgb, dtype=np.uint8)


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PNG or JPEG mode, as imgclf.data.user_files converts."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        # PIL's own conversion clips 16-bit values at 255 instead of rescaling them.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray(((values + 128) // 257).astype(np.uint8)).convert("RGB")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def check_pixels(batch: np.ndarray, input_shape: tuple) -> np.ndarray:
    """Raw pixels as uint8, refused unless every value is a whole number in 0-255."""
    if batch.dtype.kind == "O":  # JSON numbers arrive as Python objects
        try:
            batch = np.asarray(batch.tolist())
        except ValueError as error:
            raise _invalid(f"the pixel arrays cannot form one batch ({error})") from error
    if batch.dtype.kind not in "iuf":
        raise _invalid(f"pixel arrays must hold numbers, not {batch.dtype}; {EXPECTED_INPUT}")
    _check_shape(batch.shape, input_shape)
    if batch.dtype != np.uint8:
        _check_values(batch)
    return batch.astype(np.uint8, copy=False)


def _check_shape(shape: tuple, input_shape: tuple) -> None:
    """Raise unless shape is [N, H, W, C] with the model's H, W, C (None: any size)."""
    fits = len(shape) == 4 and all(
        not wanted or wanted == size for wanted, size in zip(input_shape, shape[1:], strict=True)
    )
    if not fits:
        expected = ", ".join(str(size) if size else "any" for size in input_shape)
        raise _invalid(
            f"pixel arrays must have shape [N, {expected}] (a batch, even of one image), not "
            f"{list(shape)}; {EXPECTED_INPUT}"
        )


def _check_values(batch: np.ndarray) -> None:
    """Raise naming the first image whose values are not whole numbers in 0-255."""
    values = batch.reshape(len(batch), -1).astype(np.float64)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values) & (values >= 0) & (values <= 255) & (values == np.rint(values))
    bad = np.flatnonzero(~good.all(axis=1))
    if bad.size == 0:
        return
    first = values[bad[0]]
    finite = first[np.isfinite(first)]
    span = f"{finite.min():g} to {finite.max():g}" if finite.size else "no finite value"
    # The commonest mistake: pixels scaled to [0, 1], which a uint8 cast would turn black.
    scaled = finite.size > 0 and finite.max() <= 1
    hint = " (scaled to [0, 1]? multiply by 255 and round)" if scaled else ""
    raise _invalid(
        f"pixel values must be whole numbers in 0-255 (raw 8-bit images, as the model was "
        f"trained on), but {bad.size} of {len(batch)} images are not: image {bad[0]} holds "
        f"{span}{hint}; {EXPECTED_INPUT}"
    )


def _invalid(message: str) -> MlflowException:
    """The error `mlflow models serve` answers with 400 (INVALID_PARAMETER_VALUE)."""
    return MlflowException.invalid_parameter_value(f"imgclf model: {message}")


mlflow.models.set_model(ImageClassifier())
