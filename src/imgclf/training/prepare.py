"""Everything before the first training step: checks, data, plan, seeds, model, datasets.

The checks that can fail (TF_CONFIG, the MLflow store, a tuning trial) come before any data is
read, so a wrong setting costs seconds, not a training run.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.data.arrays import load_split, read_classes
from imgclf.params import Params

if TYPE_CHECKING:
    from imgclf.training.session import TrainFiles


@dataclass(frozen=True)
class Connection:
    """What was checked before any data is read: the cluster, the store, the tuning trial."""

    dist: Any  # distribution.Distribution
    project_root: Path
    experiment_id: str | None  # None on a worker, which never touches the store
    pruning: Any  # the tuning trial's PruningCallback, or None


@dataclass
class Setup:
    """The compiled model and everything fit needs, before the first step."""

    plan: Any  # plan.TrainingPlan
    accelerator: Any  # runtime.AcceleratorSetup
    model: Any
    fit: Callable[..., Any]  # fit.fit_model with the model, data and plan bound
    callbacks: list  # every fit needs them: lookahead averaging, the input pipeline's epoch
    splits: dict[str, tuple[Any, Any]]
    class_names: list[str]
    data_hash: str


def connect(params: Params, environ: MutableMapping[str, str], cwd: Path) -> Connection:
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
    return Connection(dist, project_root, experiment_id, pruning)


def _pruning(environ: Mapping[str, str], epochs: int):
    """The pruning callback of the tuning trial that started this run (imgclf tune); else None."""
    from imgclf.tuning import pruning
    from imgclf.tuning.pruning_callback import PruningCallback

    link = environ.get(pruning.TRIAL_VARIABLE)
    if not link:
        return None
    trial_link = pruning.TrialLink.from_json(link)
    return PruningCallback(pruning.open_trial(trial_link), trial_link.metric, epochs)


def prepare(files: TrainFiles, params: Params, connection: Connection) -> Setup:
    """Read the data, plan, seed, build and compile the model, make the datasets."""
    from imgclf.checksums import hash_files
    from imgclf.model.lookahead import callbacks_for
    from imgclf.training import classifier, distribution, fit, inputs, plan, runtime
    from imgclf.training.diagnostics import probe_batch
    from imgclf.training.online_augmentation import CurrentEpoch

    dist, settings = connection.dist, params.train
    class_names, shape = read_classes(files.classes)
    splits = {"train": load_split(files.train), "validation": load_split(files.val)}
    data_hash = hash_files([files.train, files.val])
    trained = plan.plan_training(
        params, splits["train"][1], len(class_names), dist.num_replicas, data_hash
    )
    # First collective: workers with other params or data would otherwise hang or diverge.
    distribution.check_same_inputs(dist, trained.backup_key)
    runtime.make_reproducible(settings.seed, settings.deterministic)
    accelerator = runtime.configure_accelerator(settings.mixed_precision, settings.jit_compile)
    if trained.class_weights is not None:
        named = ", ".join(
            f"{name}={weight:.4g}"
            for name, weight in zip(class_names, trained.class_weights, strict=True)
        )
        print(f"train: class weights (inverse training frequency, mean 1 per image): {named}")
    model, setup_seconds = _build(
        params,
        trained,
        accelerator,
        splits["train"][0],
        (shape, len(class_names)),
        dist,
    )
    small_epochs = inputs.progressive_epochs(params, trained.epochs, shape)
    if small_epochs:
        classifier.accept_any_image_size(model)
    current_epoch = CurrentEpoch()
    online = inputs.online_augmentation(params.augment, small_epochs)
    train_data, val_data = inputs.make_datasets(
        splits["train"],
        splits["validation"],
        len(class_names),
        trained.global_batch,
        settings.seed,
        online,
        current_epoch,
    )
    run_fit = functools.partial(
        fit.fit_model,
        model,
        train_data,
        val_data,
        epochs=trained.epochs,
        # A live progress bar on a terminal; one line per epoch in logs (DVC, CI).
        verbose="auto" if sys.stdout.isatty() else 2,
        probe=probe_batch(*splits["train"], len(class_names), trained.batch_size, settings.seed),
        setup_seconds=setup_seconds,
        # history.csv and the MLflow run say which epochs trained on downscaled images.
        epoch_columns=lambda epoch: {"image_side": online.image_side(epoch, min(shape[:2]))},
    )
    callbacks = [
        inputs.CurrentEpochCallback(current_epoch),
        *callbacks_for(params.optimizer, trained.steps_per_epoch, trained.epochs),
    ]
    return Setup(trained, accelerator, model, run_fit, callbacks, splits, class_names, data_hash)


def _build(params: Params, trained, accelerator, train_images, output, dist):
    """The compiled model, and the seconds spent learning its whitening layer from the data.

    output is (the image shape, the number of classes).
    """
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer
    from imgclf.training import classifier, fit

    started = time.perf_counter()
    whitening = classifier.learn_whitening(params.model, train_images, params.train.seed)
    setup_seconds = time.perf_counter() - started  # it learns from the data: training time
    weights = list(trained.class_weights) if trained.class_weights is not None else None
    with dist.scope():
        model = classifier.build_classifier(
            params.model, params.reg, *output, train_images, whitening
        )
        fit.compile_model(
            model,
            loss=build_loss(params.loss, weights),
            optimizer=build_optimizer(trained.optimizer, trained.steps_per_epoch, trained.epochs),
            jit_compile=accelerator.jit_compile,
        )
    return model, setup_seconds
