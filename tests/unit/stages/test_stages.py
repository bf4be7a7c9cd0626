"""Stage main(argv) functions driven in-process on tiny data, from params.yaml to outputs."""

from __future__ import annotations

import importlib
import json
import shlex
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imgclf.data.arrays import load_split, read_classes, save_split
from imgclf.data.manifest import read_manifest
from imgclf.stages import augment, download, preprocess, validate
from support.cifar import CLASS_NAMES, make_tiny_cifar, write_cifar10_archive
from support.http import closed_port_url, serve_directory

ARCHIVE = "cifar-10-python.tar.gz"
REPO_ROOT = Path(__file__).resolve().parents[3]


def write_params(folder: Path, **sections: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(sections), encoding="utf-8")


@pytest.fixture
def cifar_archive(tmp_path: Path) -> tuple[Path, str, tuple]:
    """A served folder holding a tiny official-layout archive; (folder, md5, arrays)."""
    served = tmp_path / "served"
    train_split, test_split = make_tiny_cifar(seed=0, n_train=30, n_test=10)
    md5 = write_cifar10_archive(served / ARCHIVE, train_split, test_split)
    return served, md5, (train_split, test_split)


def test_download_cifar10_over_http(project: Path, cifar_archive, capsys) -> None:
    served, md5, ((train_x, train_y), (test_x, test_y)) = cifar_archive
    with serve_directory(served) as base_url:
        write_params(project, data={"source": "cifar10", "url": base_url + ARCHIVE, "md5": md5})
        assert download.main(["--out", "data/raw"]) == 0
    raw = project / "data" / "raw"
    images, labels = load_split(raw / "train.npz")
    np.testing.assert_array_equal(images, train_x)
    np.testing.assert_array_equal(labels, train_y)
    images, labels = load_split(raw / "test.npz")
    np.testing.assert_array_equal(images, test_x)
    np.testing.assert_array_equal(labels, test_y)
    assert read_classes(raw / "classes.json") == (list(CLASS_NAMES), (32, 32, 3))
    source = json.loads((raw / "source.json").read_text(encoding="utf-8"))
    assert {key: source.get(key) for key in ("source", "url", "md5")} == {
        "source": "cifar10",
        "url": base_url + ARCHIVE,
        "md5": md5,
    }


def test_download_with_a_wrong_md5_leaves_nothing(project: Path, cifar_archive, capsys) -> None:
    served, md5, _ = cifar_archive
    wrong = "0123456789abcdef0123456789abcdef"
    with serve_directory(served) as base_url:
        write_params(project, data={"source": "cifar10", "url": base_url + ARCHIVE, "md5": wrong})
        assert download.main(["--out", "data/raw"]) == 2
    stderr = capsys.readouterr().err
    assert md5 in stderr and wrong in stderr
    raw = project / "data" / "raw"
    assert not raw.exists() or not any(raw.iterdir())
    cache = project.parent / "cache" / "imgclf"
    assert not cache.exists() or not any(cache.iterdir())


def test_download_from_an_unreachable_host_fails_fast(project: Path, capsys) -> None:
    url = closed_port_url(ARCHIVE)
    write_params(project, data={"source": "cifar10", "url": url})
    started = time.monotonic()
    assert download.main(["--out", "data/raw"]) == 2
    assert time.monotonic() - started < 10
    stderr = capsys.readouterr().err
    assert url in stderr and "data.url" in stderr and "data.source" in stderr
    assert not (project / "data" / "raw").exists()


