"""Figures for reports: written as PNG with matplotlib's file-only backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgclf.evaluation.metrics import calibration_error


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """Row-normalised confusion matrix with counts, true class down, predicted across."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shares = matrix / totals
    size = max(4.0, 0.55 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(class_names) <= 20:
        for row in range(len(class_names)):
            for column in range(len(class_names)):
                colour = "white" if shares[row, column] > 0.5 else "black"
                axes.text(
                    column,
                    row,
                    int(matrix[row, column]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                )
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_reliability_diagram(bins: Sequence[dict], path: Path) -> None:
    """Accuracy against mean confidence per confidence bin (from reliability_bins), with ECE.

    Bars below the diagonal are over-confident bins; the lower panel shows each bin's share.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    low = np.array([row["bin_low"] for row in bins], dtype=float)
    width = np.array([row["bin_high"] - row["bin_low"] for row in bins], dtype=float)
    counts = np.array([row["count"] for row in bins], dtype=float)
    ece = calibration_error(bins)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    accuracy = np.array([row["accuracy"] for row in bins], dtype=float)
    confidence = np.array([row["confidence"] for row in bins], dtype=float)
    top.bar(low, accuracy, width, align="edge", edgecolor="black", label="accuracy")
    gap_style = {"color": "tab:red", "alpha": 0.3, "label": "gap to mean confidence"}
    top.bar(low, confidence - accuracy, width, bottom=accuracy, align="edge", **gap_style)
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability (ECE {ece:.3f})")
    top.legend(loc="upper left", fontsize=7)
    bottom.bar(low, counts / max(counts.sum(), 1), width, align="edge", color="grey")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_ylabel("share")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_image_gallery(images: np.ndarray, titles: Sequence[str], path: Path) -> None:
    """Images in a grid of up to 4 columns, each with its title (an empty set says so)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = max(1, min(4, len(images)))
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles, strict=False):
        if image.shape[-1] == 1:  # grey images (Fashion-MNIST, grey folders)
            axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            axis.imshow(image, interpolation="nearest")
        axis.set_title(title, fontsize=7)
    if len(images) == 0:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
