"""One training from the train stage's files: set up, resume, fit, check, save, record.

The chief (or the only process) resumes any interrupted state, fits inside an MLflow run, saves
the serving model and writes the metrics; a worker of a multi-machine cluster trains its share
and writes nothing. The set-up before the first step is training/prepare.py, which reads the
files and calls training/assemble.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgclf.data.arrays import write_json
from imgclf.errors import ImgclfError
from imgclf.params import Params, flatten_params
from imgclf.training.prepare import TrainFiles, TrainingContext, check_context, prepare

if TYPE_CHECKING:
    from imgclf.training.assemble import Trainer

# After fit, how long unsent metrics and files are retried before the stage gives up (the
# model stays on disk, the state stays resumable); IMGCLF_MLFLOW_RETRY_SECONDS overrides it.
RETRY_SECONDS = 300.0
# Resumable state lives outside DVC's outputs, in DVC's own scratch folder of the checkout.
BACKUP_FOLDER = Path(".dvc", "tmp", "imgclf-train-backup")
DIVERGED = (
    "training diverged (non-finite loss); lower optimizer.lr or add warm-up "
    "(optimizer.warmup_epochs)"
)


def train(files: TrainFiles, params: Params, environ: MutableMapping[str, str], cwd: Path) -> None:
    """Train as the chief (or alone), or as a worker of a multi-machine cluster."""
    context = check_context(params, environ, cwd)
    trainer = prepare(files, params, context)
    dist = context.dist
    if dist.role is not None:
        print(
            f"train: {dist.role.name} training with {dist.num_workers} workers",
            flush=True,
        )
    if not dist.is_chief:
        return train_as_worker(trainer, dist)
    metrics = train_as_chief(files, params, environ, context, trainer)
    print(
        f"train: best val accuracy {metrics['best_val_accuracy']:.4f} in "
        f"{metrics['train_seconds']:.1f} s; MLflow run {metrics['mlflow_run_id']}"
    )


def train_as_worker(trainer: Trainer, dist) -> None:
    """A worker other than the chief: trains its share and writes no output, no MLflow run.

    TensorFlow expects every worker to save, so it saves into a folder it then deletes.
    """
    import tempfile

    from imgclf.training import distribution, fit

    with distribution.reporting_lost_workers(dist):
        result = trainer.fit()
    if result.diverged(trainer.plan.epochs):
        raise ImgclfError(DIVERGED)
    with tempfile.TemporaryDirectory(prefix="imgclf-worker-") as scratch:
        fit.save_serving_model(trainer.model, Path(scratch) / "model.keras")
    print(f"train: {dist.role.name} done; the chief writes the model, metrics and MLflow run")


def train_as_chief(
    files: TrainFiles,
    params: Params,
    environ: Mapping[str, str],
    context: TrainingContext,
    trainer: Trainer,
) -> dict[str, Any]:
    """Resume, fit inside the MLflow run, save and record; the train.json metrics."""
    from imgclf.tracking import artifacts, epoch_logger, runs

    state_folder = context.project_root / BACKUP_FOLDER / trainer.plan.backup_key
    claim = _claim_backup(context.dist, state_folder)
    tags = _tags(files, environ, context, trainer)
    with claim as backup:
        resume = _restore(backup, trainer, context.dist, state_folder)
        if resume is not None:
            tags["resumed_from_epoch"] = str(resume.epoch)
        with runs.start_run(
            context.experiment_id,
            environ.get("DVC_EXP_NAME") or None,
            tags,
            flatten_params(params),
            log_system_metrics=trainer.accelerator.gpu,
            reopen_run_id=resume.run_id if resume else None,
        ) as run:
            run_id = run.info.run_id
            backup.remember_run(run_id)
            write_json(files.run_info, {"run_id": run_id, "experiment_id": context.experiment_id})
            logger = epoch_logger.EpochLogger(
                run_id,
                epoch_logger.unlogged_epochs(run_id, resume.history) if resume else (),
            )
            result = _fit_checked(
                trainer, context, logger=logger, resume=resume, backup=backup, files=files
            )
            pruning = context.pruning
            metrics, serving = _save(files, params, trainer, result, (run_id, pruning))
            retry_seconds = float(environ.get("IMGCLF_MLFLOW_RETRY_SECONDS", RETRY_SECONDS))
            artifacts.finish_logging(
                logger,
                lambda: _log_outputs(files, params, trainer, result, (serving, pruning)),
                retry_seconds,
                files.model,
            )
        backup.clear()  # finished and recorded: nothing is left to resume
    return metrics


def _claim_backup(dist, state_folder: Path) -> contextlib.AbstractContextManager:
    """The resumable state this run owns while it trains (the lock is taken on entering)."""
    from imgclf.training import checkpoint

    # Workers on other machines cannot read the chief's state: multi-worker runs start over.
    if dist.kind == "multi_worker":
        return contextlib.nullcontext(checkpoint.TrainingBackup(None))
    return checkpoint.claim_backup(state_folder)


def _restore(backup, trainer: Trainer, dist, state_folder: Path):
    """Load an interrupted run's weights and state into the model; None when there is none."""
    with dist.scope():
        resume = backup.restore(trainer.model)
    if resume is not None:
        print(f"train: resuming after epoch {resume.epoch} from {state_folder}")
    return resume


