"""Tests for imgclf.serving.prediction and the predict stage: inputs, decoding,
output, exit codes."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from imgclf.cli import main as cli_main
from imgclf.data.arrays import save_split, write_classes
from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic
from imgclf.data.user_files import decode_image
from imgclf.evaluation.metrics import classification_metrics
from imgclf.model.architectures import ModelSpec, build_model
from imgclf.stages import predict

SIDE = 32


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model file and classes.json where the pipeline leaves them (an untrained model:
    what matters is that every consumer computes the same function of the pixels)."""
    root = tmp_path_factory.mktemp("project")
    keras.utils.set_random_seed(0)
    spec = ModelSpec((SIDE, SIDE, 3), len(SYNTHETIC_CLASSES), [120.0] * 3, [60.0] * 3, width=8)
    model = build_model("seed_cnn", spec)
    (root / "models").mkdir()
    model.save(root / "models/model.keras")
    write_classes(root / "data/prepared/classes.json", list(SYNTHETIC_CLASSES), (SIDE, SIDE, 3))
    images, labels = draw_synthetic(30, seed=7, image_size=SIDE)
    save_split(root / "data/prepared/test.npz", images, labels)
    return root


def export_pngs(images: np.ndarray, folder: Path) -> list[Path]:
    """Lossless files of the arrays, so decoding gives back the very pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(images):
        path = folder / f"{index:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def model_args(project: Path) -> list[str]:
    return [
        "--model", str(project / "models/model.keras"),
        "--classes", str(project / "data/prepared/classes.json"),
    ]  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_folders_archives_and_a_corrupt_file(project: Path, tmp_path: Path, capsys) -> None:
    images, _ = draw_synthetic(12, seed=3, image_size=SIDE)
    single = export_pngs(images[:1], tmp_path / "single")[0]
    folder = tmp_path / "folder"
    export_pngs(images[1:4], folder / "nested" / "deeper")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / ".DS_Store").write_bytes(b"\x00Bud1")  # hidden: no data
    zipped = export_pngs(images[4:8], tmp_path / "to_zip")
    archive_zip = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive_zip, "w") as bundle:
        bundle.writestr("__MACOSX/._0000.png", b"resource fork")
        for path in zipped:
            bundle.write(path, f"batch/{path.name}")
    archive_tar = tmp_path / "batch.tar.gz"
    with tarfile.open(archive_tar, "w:gz") as tar:
        tar.add(export_pngs(images[8:], tmp_path / "to_tar")[0].parent, arcname="more")
    out = tmp_path / "predictions.csv"

    code = cli_main(
        ["predict", str(single), str(folder), str(archive_zip), str(archive_tar),
         *model_args(project), "--out", str(out), "--top-k", "2", "--batch-size", "5"]
    )  # fmt: skip

    assert code == predict.EXIT_UNREADABLE
    rows = read_csv(out)
    assert len(rows) == 1 + 4 + 4 + 4  # every image, and the corrupt file named
    broken = [row for row in rows if row["error"]]
    assert [row["path"] for row in broken] == [str(folder / "broken.png")]
    assert "not a readable JPEG or PNG" in broken[0]["error"] and broken[0]["class"] == ""
    good = [row for row in rows if not row["error"]]
    assert {row["class"] for row in good} <= set(SYNTHETIC_CLASSES)
    for row in good:
        assert row["top1_class"] == row["class"]
        assert float(row["confidence"]) >= float(row["top2_probability"]) > 0
    names = [row["path"] for row in rows]
    assert str(archive_zip / "batch" / "0000.png") in names
    assert str(archive_tar / "more" / "0002.png") in names
    assert not any("__MACOSX" in name or ".DS_Store" in name for name in names)
    summary = capsys.readouterr().err
    assert "12 images classified" in summary and "1 unreadable" in summary
    assert "broken.png" in summary


def test_predictions_equal_evaluates_argmax(project: Path, tmp_path: Path) -> None:
    images, labels = np.load(project / "data/prepared/test.npz").values()
    paths = export_pngs(images, tmp_path / "test")
    out = tmp_path / "predictions.json"
    assert predict.main([str(tmp_path / "test"), *model_args(project), "--out", str(out)]) == 0

    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [row["path"] for row in rows] == [str(path) for path in paths]
    # What evaluate does: model.predict over the test array, argmax per image.
    model = keras.saving.load_model(project / "models/model.keras", compile=False)
    probabilities = model.predict(images, batch_size=64, verbose=0)
    expected = [SYNTHETIC_CLASSES[index] for index in probabilities.argmax(axis=1)]
    assert [row["class"] for row in rows] == expected
    np.testing.assert_allclose(
        [row["confidence"] for row in rows], probabilities.max(axis=1), atol=1e-6
    )
    assert len(rows[0]["top_k"]) == 3 and rows[0]["top_k"][0]["class"] == rows[0]["class"]
    predicted = [row["class"] for row in rows]
    truth = [SYNTHETIC_CLASSES[label] for label in labels]
    accuracy = np.mean(np.asarray(predicted) == np.asarray(truth))
    metrics = classification_metrics(labels, probabilities, SYNTHETIC_CLASSES)
    assert accuracy == pytest.approx(metrics["accuracy"])


def test_csv_goes_to_stdout_without_out(project: Path, tmp_path: Path, capsys) -> None:
    images, _ = draw_synthetic(2, seed=4, image_size=SIDE)
    export_pngs(images, tmp_path / "two")
    assert predict.main([str(tmp_path / "two"), *model_args(project), "--top-k", "1"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    assert lines[0] == "path,class,confidence,top1_class,top1_probability,error"
    assert len(lines) == 3 and "2 images classified" in printed.err


def test_images_are_decoded_to_the_models_input(tmp_path: Path) -> None:
    """16-bit grey, RGBA and EXIF-rotated photos become the model's size and channels."""
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((20, 40), 65535, dtype=np.uint16)).save(grey16)
    assert decode_image(grey16, (8, 16)).shape == (8, 16, 3)
    assert decode_image(grey16, (8, 16)).min() == 255
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (10, 10), (10, 200, 30, 0)).save(rgba)
    np.testing.assert_array_equal(decode_image(rgba, (4, 4), channels=1)[..., 0], 124)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    Image.new("RGB", (30, 10), (0, 0, 255)).save(rotated, exif=exif)
    assert decode_image(rotated).shape == (30, 10, 3)


