"""Test-set metrics as pure functions of labels and predicted probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def reliability_bins(
    labels: np.ndarray, probabilities: np.ndarray, num_bins: int = 15
) -> list[dict[str, float]]:
    """The non-empty confidence bins: edges, image count, mean confidence and accuracy.

    Images fall into num_bins equal-width bins by top-class probability (bin m holds
    ((m-1)/M, m/M]); these are the bars of a reliability diagram.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.digitize(confidence, edges[1:-1], right=True)
    rows = []
    for index in np.unique(bins):
        members = bins == index
        rows.append(
            {
                "bin_low": float(edges[index]),
                "bin_high": float(edges[index + 1]),
                "count": int(members.sum()),
                "confidence": float(confidence[members].mean()),
                "accuracy": float(correct[members].mean()),
            }
        )
    return rows


def expected_calibration_error(
    labels: np.ndarray, probabilities: np.ndarray, num_bins: int = 15
) -> float:
    """ECE: the confidence-weighted gap between accuracy and top-class confidence.

    ECE = sum over reliability_bins of (share of images) * |accuracy - mean confidence|.
    15 bins is the usual choice since Guo et al. (2017), so values compare across papers.
    """
    if len(labels) == 0:
        return 0.0
    return calibration_error(reliability_bins(labels, probabilities, num_bins))


def calibration_error(bins: Sequence[dict[str, float]]) -> float:
    """ECE from reliability_bins: the count-weighted mean of |accuracy - mean confidence|."""
    total = sum(row["count"] for row in bins)
    if total == 0:
        return 0.0
    return float(
        sum(row["count"] / total * abs(row["accuracy"] - row["confidence"]) for row in bins)
    )


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the k most probable.

    Ties rank like argmax does (the lower class index first), so k=1 is plain accuracy.
    """
    if len(labels) == 0:
        return 0.0
    truth = probabilities[np.arange(len(labels)), labels][:, None]
    classes = np.arange(probabilities.shape[1])
    ahead = (probabilities > truth) | ((probabilities == truth) & (classes < labels[:, None]))
    return float((ahead.sum(axis=1) < k).mean())


def confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` wrong predictions, the most confident first (ties: lower index)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:count]]


def per_class_scores(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each class from a confusion matrix; 0 where undefined."""
    true_positive = np.diag(matrix).astype(np.float64)
    support, predicted_count = matrix.sum(axis=1), matrix.sum(axis=0)
    zeros = np.zeros(len(true_positive))
    recall = np.divide(true_positive, support, out=zeros.copy(), where=support > 0)
    precision = np.divide(
        true_positive, predicted_count, out=zeros.copy(), where=predicted_count > 0
    )
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=zeros.copy(), where=denominator > 0)
    return precision, recall, f1


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict:
    """accuracy, top5_accuracy, macro_f1, loss (cross-entropy), ece and per_class_accuracy.

    top5_accuracy is top-k with k = min(5, classes); top_k says which k.
    """
    num_classes = len(class_names)
    matrix = confusion_matrix(labels, probabilities.argmax(axis=1), num_classes)
    true_positive = np.diag(matrix).astype(np.float64)
    _, recall, f1 = per_class_scores(matrix)
    # Like scikit-learn: a class counts when it occurs in the labels or in the predictions.
    present = (matrix.sum(axis=1) > 0) | (matrix.sum(axis=0) > 0)
    # Clipped so one confident mistake costs a large but finite amount, as Keras does.
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": float(true_positive.sum() / max(len(labels), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "loss": float(-np.log(picked).mean()),
        "top5_accuracy": top_k_accuracy(labels, probabilities, min(5, num_classes)),
        "top_k": min(5, num_classes),
        "ece": expected_calibration_error(labels, probabilities),
        "per_class_accuracy": {
            name: float(recall[index]) for index, name in enumerate(class_names)
        },
        "num_test_images": int(len(labels)),
    }
