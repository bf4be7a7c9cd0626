"""Resumable training: the last whole epoch on disk, restored after a crash or a kill."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras

WEIGHTS_FILE = "state.weights.h5"  # Keras insists on the .weights.h5 suffix


@dataclass(frozen=True)
class ResumePoint:
    """What an interrupted training left: epochs done, their history rows and its MLflow run."""

    epoch: int
    history: list[dict[str, float]]
    run_id: str


class TrainingBackup:
    """The last completed epoch (weights with optimizer state, history) and the run's id.

    Each epoch is written into a staging folder that is then renamed into place, so a SIGKILL
    at any moment leaves that epoch whole or the one before it, never a torn checkpoint.
    With no folder, every method does nothing (training without a backup).
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def remember_run(self, run_id: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / ".run.json.partial"
        staging.write_text(json.dumps({"run_id": run_id}), encoding="utf-8")
        staging.replace(self.folder / "run.json")

    def save(self, model: keras.Model, epoch: int, history: list[dict[str, float]]) -> None:
        if self.folder is None:
            return
        staging = self.folder / f".epoch-{epoch:05d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        model.save_weights(staging / WEIGHTS_FILE)
        state = {"epoch": epoch, "history": history}
        (staging / "state.json").write_text(json.dumps(state), encoding="utf-8")
        final = self.folder / f"epoch-{epoch:05d}"
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for older in self.folder.glob("epoch-*"):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def restore(self, model: keras.Model) -> ResumePoint | None:
        """Load the last completed epoch into the compiled model; None: start from scratch.

        A state that cannot be loaded is reported and removed, and the model keeps its
        fresh weights.
        """
        if self.folder is None:
            return None
        epochs = sorted(self.folder.glob("epoch-*"))
        run_file = self.folder / "run.json"
        if not epochs or not run_file.is_file():
            return None
        if not model.optimizer.built:  # its slots must exist to receive the saved state
            model.optimizer.build(model.trainable_variables)
        variables = [*model.variables, *model.optimizer.variables]
        fresh = [keras.ops.convert_to_numpy(variable) for variable in variables]
        try:
            state = json.loads((epochs[-1] / "state.json").read_text(encoding="utf-8"))
            run_id = json.loads(run_file.read_text(encoding="utf-8"))["run_id"]
            model.load_weights(epochs[-1] / WEIGHTS_FILE)
            point = ResumePoint(int(state["epoch"]), list(state["history"]), str(run_id))
        except (OSError, ValueError, KeyError, TypeError) as error:
            for variable, value in zip(variables, fresh, strict=True):
                variable.assign(value)
            print(
                f"train: cannot resume from {epochs[-1]} ({error}); starting afresh",
                file=sys.stderr,
            )
            self.clear()
            return None
        return point

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def claim_backup(folder: Path) -> Iterator[TrainingBackup]:
    """The backup in `folder`, held by this process; a disabled one while another holds it.

    Two queued experiments with the same params and data would otherwise write (and delete)
    one state at once; the second simply trains without a backup.
    """
    import filelock

    folder.parent.mkdir(parents=True, exist_ok=True)
    # filelock, not fcntl: the same lock on Windows; timeout 0 asks once and never waits.
    lock = filelock.FileLock(folder.with_name(folder.name + ".lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        print(
            f"train: another run with these params and data holds {folder}; "
            "training without a resumable backup",
            file=sys.stderr,
        )
        yield TrainingBackup(None)
        return
    try:
        yield TrainingBackup(folder)
    finally:
        lock.release()
