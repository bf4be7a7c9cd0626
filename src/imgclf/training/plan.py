"""The training plan: every derived size and rate, computed once from params and the data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgclf.params import OptimizerParams, Params, flatten_params, lever_warnings
from imgclf.training.distribution import global_batch_size, scaled_learning_rate


@dataclass(frozen=True)
class TrainingPlan:
    """What one training will do, before any of it is done.

    `optimizer` is the optimizer section as trained: its lr is the peak learning rate after
    scaling by the replica count (train.lr_scaling).
    """

    epochs: int
    batch_size: int  # per replica, as params.yaml says
    global_batch: int  # what every step consumes, over all replicas
    steps_per_epoch: int
    learning_rate: float
    optimizer: OptimizerParams
    class_weights: tuple[float, ...] | None  # loss weight per class, or None
    backup_key: str  # names the resumable state of exactly this training
    warnings: Mapping[str, str]  # tag -> message, from params.lever_warnings

    def class_weight_tag(self, class_names: list[str]) -> dict[str, str]:
        """The MLflow tag that records the class weights (none when unweighted)."""
        if self.class_weights is None:
            return {}
        rounded = [round(weight, 4) for weight in self.class_weights]
        return {"loss.class_weights": json.dumps(dict(zip(class_names, rounded, strict=True)))}


def plan_training(
    params: Params, train_labels: np.ndarray, num_classes: int, replicas: int, data_hash: str
) -> TrainingPlan:
    """The plan for `params` on these training labels, over `replicas` replicas."""
    from imgclf.model.losses import CLASS_WEIGHTED_LOSSES, class_weights_from_labels

    settings = params.train
    global_batch = global_batch_size(settings.batch_size, replicas)
    learning_rate = scaled_learning_rate(params.optimizer.lr, settings.lr_scaling, replicas)
    weights = None
    if params.loss.name in CLASS_WEIGHTED_LOSSES:
        weights = tuple(float(w) for w in class_weights_from_labels(train_labels, num_classes))
    return TrainingPlan(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        global_batch=global_batch,
        steps_per_epoch=-(-len(train_labels) // global_batch),
        learning_rate=learning_rate,
        optimizer=params.optimizer.model_copy(update={"lr": learning_rate}),
        class_weights=weights,
        backup_key=backup_key(flatten_params(params), data_hash),
        warnings=lever_warnings(params),
    )


def backup_key(flat_params: Mapping[str, Any], data_hash: str) -> str:
    """Name one training's resumable state: any other param or data gets another name."""
    payload = json.dumps({"params": flat_params, "data": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
