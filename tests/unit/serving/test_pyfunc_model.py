"""Tests for imgclf.serving.pyfunc_model: encoded images decoded as the folder source decodes
them, and pixels checked, through the logged signature and the scoring server's parsing."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import invocations
from PIL import Image

from imgclf.data.folder import read_image_folder
from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic
from imgclf.data.user_files import decode_image
from imgclf.model.architectures import ModelSpec, build_model
from imgclf.serving import pyfunc_model
from imgclf.tracking.artifacts import pyfunc_arguments

SIDE = 32


@dataclass
class Served:
    """A pyfunc model saved as log_model saves it, loaded back, and its plain Keras file."""

    pyfunc: mlflow.pyfunc.PyFuncModel
    keras_model: keras.Model

    def expected_labels(self, images: np.ndarray) -> list[str]:
        probabilities = self.keras_model.predict(images, verbose=0)
        return [SYNTHETIC_CLASSES[index] for index in probabilities.argmax(axis=1)]

    def serve(self, request: dict) -> list[dict]:
        """What `mlflow models serve` answers to a JSON body (its own parsing, no HTTP)."""
        schema = self.pyfunc.metadata.get_input_schema()
        answer = invocations(json.dumps(request), "application/json", self.pyfunc, schema)
        assert answer.status == 200, answer.response
        return json.loads(answer.response)["predictions"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """An untrained model: what matters is that every way in gives it the same pixels."""
    root = tmp_path_factory.mktemp("pyfunc")
    keras.utils.set_random_seed(0)
    spec = ModelSpec((SIDE, SIDE, 3), len(SYNTHETIC_CLASSES), [120.0] * 3, [60.0] * 3, width=8)
    model = build_model("seed_cnn", spec)
    model.save(root / "model.keras")
    examples, _ = draw_synthetic(4, seed=0, image_size=SIDE)
    arguments = pyfunc_arguments(model, root / "model.keras", examples, SYNTHETIC_CLASSES)
    mlflow.pyfunc.save_model(str(root / "pyfunc"), **arguments)
    return Served(mlflow.pyfunc.load_model(str(root / "pyfunc")), model)


def photo(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A bigger, smooth picture of a small array, as a camera would take it."""
    return Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC)


def write_test_images(folder: Path) -> list[Path]:
    """JPEG and PNG files in the modes and sizes users have, in name order."""
    folder.mkdir(parents=True)
    images, _ = draw_synthetic(8, seed=5, image_size=SIDE)
    rotated = Image.Exif()
    rotated[0x0112] = 6  # displayed turned by 90 degrees
    grey16 = (np.linspace(0, 65535, 30 * 50).reshape(30, 50)).astype(np.uint16)
    palette = photo(images[5], (45, 45)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    photo(images[0], (320, 240)).save(folder / "a_photo.jpg", quality=90)  # decoded in draft
    photo(images[1], (24, 20)).save(folder / "b_small.png")  # enlarged
    Image.fromarray(images[2]).save(folder / "c_exact.jpg")  # already the model's size
    photo(images[3], (60, 40)).save(folder / "d_rotated.jpg", exif=rotated)
    Image.fromarray(grey16).save(folder / "e_grey16.png")
    palette.save(folder / "f_palette.png")
    photo(images[6], (50, 70)).convert("RGBA").save(folder / "g_rgba.png")
    photo(images[7], (90, 90)).convert("L").save(folder / "h_grey.jpg")
    return sorted(folder.iterdir())


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(path: Path) -> str:
    return encode_bytes(path.read_bytes())


def test_encoded_images_decode_to_the_folder_sources_pixels(tmp_path: Path) -> None:
    paths = write_test_images(tmp_path / "data" / "train" / "any")
    splits, _ = read_image_folder(tmp_path / "data", image_size=SIDE, progress=False)
    folder_images = splits["train"][0]
    assert len(folder_images) == len(paths)
    for path, expected in zip(paths, folder_images, strict=True):
        decoded = pyfunc_model.decode_image(path.read_bytes(), (SIDE, SIDE), 3)
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, expected, err_msg=path.name)
    # imgclf predict's other cases: a model with a non-square or one-channel input.
    for path in paths:
        for size, channels in (((24, 40), 3), ((SIDE, SIDE), 1)):
            decoded = pyfunc_model.decode_image(path.read_bytes(), size, channels)
            np.testing.assert_array_equal(decoded, decode_image(path, size, channels))


