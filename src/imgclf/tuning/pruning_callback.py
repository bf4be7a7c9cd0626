"""The train stage's end of a tuning trial: a Keras callback that reports and stops."""

from __future__ import annotations

import math
import sys
from typing import Any

import keras


class PruningCallback(keras.callbacks.Callback):
    """Reports each epoch's val accuracy to the trial and stops training when it is pruned.

    With metric best_val_accuracy the report is the best so far, so every step compares what
    the trial would score if it stopped there. The last epoch is reported but never pruned:
    stopping then saves nothing. A storage that stops answering ends the reporting, not the
    training.
    """

    def __init__(self, trial: Any, metric: str, epochs: int) -> None:
        super().__init__()
        self.trial, self.metric, self.epochs = trial, metric, epochs
        self.pruned_at_epoch: int | None = None
        self._best = -math.inf
        # Optuna takes intermediate values (and prunes) in single-objective studies only.
        study = getattr(trial, "study", None)
        self._reporting = study is None or len(study.directions) == 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = float((logs or {}).get("val_accuracy", math.nan))
        self._best = max(self._best, value) if math.isfinite(value) else self._best
        reported = self._best if self.metric == "best_val_accuracy" else value
        if not self._reporting or not math.isfinite(reported):
            return
        done = epoch + 1
        try:
            self.trial.report(reported, done)
            prune = done < self.epochs and self.trial.should_prune()
        except Exception as error:  # a lost study must not cost the training
            print(f"train: warning: pruning off, cannot reach the study: {error}", file=sys.stderr)
            self._reporting = False
            return
        if prune:
            self.pruned_at_epoch = done
            self.model.stop_training = True
            print(f"train: trial pruned after epoch {done} of {self.epochs}", flush=True)

    @property
    def pruned(self) -> bool:
        return self.pruned_at_epoch is not None

    def tags(self) -> dict[str, str]:
        """The MLflow tags that mark the run (pruned or not, and the epochs it did)."""
        tags = {"tune.pruned": "true" if self.pruned else "false"}
        if self.pruned:
            tags["tune.pruned_at_epoch"] = str(self.pruned_at_epoch)
        return tags
