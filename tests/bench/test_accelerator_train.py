"""bench/accelerator_train.py, the GPU machine's one prepared script, on a tiny image folder.

It runs here under the TensorFlow backend (the GPU machine runs it under JAX; test_backends
trains the same model and levers under JAX): every seed reports its untimed compile apart,
its per-epoch lines and the saved model's test accuracy, and several seeds an aggregate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import accelerator_train  # noqa: E402


def _image_folder(root: Path, per_class: int = 24, side: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 100, (side, side, 3)) + 120 * label
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")
    return root


def _tiny_params(path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["model"].update({"widths": [8, 16]})
    params["train"].update({"batch_size": 8, "mixed_precision": "off"})
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path


@pytest.mark.integration
def test_two_seeds_report_compile_time_apart_and_their_spread(tmp_path, capsys) -> None:
    data = _image_folder(tmp_path / "images")
    params = _tiny_params(tmp_path / "params.yaml")
    accelerator_train.main(
        [str(data), "--params", str(params), "--seeds", "0", "1", "--epochs", "2"]
        + ["--warmup-steps", "2", "--test-fraction", "0.25", "-S", "evaluate.tta=flip"]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    epochs = [line for line in lines if "epoch" in line]
    summaries = [line for line in lines if line.get("summary")]
    (aggregate,) = [line for line in lines if line.get("aggregate")]
    assert [line["epoch"] for line in epochs] == [1, 2, 1, 2]
    assert [summary["seed"] for summary in summaries] == [0, 1] == aggregate["seeds"]
    for summary in summaries:
        assert summary["arch"] == "fast_cnn" and summary["widths"] == [8, 16]
        assert summary["compile_seconds"] > 0 and summary["train_seconds"] > 0
        assert (summary["train_images"], summary["test_images"]) == (36, 12)
        assert 0.0 <= summary["final_test_accuracy"] <= 1.0
        assert summary["tta"] == "flip"  # from -S
    accuracies = [summary["final_test_accuracy"] for summary in summaries]
    assert aggregate["test_accuracy"]["mean"] == round(float(np.mean(accuracies)), 4)


@pytest.mark.integration
def test_score_val_holds_the_pipelines_val_split_out_of_training(tmp_path, capsys) -> None:
    data = _image_folder(tmp_path / "images")
    params = _tiny_params(tmp_path / "params.yaml")
    accelerator_train.main(
        [str(data), "--params", str(params), "--epochs", "1", "--warmup-steps", "1"]
        + ["--test-fraction", "0.25", "--score", "val", "-S", "preprocess.val_fraction=0.3"]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (summary,) = [line for line in lines if line.get("summary")]
    assert summary["scored"] == "val" and "final_test_accuracy" not in summary
    assert (summary["train_images"], summary["val_images"]) == (26, 10)  # 5 of each class's 18 kept
    assert 0.0 <= summary["final_val_accuracy"] <= 1.0
    assert "val_accuracy_without_tta" in [line for line in lines if "epoch" in line][0]


def test_the_arrays_cache_is_kept_per_data_set(tmp_path) -> None:
    params = accelerator_train._params(
        accelerator_train._parse([str(tmp_path), "--params", str(_tiny_params(tmp_path / "p"))])
    )
    one = accelerator_train._load(_image_folder(tmp_path / "one", 8), 0.25, params, tmp_path)
    two = accelerator_train._load(_image_folder(tmp_path / "two", 12), 0.25, params, tmp_path)
    assert (len(one[0]), len(two[0])) == (12, 18)  # the second is not the first one's cache


def test_set_null_turns_a_lever_off_and_options_left_out_change_nothing(tmp_path) -> None:
    default = accelerator_train._params(
        accelerator_train._parse([str(tmp_path), "--params", str(_tiny_params(tmp_path / "p"))])
    )
    assert default.evaluate.corruption_images is not None  # a number in params.yaml
    params = accelerator_train._params(
        accelerator_train._parse(
            [
                str(tmp_path),
                "--params",
                str(tmp_path / "p"),
                "-S",
                "evaluate.corruption_images=null",
            ]
        )
    )
    assert params.evaluate.corruption_images is None
    assert params.train.epochs == default.train.epochs  # --epochs not given


@pytest.mark.integration
def test_the_gpu_machines_backend_jax_compiles_both_sizes_and_trains(tmp_path) -> None:
    """The GPU machine has no TensorFlow: the script's own steps (the untimed compile at each
    image size, putting the optimizer state back, the timed epochs) run here under JAX."""
    data = _image_folder(tmp_path / "images", per_class=16, side=32)
    params = _tiny_params(tmp_path / "params.yaml")
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "accelerator_train.py"), str(data)]
        + ["--params", str(params), "--epochs", "2", "--warmup-steps", "2"]
        + ["--test-fraction", "0.25", "-S", "augment.progressive_side=16"]
        + ["-S", "augment.progressive_share=0.5"],
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (summary,) = [line for line in lines if line.get("summary")]
    assert summary["backend"] == "jax" and summary["small_epochs"] == 1
    assert summary["compile_seconds"] > 0 and 0.0 <= summary["final_test_accuracy"] <= 1.0
    assert [line["epoch"] for line in lines if "epoch" in line] == [1, 2]
