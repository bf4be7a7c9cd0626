"""Score a model on the test split: everything the evaluate stage reports, as pure values.

The model enters as its predict function (uint8 batch -> class probabilities), so this module
reads no file, runs no Keras and needs no MLflow; the stage writes and logs what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from imgclf.evaluation.corruptions import (
    CORRUPTIONS,
    corruption_accuracy,
    corruption_table,
    subset_indices,
)
from imgclf.evaluation.metrics import (
    classification_metrics,
    confident_mistakes,
    confusion_matrix,
    reliability_bins,
)
from imgclf.params import EvaluateParams

# What evaluate logs into the training run as test_<name> (eval.json holds them all).
LOGGED_METRICS = ("accuracy", "top5_accuracy", "macro_f1", "loss", "ece", "corruption_accuracy")


@dataclass(frozen=True)
class ModelScore:
    """eval.json's metrics and the tables and images behind evaluate's plots and figures."""

    metrics: dict
    confusion: np.ndarray  # [true class, predicted class] counts
    confusion_rows: list[dict[str, str]]  # one row per test image, as DVC's template reads
    reliability: list[dict[str, float]]
    corruption: list[dict[str, float]]
    mistakes: np.ndarray  # indices of the most confident wrong predictions
    mistake_titles: list[str]


def score_model(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    settings: EvaluateParams,
    run_id: str,
) -> ModelScore:
    """Metrics, reliability, accuracy under corruptions and the confident mistakes.

    run_id (the training run's) is recorded in the metrics as mlflow_run_id.
    """
    probabilities = predict(images)
    metrics = classification_metrics(labels, probabilities, class_names)
    metrics["mlflow_run_id"] = run_id
    # Fifteen extra passes over the test images: a seeded subset keeps that quick on a CPU.
    chosen = subset_indices(len(labels), settings.corruption_images, settings.seed)
    scores = corruption_accuracy(predict, images[chosen], labels[chosen], settings.seed)
    table = corruption_table(scores)
    metrics["corruption_accuracy"] = scores.pop("mean_accuracy")
    metrics["corruption"] = {"num_images": len(chosen), "seed": settings.seed, **scores}
    predicted = probabilities.argmax(axis=1)
    wrong = confident_mistakes(labels, probabilities, settings.mistakes_shown)
    return ModelScore(
        metrics=metrics,
        confusion=confusion_matrix(labels, predicted, len(class_names)),
        confusion_rows=[
            {"actual": class_names[truth], "predicted": class_names[guess]}
            for truth, guess in zip(labels, predicted, strict=True)
        ],
        reliability=reliability_bins(labels, probabilities),
        corruption=table,
        mistakes=wrong,
        mistake_titles=[
            f"#{index} true {class_names[labels[index]]}\n"
            f"predicted {class_names[predicted[index]]} ({probabilities[index].max():.2f})"
            for index in wrong
        ],
    )


def metric_safe(name: str) -> str:
    """MLflow metric keys allow letters, digits, _ - . / and spaces; class names may hold more."""
    return re.sub(r"[^\w\-. /]", "_", name)


def logged_test_metrics(metrics: dict) -> dict[str, float]:
    """eval.json's numbers as the run's test_* metrics: overall, per class and per corruption."""
    scalars = {f"test_{key}": metrics[key] for key in LOGGED_METRICS}
    for name, value in metrics["per_class_accuracy"].items():
        scalars[f"test_class_accuracy/{metric_safe(name)}"] = value
    for name in CORRUPTIONS:
        for level, value in metrics["corruption"][name].items():
            scalars[f"test_corruption/{name}/{level}"] = value
    scalars["test_corruption/clean"] = metrics["corruption"]["clean_accuracy"]
    return scalars


def summary_line(metrics: dict) -> str:
    """The line evaluate prints: the headline numbers of eval.json."""
    return (
        f"evaluate: test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"on {metrics['num_test_images']} images; top-{metrics['top_k']} "
        f"{metrics['top5_accuracy']:.4f}, ECE {metrics['ece']:.4f}, under corruptions "
        f"{metrics['corruption_accuracy']:.4f}"
    )
