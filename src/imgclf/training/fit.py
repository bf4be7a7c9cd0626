"""Compiling, fitting and saving: the per-epoch bookkeeping and what fit produced."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from imgclf.training.diagnostics import TrainingDiagnostics, data_loss_metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from imgclf.training.checkpoint import ResumePoint, TrainingBackup


class EpochRecorder(keras.callbacks.Callback):
    """Adds the learning rate and wall time of each epoch to the logs, and keeps them.

    `columns`, when given, maps the 0-based epoch to more values for its row (the image side
    of progressive resizing), so DVCLive's files and the MLflow run show them too.
    """

    def __init__(
        self,
        rows: list[dict[str, float]] | None = None,
        columns: Callable[[int], dict[str, float]] | None = None,
    ) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = list(rows or [])
        self.columns = columns
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        logs["epoch_seconds"] = time.perf_counter() - self._started
        if self.columns is not None:
            logs.update(self.columns(epoch))
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})


class LiveMetrics(keras.callbacks.Callback):
    """Hands every epoch's row to DVCLive: `dvc exp show` (also for a queued experiment while
    it runs), `dvc plots`, VS Code and Studio follow the run epoch by epoch.

    The step is the 1-based epoch, as in the MLflow run, and the metrics keep the row's names.
    After a resume the restored rows are logged again first: DVC deletes a stage's outputs
    before it runs it, so DVCLive's own resume=True would find nothing to continue.
    """

    def __init__(self, folder: Path, recorder: EpochRecorder) -> None:
        """Open DVCLive (it reads the DVC repository: best before fit's clock starts)."""
        from dvclive import Live

        super().__init__()
        self.recorder = recorder
        # dvc.yaml declares the folder and its plots, and `dvc exp run` makes the experiment:
        # DVCLive writes neither a dvc.yaml of its own nor an experiment (outside a pipeline
        # its default would save one).
        self.live = Live(str(folder), save_dvc_exp=False, dvcyaml=False)
        for row in recorder.rows:
            self._log(row)
        if recorder.rows:
            self.live.make_summary()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._log(self.recorder.rows[-1])
        self.live.next_step()  # metrics.json, Studio, and VS Code's "a step is done" signal

    def on_train_end(self, logs: dict | None = None) -> None:
        self.live.end()

    def _log(self, row: dict[str, float]) -> None:
        self.live.step = int(row["epoch"])
        for name, value in row.items():
            if name != "epoch":
                self.live.log_metric(name, value)


class EpochBackup(keras.callbacks.Callback):
    """Saves the training state after every epoch whose loss is finite."""

    def __init__(self, backup: TrainingBackup, recorder: EpochRecorder) -> None:
        super().__init__()
        self.backup, self.recorder = backup, recorder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # A diverged epoch is nothing to resume from.
        if math.isfinite(float((logs or {}).get("loss", math.nan))):
            self.backup.save(self.model, epoch + 1, self.recorder.rows)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class TrainingResult:
    """What fit produced besides the weights."""

    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def best_val_accuracy(self) -> float:
        return max((row.get("val_accuracy", float("nan")) for row in self.history), default=0.0)

    def summary(self, model: keras.Model, num_train_images: int, run_id: str) -> dict[str, Any]:
        """The train.json metrics."""
        return {
            "train_seconds": round(self.train_seconds, 3),
            "epochs": len(self.history),
            "best_val_accuracy": self.best_val_accuracy,
            "final_val_accuracy": self.history[-1].get("val_accuracy") if self.history else None,
            "num_train_images": int(num_train_images),
            "num_parameters": int(model.count_params()),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "mlflow_run_id": run_id,
        }

    def diverged(self, epochs: int) -> bool:
        """Whether training stopped early or any epoch's loss is not finite."""
        return len(self.history) < epochs or any(
            not math.isfinite(row.get("loss", math.nan)) for row in self.history
        )


def save_serving_model(model: keras.Model, path: Path, tta: str = "none") -> keras.Model:
    """Save an uncompiled copy: it serves raw pixels and needs no imgclf code to load.

    With `tta` (evaluate.tta), the copy averages the test-time views itself, so evaluate,
    promote and every server score exactly what was saved.
    """
    from imgclf.model.fast_layers import with_stock_layers
    from imgclf.model.tta import with_test_time_augmentation

    plain = with_stock_layers(keras.Model(model.inputs, model.outputs, name=model.name))
    serving = with_test_time_augmentation(plain, tta)
    path.parent.mkdir(parents=True, exist_ok=True)
    serving.save(path)
    return serving


def accuracy_of(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Share of `images` whose most probable class is their label."""
    predicted = model.predict(images, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == labels))


def compile_model(
    model: keras.Model,
    *,
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
) -> None:
    """Compile with the recipe's metrics. steps_per_execution (train.steps_per_execution):
    Keras runs that many train steps per call of its train function and calls the per-batch
    callbacks once per call; under JAX a Python loop over the jitted step, under TensorFlow
    one graph."""
    metrics = ["accuracy", *data_loss_metrics(loss)]  # data_loss: the loss without penalties
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


def fit_model(
    model: keras.Model,
    train,
    val,
    *,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    loss: keras.losses.Loss | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    verbose: int | str = "auto",
    jit_compile: bool | str = "auto",
    resume: ResumePoint | None = None,
    backup: TrainingBackup | None = None,
    probe: tuple[np.ndarray, np.ndarray] | None = None,
    setup_seconds: float = 0.0,
    live_folder: Path | None = None,
    epoch_columns: Callable[[int], dict[str, float]] | None = None,
) -> TrainingResult:
    """Fit (compiling first when loss and optimizer are given) from `resume` or from scratch.

    train_seconds is the wall time of `fit`, plus that of the epochs a resume restored, plus
    `setup_seconds` (work that learns from the data before fit, such as the whitening layer).
    probe, (images, one-hot labels), is the fixed batch for probe_grad_norm (diagnostics.py).
    live_folder, when given, is DVCLive's folder: every epoch's row from the end of the first
    epoch on (after a resume, the restored epochs first), metrics.json holding the last.
    epoch_columns maps the 0-based epoch to more values for its row and logs (EpochRecorder).
    """
    if loss is not None and optimizer is not None:
        compile_model(model, loss=loss, optimizer=optimizer, jit_compile=jit_compile)
    recorder = EpochRecorder(resume.history if resume else None, epoch_columns)
    saving = [EpochBackup(backup, recorder)] if backup is not None else []
    if live_folder is not None:
        saving.append(LiveMetrics(live_folder, recorder))
    started = time.perf_counter()
    # The recorder runs first so later callbacks (backup, MLflow logging) see learning_rate too;
    # the backup precedes logging, so a slow tracking store never delays the checkpoint.
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        initial_epoch=resume.epoch if resume else 0,
        callbacks=[
            TrainingDiagnostics(probe),  # first: the recorder keeps what it adds to the logs
            recorder,
            keras.callbacks.TerminateOnNaN(),
            *saving,
            *callbacks,
        ],
        verbose=verbose,
        shuffle=False,  # the dataset already reshuffles every epoch
    )
    earlier = sum(row.get("epoch_seconds", 0.0) for row in (resume.history if resume else []))
    return TrainingResult(
        history=recorder.rows,
        train_seconds=time.perf_counter() - started + earlier + setup_seconds,
    )
