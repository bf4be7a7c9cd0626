"""Everything before the first training step: checks, then the data read and assembled.

The checks that can fail (TF_CONFIG, the MLflow store, a tuning trial) come before any data is
read, so a wrong setting costs seconds, not a training run.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.data.arrays import load_split, read_classes
from imgclf.params import Params

if TYPE_CHECKING:
    from imgclf.training.assemble import Trainer
    from imgclf.training.distribution import Distribution


@dataclass(frozen=True)
class TrainFiles:
    """What the train stage reads and writes: the paths dvc.yaml passes it."""

    train: Path
    val: Path
    classes: Path
    validation: Path
    source_info: Path
    model: Path
    metrics: Path
    live: Path  # DVCLive's folder: per-epoch metrics and plots
    run_info: Path
    params: Path  # the params file, logged with the run


@dataclass(frozen=True)
class TrainingContext:
    """Where this process trains, checked before any data is read: its place in the cluster,
    the user's checkout, the MLflow experiment and the tuning trial that started it."""

    dist: Distribution
    project_root: Path
    experiment_id: str | None  # None on a worker, which never touches the store
    pruning: Any  # the tuning trial's PruningCallback, or None


def check_context(params: Params, environ: MutableMapping[str, str], cwd: Path) -> TrainingContext:
    """Check TF_CONFIG, the MLflow store and a tuning trial; start the distribution strategy.

    environ is the process environment: opening the store sets MLflow's HTTP time-outs there.
    """
    from imgclf.tracking.store import open_store, resolve_project_root
    from imgclf.training import distribution

    role = distribution.cluster_role(params.train.distribution, environ)
    chief = role is None or role.is_chief
    store = open_store(environ, cwd, params.mlflow.experiment_name) if chief else None
    project_root = store.project_root if store else resolve_project_root(environ, cwd)
    experiment_id = store.experiment_id if store else None
    pruning = _pruning(environ, params.train.epochs) if chief else None
    wait_seconds = distribution.wait_seconds(environ) if role else 0.0
    dist = distribution.start(params.train.distribution, role, wait_seconds)
    return TrainingContext(dist, project_root, experiment_id, pruning)


def _pruning(environ: Mapping[str, str], epochs: int):
    """The pruning callback of the tuning trial that started this run (imgclf tune); else None."""
    from imgclf.tuning import pruning
    from imgclf.tuning.pruning_callback import PruningCallback

    link = environ.get(pruning.TRIAL_VARIABLE)
    if not link:
        return None
    trial_link = pruning.TrialLink.from_json(link)
    return PruningCallback(pruning.open_trial(trial_link), trial_link.metric, epochs)


def prepare(files: TrainFiles, params: Params, context: TrainingContext) -> Trainer:
    """Read the train stage's splits and assemble the training on them."""
    from imgclf.checksums import hash_files
    from imgclf.training.assemble import assemble

    class_names, _ = read_classes(files.classes)
    train, validation = load_split(files.train), load_split(files.val)
    data_hash = hash_files([files.train, files.val])
    return assemble(params, train, validation, class_names, dist=context.dist, data_hash=data_hash)
