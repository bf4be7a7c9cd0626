"""train stage: build, fit and save the model, recording the run in MLflow."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.arrays import load_split, read_classes, write_csv, write_json
from imgclf.errors import ImgclfError
from imgclf.params import Params, flatten_params, lever_warnings
from imgclf.stages.common import run_stage, stage_parser

# After fit, how long unsent metrics and files are retried before the stage gives up (the
# model stays on disk, the state stays resumable); IMGCLF_MLFLOW_RETRY_SECONDS overrides it.
RETRY_SECONDS = 300.0
# Resumable state lives outside DVC's outputs, in DVC's own scratch folder of the checkout.
BACKUP_FOLDER = Path(".dvc", "tmp", "imgclf-train-backup")
DIVERGED = (
    "training diverged (non-finite loss); lower optimizer.lr or add warm-up "
    "(optimizer.warmup_epochs)"
)


def _select_backend(backend: str) -> None:
    """Keras reads KERAS_BACKEND once, at import: set it before anything imports Keras."""
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise ImgclfError(
            f"train.backend is {backend!r} but Keras is already running on "
            f"{loaded.backend.backend()!r} in this process; run the stage in a fresh process"
        )
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise ImgclfError("train.backend is 'jax' but jax is not installed: uv pip install jax")
    os.environ["KERAS_BACKEND"] = backend


def _class_weights(params: Params, labels, class_names: list[str]) -> list[float] | None:
    """Weights from the training labels when the loss is class-weighted (printed); else None."""
    from imgclf.model.losses import CLASS_WEIGHTED_LOSSES, class_weights_from_labels

    if params.loss.name not in CLASS_WEIGHTED_LOSSES:
        return None
    weights = class_weights_from_labels(labels, len(class_names)).tolist()
    named = ", ".join(f"{name}={w:.4g}" for name, w in zip(class_names, weights, strict=True))
    print(f"train: class weights (inverse training frequency, mean 1 per image): {named}")
    return weights


def _train(args: argparse.Namespace, params: Params) -> None:
    _select_backend(params.train.backend)
    warnings = lever_warnings(params)
    for message in warnings.values():
        print(f"train: warning: {message}", file=sys.stderr)
    from imgclf import distribution
    from imgclf.checksums import hash_files
    from imgclf.tracking import artifacts, epoch_logger, provenance, runs
    from imgclf.tracking.store import open_store

    # TF_CONFIG and the store are checked before any data is read or compute spent; workers
    # other than the chief never touch the store.
    role = distribution.cluster_role(params.train.distribution, os.environ)
    if role is None or role.is_chief:
        store = open_store(os.environ, Path.cwd(), params.mlflow.experiment_name)
        project_root, experiment_id = store.project_root, store.experiment_id
    # A tuning trial's study is checked before any data is read, like the store.
    pruning = _pruning(params.train.epochs) if role is None or role.is_chief else None
    wait_seconds = distribution.wait_seconds(os.environ) if role else 0.0
    dist = distribution.start(params.train.distribution, role, wait_seconds)

    from imgclf import training
    from imgclf.diagnostics import probe_batch
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer

    class_names, shape = read_classes(args.classes)
    train_split, val_split = load_split(args.train), load_split(args.val)
    train_images, val_images = train_split[0], val_split[0]
    settings, num_classes = params.train, len(class_names)
    data_hash = hash_files([args.train, args.val])
    flat = flatten_params(params)
    # First collective: workers with other params or data would otherwise hang or diverge.
    distribution.check_same_inputs(dist, training.backup_key(flat, data_hash))
    training.make_reproducible(settings.seed, settings.deterministic)
    accelerator = training.configure_accelerator(settings.mixed_precision, settings.jit_compile)
    # batch_size is per replica: the datasets yield global batches that tf.distribute splits.
    global_batch = dist.global_batch_size(settings.batch_size)
    learning_rate = dist.learning_rate(params.optimizer.lr, settings.lr_scaling)
    steps_per_epoch = math.ceil(len(train_images) / global_batch)
    class_weights = _class_weights(params, train_split[1], class_names)
    started = time.perf_counter()
    whitening = training.learn_whitening(params.model, train_images, settings.seed)
    setup_seconds = time.perf_counter() - started  # it learns from the data: training time
    with dist.scope():
        model = training.build_classifier(
            params.model, params.reg, shape, num_classes, train_images, whitening
        )
        training.compile_model(
            model,
            loss=build_loss(params.loss, class_weights),
            optimizer=build_optimizer(
                params.optimizer.model_copy(update={"lr": learning_rate}),
                steps_per_epoch,
                settings.epochs,
            ),
            jit_compile=accelerator.jit_compile,
        )
    train_data, val_data = training.make_datasets(
        train_split,
        val_split,
        num_classes,
        settings.model_copy(update={"batch_size": global_batch}),
        params.augment,
    )
    fit = functools.partial(
        training.fit_model,
        model,
        train_data,
        val_data,
        epochs=settings.epochs,
        # A live progress bar on a terminal; one line per epoch in logs (DVC, CI).
        verbose="auto" if sys.stdout.isatty() else 2,
        probe=probe_batch(*train_split, num_classes, settings.batch_size, settings.seed),
        setup_seconds=setup_seconds,
    )
    from imgclf.lookahead import callbacks_for

    averaging = callbacks_for(params.optimizer, steps_per_epoch, params.train.epochs)
    if dist.role is not None:
        print(f"train: {dist.role.name} training with {dist.num_workers} workers", flush=True)
    if not dist.is_chief:
        return _train_as_worker(dist, fit, model, settings.epochs, averaging)
    source_info = json.loads(args.source_info.read_text(encoding="utf-8"))
    tags = provenance.training_tags(os.environ, project_root, data_hash, source_info, accelerator)
    tags.update(warnings)
    tags.update(dist.tags(settings.batch_size, learning_rate))
    if class_weights is not None:
        rounded = [round(weight, 4) for weight in class_weights]
        tags["loss.class_weights"] = json.dumps(dict(zip(class_names, rounded, strict=True)))
    state_folder = project_root / BACKUP_FOLDER / training.backup_key(flat, data_hash)
    retry_seconds = float(os.environ.get("IMGCLF_MLFLOW_RETRY_SECONDS", RETRY_SECONDS))

    # Workers on other machines cannot read the chief's state: multi-worker runs start over.
    claim = (
        contextlib.nullcontext(training.TrainingBackup(None))
        if dist.kind == "multi_worker"
        else training.claim_backup(state_folder)
    )
    with claim as backup:
        with dist.scope():
            resume = backup.restore(model)
        if resume is not None:
            tags["resumed_from_epoch"] = str(resume.epoch)
            print(f"train: resuming after epoch {resume.epoch} from {state_folder}")
        with runs.start_run(
            experiment_id,
            os.environ.get("DVC_EXP_NAME") or None,
            tags,
            flat,
            log_system_metrics=accelerator.gpu,
            reopen_run_id=resume.run_id if resume else None,
        ) as run:
            run_id = run.info.run_id
            backup.remember_run(run_id)
            write_json(args.run_info, {"run_id": run_id, "experiment_id": experiment_id})
            logger = epoch_logger.EpochLogger(
                run_id, epoch_logger.unlogged_epochs(run_id, resume.history) if resume else ()
            )
            with distribution.reporting_lost_workers(dist):
                result = fit(
                    callbacks=[*averaging, logger, *([pruning] if pruning else [])],
                    resume=resume,
                    backup=backup,
                    history_path=args.history,
                )
            pruned = pruning is not None and pruning.pruned
            if result.diverged(len(result.history) if pruned else settings.epochs):
                backup.clear()  # the same params would diverge again: nothing to resume
                raise ImgclfError(DIVERGED)
            serving = training.save_serving_model(model, args.model, params.evaluate.tta)
            write_csv(args.history, result.history)
            metrics = result.summary(model, len(train_images), run_id)
            if pruning is not None:  # a tuning trial: the experiment says whether it was cut
                metrics.update(pruned=pruned, pruned_at_epoch=pruning.pruned_at_epoch)
            # The saved model's own score on val: with evaluate.tta it averages its views, which
            # the per-epoch val_accuracy (the plain network) does not see.
            metrics["serving_val_accuracy"] = training.accuracy_of(
                serving, *val_split, settings.batch_size
            )
            write_json(args.metrics, metrics)
            outputs = [Path(args.params), args.history, args.metrics]
            artifacts.finish_logging(
                logger,
                lambda: artifacts.log_training_outputs(
                    {"train_seconds": result.train_seconds},
                    outputs,
                    args.validation,
                    {
                        "training": (args.train, *train_split),
                        "validation": (args.val, *val_split),
                    },
                    (serving, args.model, class_names) if params.mlflow.log_model else None,
                    val_images[:4],
                    pruning.tags() if pruning else None,
                ),
                retry_seconds,
                args.model,
            )
        backup.clear()  # finished and recorded: nothing is left to resume
    print(
        f"train: best val accuracy {metrics['best_val_accuracy']:.4f} in "
        f"{metrics['train_seconds']:.1f} s; MLflow run {run_id}"
    )


def _pruning(epochs: int):
    """The pruning callback of the tuning trial that started this run (imgclf tune); else None."""
    from imgclf import pruning
    from imgclf.pruning_callback import PruningCallback

    link = os.environ.get(pruning.TRIAL_VARIABLE)
    if not link:
        return None
    trial_link = pruning.TrialLink.from_json(link)
    return PruningCallback(pruning.open_trial(trial_link), trial_link.metric, epochs)


def _train_as_worker(dist, fit, model, epochs: int, averaging: list) -> None:
    """A worker other than the chief: trains its share and writes no output, no MLflow run.

    TensorFlow expects every worker to save, so it saves into a folder it then deletes.
    """
    from imgclf import distribution, training

    with distribution.reporting_lost_workers(dist):
        result = fit(callbacks=averaging)
    if result.diverged(epochs):
        raise ImgclfError(DIVERGED)
    with tempfile.TemporaryDirectory(prefix="imgclf-worker-") as scratch:
        training.save_serving_model(model, Path(scratch) / "model.keras")
    print(f"train: {dist.role.name} done; the chief writes the model, metrics and MLflow run")


def _interrupt_on_sigterm() -> None:
    """`dvc queue kill` and schedulers send SIGTERM: end the MLflow run KILLED, not RUNNING."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    _interrupt_on_sigterm()
    parser = stage_parser("train", "Train the configured model and record the run in MLflow.")
    parser.add_argument("--train", type=Path, required=True, help="augmented train split")
    parser.add_argument("--val", type=Path, required=True, help="prepared val split")
    parser.add_argument("--classes", type=Path, required=True)
    parser.add_argument("--validation", type=Path, required=True, help="validate result.json")
    parser.add_argument("--source-info", type=Path, required=True, help="download source.json")
    parser.add_argument("--model", type=Path, required=True, help="model.keras to write")
    parser.add_argument("--metrics", type=Path, required=True, help="train.json to write")
    parser.add_argument(
        "--history", type=Path, required=True, help="history.csv to write (after every epoch)"
    )
    parser.add_argument("--run-info", type=Path, required=True, help="mlflow_run.json to write")
    return run_stage(parser, _train, argv)


if __name__ == "__main__":
    sys.exit(main())