def test_unusable_model_or_classes_exit_2(project: Path, tmp_path: Path, capsys) -> None:
    images, _ = draw_synthetic(1, seed=4, image_size=SIDE)
    export_pngs(images, tmp_path / "one")
    missing = ["--model", str(tmp_path / "missing.keras")]
    assert predict.main([str(tmp_path / "one"), *missing]) == predict.EXIT_BAD_INPUT
    assert "missing.keras" in capsys.readouterr().err
    wrong = tmp_path / "classes.json"
    write_classes(wrong, ["a", "b"], (SIDE, SIDE, 3))
    arguments = ["--model", str(project / "models/model.keras"), "--classes", str(wrong)]
    assert predict.main([str(tmp_path / "one"), *arguments]) == predict.EXIT_BAD_INPUT
    assert "predicts 10 classes but 2 class names" in capsys.readouterr().err


def test_format_flag_or_suffix_chooses_csv_json_or_jsonl(
    project: Path, tmp_path: Path, capsys
) -> None:
    images, _ = draw_synthetic(3, seed=4, image_size=SIDE)
    names = [str(path) for path in export_pngs(images, tmp_path / "three")]
    arguments = [str(tmp_path / "three"), *model_args(project)]
    assert predict.main([*arguments, "--format", "jsonl", "--top-k", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["path"] for row in rows] == names
    assert all(len(row["top_k"]) == 4 for row in rows)
    probabilities = [entry["probability"] for entry in rows[0]["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert rows[0]["top_k"][0] == {"class": rows[0]["class"], "probability": rows[0]["confidence"]}

    readers = {
        "jsonl": lambda text: [json.loads(line) for line in text.splitlines()],
        "json": json.loads,
        "csv": lambda text: list(csv.DictReader(io.StringIO(text))),
    }
    for out, flag, expected in (
        ("a.jsonl", [], "jsonl"),
        ("b.JSON", [], "json"),
        ("c.txt", [], "csv"),
        ("d.csv", ["--format", "json"], "json"),
    ):
        assert predict.main([*arguments, "--out", str(tmp_path / out), *flag]) == 0
        written = readers[expected]((tmp_path / out).read_text(encoding="utf-8"))
        assert [row["path"] for row in written] == names, out


def test_top_k_above_the_classes_fails_before_the_model_loads(
    project: Path, tmp_path: Path, capsys
) -> None:
    images, _ = draw_synthetic(1, seed=4, image_size=SIDE)
    export_pngs(images, tmp_path / "one")
    unloadable = tmp_path / "model.keras"
    unloadable.write_bytes(b"not a model")  # loading it would fail with another error
    classes = ["--classes", str(project / "data/prepared/classes.json")]
    arguments = [str(tmp_path / "one"), "--model", str(unloadable), *classes, "--top-k", "11"]
    assert predict.main(arguments) == predict.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "--top-k 11 asks for more classes than" in error
    assert "has: 10 (disc, square" in error and "pass --top-k 10 or less" in error
    arguments = [str(tmp_path / "one"), *model_args(project), "--top-k", "10", "--format", "json"]
    assert predict.main(arguments) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["top_k"]) == 10


def test_default_top_k_lists_every_class_of_a_two_class_model(tmp_path: Path, capsys) -> None:
    keras.utils.set_random_seed(0)
    spec = ModelSpec((SIDE, SIDE, 3), 2, [120.0] * 3, [60.0] * 3, width=8)
    build_model("seed_cnn", spec).save(tmp_path / "two.keras")
    write_classes(tmp_path / "classes.json", ["cat", "dog"], (SIDE, SIDE, 3))
    images, _ = draw_synthetic(1, seed=4, image_size=SIDE)
    export_pngs(images, tmp_path / "one")
    model = ["--model", str(tmp_path / "two.keras"), "--classes", str(tmp_path / "classes.json")]
    assert predict.main([str(tmp_path / "one"), *model]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith("top2_class,top2_probability,error") and "top3" not in header
