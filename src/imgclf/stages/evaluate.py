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


def _diagnose(args, settings, predict, test, probabilities, class_names) -> dict:
    """Reliability, accuracy under corruptions and the confident mistakes: files and metrics.

    Returns what eval.json adds: corruption_accuracy (the mean) and the corruption block.
    """
    from imgclf.corruptions import corruption_accuracy, corruption_table, subset_indices
    from imgclf.evaluation import confident_mistakes, reliability_bins
    from imgclf.figures import plot_image_gallery, plot_reliability_diagram

    images, labels = test
    bins = reliability_bins(labels, probabilities)
    write_csv(args.reliability, bins)
    plot_reliability_diagram(bins, args.reliability_figure)

    # Fifteen extra passes over the test images: a seeded subset keeps that quick on a CPU.
    chosen = subset_indices(len(labels), settings.corruption_images, settings.seed)
    scores = corruption_accuracy(predict, images[chosen], labels[chosen], settings.seed)
    write_csv(args.corruption, corruption_table(scores))

    wrong = confident_mistakes(labels, probabilities, settings.mistakes_shown)
    guesses = probabilities.argmax(axis=1)
    titles = [
        f"#{index} true {class_names[labels[index]]}\n"
        f"predicted {class_names[guesses[index]]} ({probabilities[index].max():.2f})"
        for index in wrong
    ]
    plot_image_gallery(images[wrong], titles, args.mistakes_figure)
    mean = scores.pop("mean_accuracy")
    return {
        "corruption_accuracy": mean,
        "corruption": {"num_images": len(chosen), "seed": settings.seed, **scores},
    }


def _evaluate(args: argparse.Namespace, params: Params) -> None:
    from imgclf import tracking

    run_id = json.loads(args.run_info.read_text(encoding="utf-8"))["run_id"]
    project_root = tracking.resolve_project_root(os.environ, Path.cwd())
    tracking.connect(
        tracking.resolve_tracking_uri(os.environ, project_root),
        params.mlflow.experiment_name,
        tracking.default_artifact_location(os.environ, project_root),
    )

    from imgclf.corruptions import CORRUPTIONS
    from imgclf.evaluation import classification_metrics, confusion_matrix
    from imgclf.figures import plot_confusion_matrix
    from imgclf.model.loading import load_model_file

    class_names, _ = read_classes(args.classes)
    images, labels = load_split(args.test)
    model = load_model_file(args.model)

    def predict(batch):
        return model.predict(batch, batch_size=params.train.batch_size, verbose=0)

    probabilities = predict(images)
    metrics = classification_metrics(labels, probabilities, class_names)
    metrics["mlflow_run_id"] = run_id
    test = (images, labels)
    metrics.update(_diagnose(args, params.evaluate, predict, test, probabilities, class_names))
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
        # Test metrics belong to the model scored (its MLflow 3 LoggedModel) and the test data.
        model_id = tracking.run_model_id(mlflow.MlflowClient(), run_id)
        test_data = mlflow.data.from_numpy(
            images, targets=labels, source=args.test.resolve().as_uri(), name=args.test.name
        )
        mlflow.log_input(test_data, context="testing")
        names = ("accuracy", "top5_accuracy", "macro_f1", "loss", "ece", "corruption_accuracy")
        scalars = {f"test_{key}": metrics[key] for key in names}
        for name, value in metrics["per_class_accuracy"].items():
            scalars[f"test_class_accuracy/{_metric_safe(name)}"] = value
        for name in CORRUPTIONS:
            for level, value in metrics["corruption"][name].items():
                scalars[f"test_corruption/{name}/{level}"] = value
        scalars["test_corruption/clean"] = metrics["corruption"]["clean_accuracy"]
        mlflow.log_metrics(scalars, model_id=model_id, dataset=test_data)
        files = [args.metrics, args.confusion, args.figure, args.reliability, args.corruption]
        figures = [args.reliability_figure, args.mistakes_figure]
        tracking.log_artifacts([*files, *figures], artifact_path="eval")
    print(
        f"evaluate: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"on {metrics['num_test_images']} images; top-{metrics['top_k']} "
        f"{metrics['top5_accuracy']:.4f}, ECE {metrics['ece']:.4f}, under corruptions "
        f"{metrics['corruption_accuracy']:.4f}"
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
    parser.add_argument("--reliability", type=Path, required=True, help="reliability.csv")
    parser.add_argument(
        "--reliability-figure", type=Path, required=True, help="reliability diagram PNG"
    )
    parser.add_argument("--corruption", type=Path, required=True, help="corruption.csv")
    parser.add_argument(
        "--mistakes-figure", type=Path, required=True, help="confident mistakes PNG"
    )
    return run_stage(parser, _evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
