"""The train stage driven in-process, as DVC would run it, on tiny synthetic data.

A workspace laid out as DVC leaves it for train, a real SQLite MLflow store inside it, and
`isolated_stage`, which undoes what a stage run changes in this process (environment, MLflow's
URI, the SIGTERM handler, TensorFlow's op determinism). Shared by the reliability, levers and
distribution tests; the `isolate` fixture in tests/conftest.py wraps isolated_stage.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from imgclf.checksums import hash_files
from imgclf.data.arrays import save_split, write_classes
from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic
from imgclf.params import flatten_params, load_params
from imgclf.stages import train
from imgclf.tracking.store import HTTP_DEFAULTS
from imgclf.training import session
from imgclf.training.plan import backup_key

SIDE = 16
REPO_ROOT = Path(__file__).resolve().parents[2]
# Small enough for about a second an epoch on two cores, big enough to learn a little.
# The fast recipe's levers are off: plain Adam, no penalty, smoothing, averaging or test views.
PARAMS = {
    "model": {"arch": "resnet_small", "width": 4},
    "train": {"epochs": 2, "batch_size": 32, "seed": 0},
    "optimizer": {
        "name": "adam",
        "lr": 0.003,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "nesterov": False,
        "batchnorm_lr_multiplier": 1.0,
        "lookahead_every": 0,
    },
    "reg": {"l2": 0.0},
    "loss": {"label_smoothing": 0.0},
    "augment": {"online_crop_flip": True, "online_crop_pixels": 2},
    "mlflow": {"experiment_name": "reliability", "log_model": False},
    "evaluate": {"tta": "none"},
}
SECRETS = {
    "MLFLOW_TRACKING_PASSWORD": "pw-5b1f0c9e-never-logged",
    "MLFLOW_TRACKING_TOKEN": "tok-77c2d0aa-never-logged",
    "GITHUB_TOKEN": "ghp_0b8d3f61never0logged",
    "AWS_SECRET_ACCESS_KEY": "aws-3e9a61c4-never-logged",
}


def make_workspace(folder: Path, **sections: dict) -> Path:
    """Prepared splits, classes, validation result, source info and params.yaml, as DVC has them."""
    train_images, train_labels = draw_synthetic(200, seed=1, image_size=SIDE)
    val_images, val_labels = draw_synthetic(60, seed=2, image_size=SIDE)
    save_split(folder / "data/augmented/train.npz", train_images, train_labels)
    save_split(folder / "data/prepared/val.npz", val_images, val_labels)
    write_classes(folder / "data/prepared/classes.json", list(SYNTHETIC_CLASSES), (SIDE, SIDE, 3))
    (folder / "reports/validation").mkdir(parents=True)
    (folder / "reports/validation/result.json").write_text('{"success": true}\n')
    (folder / "data/raw").mkdir(parents=True)
    (folder / "data/raw/source.json").write_text('{"source": "synthetic"}\n')
    params = {section: dict(values) for section, values in PARAMS.items()}
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return folder


ARGV = [
    "--train", "data/augmented/train.npz", "--val", "data/prepared/val.npz",
    "--classes", "data/prepared/classes.json", "--validation", "reports/validation/result.json",
    "--model", "models/model.keras", "--metrics", "reports/metrics/train.json",
    "--live", "dvclive", "--run-info", "reports/mlflow_run.json",
    "--source-info", "data/raw/source.json",
]  # fmt: skip


def isolated_stage(patch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Run the body with the stage's process-wide changes undone after, on `patch`."""
    from mlflow.tracking._tracking_service import utils
    from tensorflow.python.framework import config

    for variable in (
        "MLFLOW_TRACKING_URI",
        "KERAS_BACKEND",
        "IMGCLF_MLFLOW_RETRY_SECONDS",
        *HTTP_DEFAULTS,
    ):
        patch.setenv(variable, "restored-after-the-test")
        patch.delenv(variable)
    patch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    for variable in [name for name in os.environ if name.startswith("DVC_")]:
        patch.delenv(variable)
    patch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield patch
    finally:
        signal.signal(signal.SIGTERM, handler)
        # train turns op determinism on for the whole process; other tests expect it off.
        config.disable_op_determinism()
        if mlflow.active_run() is not None:
            mlflow.end_run()


def run_train(workspace: Path, patch: pytest.MonkeyPatch) -> int:
    patch.chdir(workspace)
    return train.main(ARGV)


def store(workspace: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")


def only_run(workspace: Path):
    client = store(workspace)
    experiment = client.get_experiment_by_name("reliability")
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def history_rows(workspace: Path) -> list[dict[str, str]]:
    """Each epoch's row from DVCLive's files (one TSV per metric), joined on the step, which is
    the epoch; a step written twice into one file fails the test."""
    rows: dict[int, dict[str, str]] = {}
    for path in sorted((workspace / "dvclive/plots/metrics").glob("*.tsv")):
        with open(path, encoding="utf-8", newline="") as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        steps = [int(record["step"]) for record in records]
        assert len(set(steps)) == len(steps), f"{path.name} repeats a step: {steps}"
        for step, record in zip(steps, records, strict=True):
            rows.setdefault(step, {"epoch": str(step)})[path.stem] = record[path.stem]
    return [rows[step] for step in sorted(rows)]


def backup_root(workspace: Path) -> Path:
    return workspace / session.BACKUP_FOLDER


def state_folder(workspace: Path) -> Path:
    params = load_params(workspace / "params.yaml")
    data = [workspace / "data/augmented/train.npz", workspace / "data/prepared/val.npz"]
    return backup_root(workspace) / backup_key(flatten_params(params), hash_files(data))


def when(condition: Callable[[], bool], then: Callable[[], None], timeout: float = 120) -> None:
    """On a background thread: wait for condition, then act (the stage holds the main thread)."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                then()
                return
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
