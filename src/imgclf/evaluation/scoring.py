"""Score a model on the test split: everything the evaluate stage reports, as pure values.

The model enters as its predict function (uint8 batch -> class probabilities), so this module
reads no file, runs no Keras and needs no MLflow; the stage writes and logs what it returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from imgclf.evaluation.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
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
# Passes over test images: all of them, then the corruption subset corrupted (its clean
# score comes from the first pass).
PASSES = 1 + len(CORRUPTIONS) * len(SEVERITIES)


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
    progress: bool | None = None,
) -> ModelScore:
    """Metrics, reliability, accuracy under corruptions and the confident mistakes.

    run_id (the training run's) is recorded in the metrics as mlflow_run_id. progress: a bar
    counting the passes over the images (each with the model's test-time views); None shows it
    only when stderr is a terminal, so DVC's logs and queue workers stay quiet.
    """
    with tqdm(total=PASSES, desc="evaluate", unit="pass", disable=_hidden(progress)) as bar:
        predict = _counting(predict, bar)
        probabilities = predict(images)
        metrics = classification_metrics(labels, probabilities, class_names)
        metrics["mlflow_run_id"] = run_id
        # Fifteen more passes (5 corruptions x 3 severities): a seeded subset keeps them quick
        # on a CPU. The subset's clean score reuses the first pass.
        chosen = subset_indices(len(labels), settings.corruption_images, settings.seed)
        scores = corruption_accuracy(
            predict, images[chosen], labels[chosen], settings.seed, clean=probabilities[chosen]
        )
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


def _hidden(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None hides the bar unless its stream (stderr) is a terminal."""
    return None if progress is None else not progress


def _counting(
    predict: Callable[[np.ndarray], np.ndarray], bar: tqdm
) -> Callable[[np.ndarray], np.ndarray]:
    """predict, moving the bar on by one pass per call."""

    def counted(batch: np.ndarray) -> np.ndarray:
        probabilities = predict(batch)
        bar.update()
        return probabilities

    return counted


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