def test_jpeg_and_png_files_get_the_labels_of_their_pixels(served: Served, tmp_path: Path) -> None:
    paths = write_test_images(tmp_path / "files")
    pixels = np.stack([decode_image(path, (SIDE, SIDE)) for path in paths])
    expected = served.expected_labels(pixels)
    strings = [encode(path) for path in paths]
    assert list(served.pyfunc.predict(np.asarray(strings))["label"]) == expected
    raw_bytes = pd.DataFrame({"image": [path.read_bytes() for path in paths]})
    assert list(served.pyfunc.predict(raw_bytes)["label"]) == expected
    # Every JSON shape of the scoring server reaches the model as the same strings.
    requests = [
        {"inputs": {"image": strings}},
        {"inputs": strings},
        {"instances": [{"image": text} for text in strings]},
        {"dataframe_split": {"columns": ["image"], "data": [[text] for text in strings]}},
    ]
    for request in requests:
        assert [row["label"] for row in served.serve(request)] == expected, request


def test_uint8_pixels_answer_as_before(served: Served) -> None:
    images, _ = draw_synthetic(6, seed=2, image_size=SIDE)
    expected = served.expected_labels(images)
    answer = served.pyfunc.predict(images)
    assert list(answer["label"]) == expected
    assert answer["confidence"][0] == pytest.approx(max(answer["probabilities"][0].values()))
    assert list(served.pyfunc.predict(images.astype(np.float32))["label"]) == expected
    assert [row["label"] for row in served.serve({"inputs": images.tolist()})] == expected


def refused(served: Served, model_input) -> str:
    """The message of the 400 that pyfunc.predict raises for model_input."""
    with pytest.raises(MlflowException) as raised:
        served.pyfunc.predict(model_input)
    assert raised.value.get_http_status_code() == 400
    return raised.value.message


def refused_when_served(served: Served, request: dict) -> str:
    """The message of the 400 that `mlflow models serve` answers to a JSON body."""
    schema = served.pyfunc.metadata.get_input_schema()
    with pytest.raises(MlflowException) as raised:
        invocations(json.dumps(request), "application/json", served.pyfunc, schema)
    assert raised.value.get_http_status_code() == 400
    return raised.value.message


def test_pixels_scaled_to_one_are_refused_not_cast(served: Served) -> None:
    images, _ = draw_synthetic(3, seed=2, image_size=SIDE)
    scaled = images / 255.0
    message = refused(served, scaled)
    assert message in refused_when_served(served, {"inputs": scaled.tolist()})
    assert "whole numbers in 0-255" in message and "3 of 3 images" in message
    span = f"image 0 holds {scaled[0].min():g} to {scaled[0].max():g}"
    assert span in message and "multiply by 255 and round" in message
    assert '{"inputs": {"image":' in message  # the other way in
    mixed = images.astype(np.int64)
    mixed[1, 0, 0, 0] = 300
    message = refused(served, mixed)
    assert "1 of 3 images" in message and "image 1 holds" in message and "300" in message


def test_a_bad_image_in_a_batch_is_named_by_its_index(served: Served, tmp_path: Path) -> None:
    jpeg = write_test_images(tmp_path / "files")[0].read_bytes()
    good, truncated = encode_bytes(jpeg), encode_bytes(jpeg[: len(jpeg) // 3])
    batch = [good, "not base64 at all!", encode_bytes(b"plain text"), good, truncated]
    message = refused(served, pd.DataFrame({"image": batch}))
    assert message in refused_when_served(served, {"inputs": {"image": batch}})
    assert "3 of 5 images cannot be used" in message
    assert "image 1: not valid base64" in message and "base64 -w0" in message
    assert "image 2: not a PNG or JPEG image" in message
    assert "image 4: not a readable PNG or JPEG image (image file is truncated" in message
    assert "image 0" not in message and "image 3" not in message


def test_wrong_shapes_and_types_say_what_the_model_expects(served: Served) -> None:
    images, _ = draw_synthetic(2, seed=2, image_size=16)
    message = refused(served, images)
    assert message in refused_when_served(served, {"inputs": images.tolist()})
    assert "shape [N, 32, 32, 3]" in message and "[2, 16, 16, 3]" in message
    one_image = images[0].repeat(2, axis=0).repeat(2, axis=1)  # 32x32, but no batch
    assert "shape [N, 32, 32, 3]" in refused(served, one_image)
    assert "holds no image" in refused_when_served(served, {"inputs": {"image": []}})
    with pytest.raises(MlflowException, match="no 'image' field"):
        pyfunc_model.prepare_batch({"pixels": images}, (SIDE, SIDE, 3))


def test_the_logged_signature_passes_raw_values_and_the_example_is_files(served: Served) -> None:
    spec = served.pyfunc.metadata.get_input_schema().inputs[0]
    assert (spec.name, spec.type, spec.shape) == ("image", np.dtype(object), (-1,))
    outputs = served.pyfunc.metadata.get_output_schema().input_names()
    assert outputs == ["label", "confidence", "probabilities"]
    example = served.pyfunc.input_example["image"]
    examples, _ = draw_synthetic(4, seed=0, image_size=SIDE)
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(text)))) for text in example]
    np.testing.assert_array_equal(np.stack(decoded), examples)
