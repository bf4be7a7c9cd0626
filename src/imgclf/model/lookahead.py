"""Lookahead with a growing average: every k steps the weights are pulled to their running mean."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:
    from imgclf.params import OptimizerParams


def callbacks_for(optimizer: OptimizerParams, steps_per_epoch: int, epochs: int) -> list:
    """The weight-averaging callback when optimizer.lookahead_every is on; else none."""
    if optimizer.lookahead_every == 0:
        return []
    total = steps_per_epoch * epochs
    return [Lookahead(optimizer.lookahead_every, optimizer.lookahead_decay, total)]


def lookahead_decay(step: int, total_steps: int, final_decay: float) -> float:
    """Weight of the old average at `step`: 0 at the start, `final_decay` at the last step.

    It grows as the cube of progress (the speed records' schedule): early on the weights move
    freely, and only the last part of training is averaged strongly.
    """
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final_decay * progress**3


class Lookahead(keras.callbacks.Callback):
    """Every `every` steps: average <- d * average + (1 - d) * weights, then weights <- average.

    All float variables of the model take part, BatchNorm's running statistics included, so
    the averaged weights and the statistics they are evaluated with stay matched. When training
    ends between two updates, one last update takes in the steps since the previous one; a run
    shorter than k steps keeps its trained weights (its average would still be the initial
    weights). The update is a few vector operations every k steps, not per-image Python.
    """

    def __init__(self, every: int, final_decay: float, total_steps: int) -> None:
        super().__init__()
        self.every, self.final_decay, self.total_steps = every, final_decay, total_steps
        self._variables: list = []
        self._averages: list[np.ndarray] = []
        self._step = 0
        self._epoch_start = 0  # the steps trained before this epoch
        self._updated_at = 0  # the step of the last update (0: none yet)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._variables = [
            variable
            for variable in self.model.weights
            if "float" in str(variable.dtype) and _changes(variable)
        ]
        self._averages = [keras.ops.convert_to_numpy(v).copy() for v in self._variables]
        # Counted here rather than read from the optimizer, which would sync every step.
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._epoch_start = self._step
        self._updated_at = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._step

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # With train.steps_per_execution > 1 Keras calls this once per call of its train
        # function, `batch` being the call's last step (past the epoch's end for a short last
        # call): count steps from it, and average at the first call that reaches a multiple of k.
        steps = (self.params or {}).get("steps") or batch + 1
        step = self._epoch_start + min(batch + 1, steps)
        reached = step // self.every > self._step // self.every
        self._step = step
        if reached:
            self._update()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._updated_at and self._updated_at != self._step:
            self._update()

    def _update(self) -> None:
        # Keras' JAX trainer keeps the weights outside the variables during an epoch: write
        # them back first, so they can be read here and what is assigned is trained on next.
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        decay = lookahead_decay(self._step, self.total_steps, self.final_decay)
        for index, variable in enumerate(self._variables):
            current = keras.ops.convert_to_numpy(variable)
            average = decay * self._averages[index] + (1.0 - decay) * current
            self._averages[index] = average
            variable.assign(average)
        self._updated_at = self._step


def _changes(variable) -> bool:
    """Trainable weights and BatchNorm's moving statistics; not frozen kernels (whitening)."""
    return variable.trainable or variable.path.endswith(("moving_mean", "moving_variance"))
