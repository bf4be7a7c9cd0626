"""training/fit.py: history.csv is rewritten after every epoch, keeping a resume's earlier rows."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np

from imgclf.training.checkpoint import ResumePoint
from imgclf.training.fit import fit_model
from imgclf.training.inputs import ArrayBatches

FEATURES = np.random.default_rng(0).normal(size=(12, 4)).astype("float32")
LABELS = np.arange(12) % 3


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


class RowsSeen(keras.callbacks.Callback):
    """Reads history.csv as a reader during the run would, after each epoch."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seen.append(read_rows(self.path))


def fit(
    path: Path, epochs: int, resume: ResumePoint | None = None, columns=None, later=()
) -> tuple[list, list]:
    spy = RowsSeen(path)
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
        history_path=path,
        epoch_columns=columns,
    )
    return spy.seen, result.history


def test_history_csv_has_one_row_after_the_first_of_two_epochs(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "history.csv"
    seen, history = fit(path, epochs=2)
    assert [len(rows) for rows in seen] == [1, 2]
    assert [row["epoch"] for row in seen[0]] == ["1"]
    # The same columns as the rows fit returns (what the stage wrote before, once, at the end).
    assert list(seen[-1][0]) == list(history[0])
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"} <= set(history[0])
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.csv"]  # no temp file left


def test_a_resumed_fit_keeps_the_earlier_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    earlier = {"epoch": 1, "loss": 9.0, "learning_rate": 0.1}
    seen, _ = fit(path, epochs=2, resume=ResumePoint(1, [earlier], "run-1"))
    assert len(seen) == 1  # only epoch 2 ran
    rows = seen[0]
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0]["loss"] == "9.0"


def test_epoch_columns_reach_history_csv_and_the_later_callbacks(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    logged = []  # what a later callback, such as the MLflow logger, is handed
    later = keras.callbacks.LambdaCallback(on_epoch_end=lambda _, logs: logged.append(logs["side"]))
    seen, history = fit(path, 3, columns=lambda epoch: {"side": 24 + 8 * epoch}, later=[later])
    assert [row["side"] for row in history] == logged == [24, 32, 40]
    assert [row["side"] for row in seen[-1]] == ["24.0", "32.0", "40.0"]
    # Without columns, no such column.
    _, plain = fit(tmp_path / "plain.csv", epochs=1)
    assert "side" not in plain[0]
