"""evaluate stage: test-set metrics, confusion data and figures, logged into the training run."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.arrays import load_split, read_classes, write_csv, write_json
from imgclf.params import Params
from imgclf.stages.common import run_stage, stage_parser


def _metric_safe(name: str) -> str:
    """MLflow metric keys allow letters, digits, _ - . / and spaces; class names may hold more."""
    return re.sub(r"[^\w\-. /]", "_", name)


def _evaluate(args: argparse.Namespace, params: Params) -> None:
    from imgclf import tracking

    run_id = json.loads(args.run_info.read_text(encoding="utf-8"))["run_id"]
    project_root = tracking.resolve_project_root(os.environ, Path.cwd())
    tracking.connect(
        tracking.resolve_tracking_uri(os.environ, project_root),
        params.mlflow.experiment_name,
        tracking.default_artifact_location(os.environ, project_root),
    )

    from imgclf.evaluation import classification_metrics, confusion_matrix
    from imgclf.figures import plot_confusion_matrix
    from imgclf.model.loading import load_model_file

    class_names, _ = read_classes(args.classes)
    images, labels = load_split(args.test)
    model = load_model_file(args.model)
    probabilities = model.predict(images, batch_size=params.train.batch_size, verbose=0)
    metrics = classification_metrics(labels, probabilities, class_names)
    metrics["mlflow_run_id"] = run_id
    write_json(args.metrics, metrics)
    predicted = probabilities.argmax(axis=1)
    # One row per test image: the layout DVC's confusion template reads.
    write_csv(
        args.confusion,
        [
            {"actual": class_names[truth], "predicted": class_names[guess]}
            for truth, guess in zip(labels, predicted, strict=True)
        ],
    )
    plot_confusion_matrix(
        confusion_matrix(labels, predicted, len(class_names)), class_names, args.figure
    )

    import mlflow

    with tracking.resume_run(run_id):
        scalars = {f"test_{key}": metrics[key] for key in ("accuracy", "macro_f1", "loss", "ece")}
        for name, value in metrics["per_class_accuracy"].items():
            scalars[f"test_class_accuracy/{_metric_safe(name)}"] = value
        mlflow.log_metrics(scalars)
        tracking.log_artifacts([args.metrics, args.confusion, args.figure], artifact_path="eval")
    print(
        f"evaluate: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"on {metrics['num_test_images']} images"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("evaluate", "Evaluate the trained model on the held-out test split.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--classes", type=Path, required=True)
    parser.add_argument("--run-info", type=Path, required=True, help="train's mlflow_run.json")
    parser.add_argument("--metrics", type=Path, required=True, help="eval.json to write")
    parser.add_argument("--confusion", type=Path, required=True, help="confusion.csv to write")
    parser.add_argument("--figure", type=Path, required=True, help="confusion matrix PNG")
    return run_stage(parser, _evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
