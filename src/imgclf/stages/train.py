"""train stage: build, fit and save the model, recording the run in MLflow."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.arrays import load_split, read_classes, write_csv, write_json
from imgclf.errors import ImgclfError
from imgclf.params import Params, flatten_params
from imgclf.stages.common import run_stage, stage_parser


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


def _train(args: argparse.Namespace, params: Params) -> None:
    _select_backend(params.train.backend)
    from imgclf import tracking

    # The store is checked before any data is read or compute spent.
    project_root = tracking.resolve_project_root(os.environ, Path.cwd())
    experiment_id = tracking.connect(
        tracking.resolve_tracking_uri(os.environ, project_root),
        params.mlflow.experiment_name,
        tracking.default_artifact_location(os.environ, project_root),
    )

    import keras

    from imgclf.model.architectures import ModelSpec, build_model
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer
    from imgclf.model.regularizers import build_kernel_regularizer
    from imgclf.training import (
        channel_statistics,
        configure_accelerator,
        fit_model,
        make_dataset,
    )

    class_names, image_shape = read_classes(args.classes)
    train_images, train_labels = load_split(args.train)
    val_images, val_labels = load_split(args.val)
    settings = params.train
    keras.utils.set_random_seed(settings.seed)
    accelerator = configure_accelerator(settings.mixed_precision, settings.jit_compile)
    mean, std = channel_statistics(train_images)
    spec = ModelSpec(
        image_shape=image_shape,
        num_classes=len(class_names),
        channel_mean=mean,
        channel_std=std,
        width=params.model.width,
        dropout=params.reg.dropout,
        kernel_regularizer=build_kernel_regularizer(params.reg.l1, params.reg.l2),
    )
    model = build_model(params.model.arch, spec)
    steps_per_epoch = math.ceil(len(train_images) / settings.batch_size)
    train_data = make_dataset(
        train_images,
        train_labels,
        len(class_names),
        settings.batch_size,
        shuffle_seed=settings.seed,
        crop_flip_pixels=params.augment.online_crop_pixels
        if params.augment.online_crop_flip
        else None,
    )
    val_data = make_dataset(
        val_images, val_labels, len(class_names), settings.batch_size, shuffle_seed=None
    )
    data_hash = tracking.hash_files([args.train, args.val])
    tags = tracking.run_tags(os.environ, project_root, data_hash)
    tags["data.validation"] = "passed"  # augment, upstream, refuses data that failed validate
    tags["precision.policy"] = accelerator.precision_policy
    tags["jit_compile"] = str(accelerator.jit_compile)
    source_info = json.loads(args.source_info.read_text(encoding="utf-8"))
    tags["data.source"] = source_info["source"]
    if source_info.get("checksum"):
        tags["data.checksum"] = source_info["checksum"]
    run_name = os.environ.get("DVC_EXP_NAME") or None

    with tracking.start_run(
        experiment_id, run_name, tags, flatten_params(params), log_system_metrics=accelerator.gpu
    ) as run:
        write_json(args.run_info, {"run_id": run.info.run_id, "experiment_id": experiment_id})
        result = fit_model(
            model,
            train_data,
            val_data,
            loss=build_loss(params.loss),
            optimizer=build_optimizer(params.optimizer, steps_per_epoch, settings.epochs),
            epochs=settings.epochs,
            callbacks=[tracking.EpochLogger()],
            # A live progress bar on a terminal; one line per epoch in logs (DVC, CI).
            verbose="auto" if sys.stdout.isatty() else 2,
            jit_compile=accelerator.jit_compile,
        )
        if len(result.history) < settings.epochs or any(
            not math.isfinite(row.get("loss", math.nan)) for row in result.history
        ):
            raise ImgclfError(
                "training diverged (non-finite loss); lower optimizer.lr or add warm-up "
                "(optimizer.warmup_epochs)"
            )
        # The saved model is an uncompiled copy: it serves raw pixels and needs no imgclf code.
        serving = keras.Model(model.inputs, model.outputs, name=model.name)
        args.model.parent.mkdir(parents=True, exist_ok=True)
        serving.save(args.model)
        write_csv(args.history, result.history)
        metrics = {
            "train_seconds": round(result.train_seconds, 3),
            "epochs": len(result.history),
            "best_val_accuracy": result.best_val_accuracy,
            "final_val_accuracy": result.history[-1].get("val_accuracy"),
            "num_train_images": int(len(train_images)),
            "num_parameters": int(model.count_params()),
            "mlflow_run_id": run.info.run_id,
        }
        write_json(args.metrics, metrics)
        import mlflow

        mlflow.log_metrics({"train_seconds": result.train_seconds})
        tracking.log_artifacts([Path(args.params), args.history, args.metrics])
        tracking.log_artifacts([args.validation], artifact_path="validation")
        if params.mlflow.log_model:
            tracking.log_keras_model(serving, val_images[:4])
    print(
        f"train: best val accuracy {metrics['best_val_accuracy']:.4f} in "
        f"{metrics['train_seconds']:.1f} s; MLflow run {run.info.run_id}"
    )


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
    parser.add_argument("--history", type=Path, required=True, help="history.csv to write")
    parser.add_argument("--run-info", type=Path, required=True, help="mlflow_run.json to write")
    return run_stage(parser, _train, argv)


if __name__ == "__main__":
    sys.exit(main())