def _fit_checked(
    trainer: Trainer, context: TrainingContext, *, logger, resume, backup, files: TrainFiles
):
    """Fit with the run's callbacks and return the result; a diverged fit clears the state."""
    from imgclf.training import distribution

    pruning = context.pruning
    with distribution.reporting_lost_workers(context.dist):
        result = trainer.fit(
            [logger, *([pruning] if pruning else [])],
            resume=resume,
            backup=backup,
            live_folder=files.live,
        )
    pruned = pruning is not None and pruning.pruned
    if result.diverged(len(result.history) if pruned else trainer.plan.epochs):
        backup.clear()  # the same params would diverge again: nothing to resume
        raise ImgclfError(DIVERGED)
    return result


def _tags(
    files: TrainFiles, environ: Mapping[str, str], context: TrainingContext, trainer: Trainer
) -> dict[str, str]:
    """The training run's tags: provenance, device, lever warnings, distribution, weights."""
    from imgclf.tracking import provenance

    plan = trainer.plan
    source_info = json.loads(files.source_info.read_text(encoding="utf-8"))
    tags = provenance.training_tags(
        environ,
        context.project_root,
        trainer.data_hash,
        source_info,
        trainer.accelerator,
    )
    tags.update(plan.warnings)
    tags.update(context.dist.tags(plan.batch_size, plan.learning_rate))
    tags.update(plan.class_weight_tag(trainer.class_names))
    return tags


def _save(files: TrainFiles, params: Params, trainer: Trainer, result, run) -> tuple[dict, Any]:
    """Save the serving model and train.json; the metrics and the served model.

    run is (the MLflow run id, the tuning trial's pruning callback or None).
    """
    from imgclf.training import fit

    run_id, pruning = run
    serving = fit.save_serving_model(trainer.model, files.model, params.evaluate.tta)
    train_images = trainer.splits["train"][0]
    metrics = result.summary(trainer.model, len(train_images), run_id)
    if pruning is not None:  # a tuning trial: the experiment says whether it was cut
        metrics.update(pruned=pruning.pruned, pruned_at_epoch=pruning.pruned_at_epoch)
    # The saved model's own score on val: with evaluate.tta it averages its views, which the
    # per-epoch val_accuracy (the plain network) does not see.
    metrics["serving_val_accuracy"] = fit.accuracy_of(
        serving, *trainer.splits["validation"], params.train.batch_size
    )
    write_json(files.metrics, metrics)
    return metrics, serving


def _log_outputs(files: TrainFiles, params: Params, trainer: Trainer, result, saved) -> None:
    """Send the run's last metric, its files, data sets and model to MLflow.

    saved is (the serving model, the tuning trial's pruning callback or None).
    """
    from imgclf.tracking import artifacts

    serving, pruning = saved
    artifacts.log_training_outputs(
        {"train_seconds": result.train_seconds},
        [files.params, files.metrics],
        files.validation,
        {
            "training": (files.train, *trainer.splits["train"]),
            "validation": (files.val, *trainer.splits["validation"]),
        },
        (serving, files.model, trainer.class_names) if params.mlflow.log_model else None,
        trainer.splits["validation"][0][:4],
        pruning.tags() if pruning else None,
    )
    # The per-epoch files too, so the run alone holds what `dvc plots show` draws.
    artifacts.log_artifacts([files.live], artifact_path="dvclive")