def stage_commands() -> dict[str, list[str]]:
    """Each DVC stage's module and arguments, read from dvc.yaml (the paths are not in cwd)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    commands = {}
    for stage in stages.values():
        python, dash_m, module, *argv = shlex.split(stage["cmd"])
        assert (python, dash_m) == ("python", "-m")
        commands[module] = argv
    return commands


STAGE_COMMANDS = stage_commands()


def test_every_stage_module_is_in_dvc_yaml() -> None:
    names = {module.rsplit(".", 1)[1] for module in STAGE_COMMANDS}
    assert {"download", "preprocess", "validate", "augment", "train", "evaluate"} <= names


@pytest.mark.parametrize("module", sorted(STAGE_COMMANDS))
def test_bad_params_stop_every_stage_first(project: Path, module: str, capsys) -> None:
    write_params(project, reg={"l3": 1})
    argv = STAGE_COMMANDS[module]
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert importlib.import_module(module).main(argv) == 2
    finally:
        signal.signal(signal.SIGTERM, handler)  # train installs its own SIGTERM handler
    stderr = capsys.readouterr().err
    assert "reg.l3" in stderr
    # The params error comes first: no input was looked for and nothing was written.
    paths = [value for value in argv if "/" in value]
    assert paths and not any(path in stderr for path in paths)
    assert list(project.iterdir()) == [project / "params.yaml"]


def write_png_folder(root: Path, counts: dict[str, int]) -> list[bytes]:
    """Write random 8x8 PNGs as train/<class>/*.png; return the raw pixels of each image."""
    rng = np.random.default_rng(0)
    pixels = []
    for name, count in counts.items():
        (root / "train" / name).mkdir(parents=True)
        for index in range(count):
            image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / "train" / name / f"{index:02d}.png")
            pixels.append(image.tobytes())
    return pixels


def test_folder_source_through_preprocess(project: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "images"
    pixels = write_png_folder(source, {"bee": 10, "ant": 10, "cow": 10})
    write_params(
        project,
        data={"source": "folder", "path": str(source)},
        preprocess={"test_fraction": 0.2, "val_fraction": 0.25, "seed": 3},
    )
    assert download.main(["--out", "data/raw"]) == 0
    assert not (project / "data" / "raw" / "test.npz").exists()
    assert preprocess.main(["--raw", "data/raw", "--out", "data/prepared"]) == 0
    prepared = project / "data" / "prepared"
    assert read_classes(prepared / "classes.json") == (["ant", "bee", "cow"], (8, 8, 3))
    splits = {name: load_split(prepared / f"{name}.npz") for name in ("train", "val", "test")}
    # Per class of 10: test round(0.2 * 10) = 2, then val round(0.25 * 8) = 2, train 6.
    expected_counts = {"train": [6, 6, 6], "val": [2, 2, 2], "test": [2, 2, 2]}
    for name, (_, labels) in splits.items():
        np.testing.assert_array_equal(np.bincount(labels, minlength=3), expected_counts[name])
    # The splits partition the images: every one appears in exactly one split.
    seen = sorted(image.tobytes() for images, _ in splits.values() for image in images)
    assert seen == sorted(pixels)
    manifest = read_manifest(prepared / "manifest.parquet")
    assert len(manifest) == 30
    assert manifest.groupby("split").size().to_dict() == {"test": 6, "train": 18, "val": 6}
    assert set(manifest.loc[manifest["split"] == "test", "class_name"]) == {"ant", "bee", "cow"}


VALIDATE_ARGV = [
    "--manifest",
    "data/prepared/manifest.parquet",
    "--classes",
    "data/prepared/classes.json",
    "--result",
    "reports/validation/result.json",
    "--docs",
    "reports/validation/data_docs",
]


def augment_argv(out: str) -> list[str]:
    return [
        "--train",
        "data/prepared/train.npz",
        "--validation",
        "reports/validation/result.json",
        "--out",
        out,
        "--preview",
        "reports/figures/augment_preview.png",
    ]


def test_synthetic_chain_and_a_planted_leak(project: Path, capsys) -> None:
    write_params(
        project,
        data={"source": "synthetic", "synthetic_train_size": 100, "synthetic_test_size": 30},
        augment={"copies": 1},
    )
    assert download.main(["--out", "data/raw"]) == 0
    assert preprocess.main(["--raw", "data/raw", "--out", "data/prepared"]) == 0
    assert validate.main(VALIDATE_ARGV) == 0
    result_path = project / "reports" / "validation" / "result.json"
    result = json.loads(result_path.read_text(encoding="utf-8"))
    assert result["success"] is True and result["failed_expectations"] == 0
    assert (project / "reports" / "validation" / "data_docs" / "index.html").is_file()

    assert augment.main(augment_argv("data/augmented/train.npz")) == 0
    train_images, train_labels = load_split(project / "data" / "prepared" / "train.npz")
    augmented, augmented_labels = load_split(project / "data" / "augmented" / "train.npz")
    assert len(train_images) == 90  # 10 per class, one of each held out for val
    assert augmented.shape == (180, 32, 32, 3)
    np.testing.assert_array_equal(augmented[:90], train_images)
    np.testing.assert_array_equal(augmented_labels, np.tile(train_labels, 2))
    # Preview: 8 originals (one per class) x (1 + 6 variants), 2-pixel gaps, scaled 8x.
    with Image.open(project / "reports" / "figures" / "augment_preview.png") as preview:
        assert preview.size == ((7 * 34 + 2) * 8, (8 * 34 + 2) * 8)

    # Leak one training image into the source's test split and rebuild the prepared data.
    raw = project / "data" / "raw"
    raw_train, _ = load_split(raw / "train.npz")
    test_images, test_labels = load_split(raw / "test.npz")
    test_images[0] = raw_train[0]
    save_split(raw / "test.npz", test_images, test_labels)
    assert preprocess.main(["--raw", "data/raw", "--out", "data/prepared"]) == 0
    capsys.readouterr()
    assert validate.main(VALIDATE_ARGV) == 1
    assert "data checks failed" in capsys.readouterr().err
    result = json.loads(result_path.read_text(encoding="utf-8"))
    assert result["success"] is False
    failed = {outcome["name"] for outcome in result["outcomes"] if not outcome["success"]}
    assert failed == {"train/val/test share no image"}

    assert augment.main(augment_argv("data/augmented/again.npz")) == 2
    assert "reports/validation/result.json" in capsys.readouterr().err
    assert not (project / "data" / "augmented" / "again.npz").exists()


def test_evaluate_names_a_run_the_store_lacks_before_scoring(
    project: Path, with_mlflow_store, isolate: pytest.MonkeyPatch, capsys
) -> None:
    """The model card reads the training run: a run id the store lacks stops evaluate first."""
    from imgclf.stages import evaluate

    write_params(project)
    with_mlflow_store(project)
    missing = "0" * 32
    (project / "reports").mkdir()
    (project / "reports/mlflow_run.json").write_text(json.dumps({"run_id": missing}))
    assert evaluate.main(STAGE_COMMANDS["imgclf.stages.evaluate"]) == 2
    stderr = capsys.readouterr().err
    assert f"reports/mlflow_run.json names run {missing}" in stderr
    assert "dvc repro -f train" in stderr
    # Neither the model nor the test split (both absent) was looked for; nothing was written.
    assert "model.keras" not in stderr and not (project / "reports/metrics").exists()
