"""training/fit.py: DVCLive gets a row after every epoch, keeping a resume's earlier rows.

Real DVCLive writes into a temporary folder; the tests run there, so DVCLive's signals for VS
Code land in no checkout.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.training.checkpoint import ResumePoint
from imgclf.training.fit import fit_model
from imgclf.training.inputs import ArrayBatches

FEATURES = np.random.default_rng(0).normal(size=(12, 4)).astype("float32")
LABELS = np.arange(12) % 3


@pytest.fixture(autouse=True)
def outside_any_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in ("DVC_ROOT", "DVC_EXP_BASELINE_REV", "DVC_EXP_NAME", "DVCLIVE_RESUME"):
        monkeypatch.delenv(variable, raising=False)


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


def read_steps(folder: Path, name: str) -> list[tuple[int, str]]:
    """(step, value) rows of DVCLive's file for one metric."""
    with open(folder / "plots" / "metrics" / f"{name}.tsv", encoding="utf-8", newline="") as handle:
        return [(int(row["step"]), row[name]) for row in csv.DictReader(handle, delimiter="\t")]


class FilesSeen(keras.callbacks.Callback):
    """Reads DVCLive's files as `dvc exp show` would during the run, after each epoch."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder, self.seen = folder, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        summary = json.loads((self.folder / "metrics.json").read_text(encoding="utf-8"))
        self.seen.append((summary, read_steps(self.folder, "loss")))


def fit(
    folder: Path, epochs: int, resume: ResumePoint | None = None, columns=None, later=()
) -> tuple[list, list]:
    spy = FilesSeen(folder)
    result = fit_model(
        tiny_model(),
        ArrayBatches(FEATURES, LABELS, 3, 4, shuffle_seed=0),
        ArrayBatches(FEATURES, LABELS, 3, 6, shuffle_seed=None),
        epochs=epochs,
        callbacks=[spy, *later],
        loss=keras.losses.CategoricalCrossentropy(),
        optimizer=keras.optimizers.SGD(learning_rate=0.1),
        verbose=0,
        resume=resume,
        live_folder=folder,
        epoch_columns=columns,
    )
    return spy.seen, result.history


def test_each_epoch_reaches_dvclive_with_the_rows_keys(tmp_path: Path) -> None:
    folder = tmp_path / "dvclive"
    seen, history = fit(folder, epochs=2)
    (first, first_losses), (last, last_losses) = seen
    # After epoch 1, before epoch 2 starts: what `dvc exp show` shows of a running experiment.
    assert first["step"] == 1 and first["loss"] == pytest.approx(history[0]["loss"])
    assert [step for step, _ in first_losses] == [1]
    assert last["step"] == 2 and [step for step, _ in last_losses] == [1, 2]
    # The keys of the rows fit returns, which are also the MLflow run's metric names.
    assert set(last) == (set(history[0]) - {"epoch"}) | {"step"}
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"} <= set(last)
    assert [float(value) for _, value in read_steps(folder, "val_accuracy")] == pytest.approx(
        [row["val_accuracy"] for row in history]
    )
    # dvc.yaml declares the folder: DVCLive writes no dvc.yaml of its own.
    assert not list(tmp_path.rglob("dvc.yaml"))


def test_a_resumed_fit_keeps_the_earlier_rows_once(tmp_path: Path) -> None:
    folder = tmp_path / "dvclive"
    # What a killed run left (DVC deletes it before a re-run; by hand it would still be here).
    fit(folder, epochs=3)
    earlier = {"epoch": 1, "loss": 9.0, "learning_rate": 0.1}
    seen, history = fit(folder, epochs=2, resume=ResumePoint(1, [earlier], "run-1"))
    assert len(seen) == 1  # only epoch 2 ran
    summary, losses = seen[0]
    assert [step for step, _ in losses] == [1, 2]
    assert float(losses[0][1]) == 9.0
    assert summary["step"] == 2 and summary["loss"] == pytest.approx(history[-1]["loss"])
    assert read_steps(folder, "learning_rate")[0] == (1, "0.1")


def test_epoch_columns_reach_dvclive_and_the_later_callbacks(tmp_path: Path) -> None:
    logged = []  # what a later callback, such as the MLflow logger, is handed
    later = keras.callbacks.LambdaCallback(on_epoch_end=lambda _, logs: logged.append(logs["side"]))
    folder = tmp_path / "dvclive"
    _, history = fit(folder, 3, columns=lambda epoch: {"side": 24 + 8 * epoch}, later=[later])
    assert [row["side"] for row in history] == logged == [24, 32, 40]
    assert read_steps(folder, "side") == [(1, "24.0"), (2, "32.0"), (3, "40.0")]
    # Without columns, no such metric.
    _, plain = fit(tmp_path / "plain", epochs=1)
    assert "side" not in plain[0] and not (tmp_path / "plain/plots/metrics/side.tsv").exists()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def test_in_a_dvc_repository_dvclive_saves_no_experiment_of_its_own(tmp_path: Path) -> None:
    """Outside `dvc exp run` DVCLive would save one by default; experiments are DVC's job."""
    _git("init", "-q")
    _git("config", "user.email", "test@example.invalid")
    _git("config", "user.name", "imgclf tests")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    _git("commit", "-qm", "empty project")
    fit(tmp_path / "dvclive", epochs=1)
    assert _git("for-each-ref", "refs/exps") == ""
    assert not (tmp_path / "dvc.yaml").exists()
    assert (tmp_path / "dvclive/metrics.json").is_file()
