"""The performance page's GPU section, from the runs kept in docs/results/device/."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def section(folder: Path) -> list[str]:
    """Summaries that bench/accelerator_train.py printed on a GPU machine, kept as JSON lines."""
    summaries = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{") and '"summary": true' in line:
                summaries.append((path.name, json.loads(line)))
    if not summaries:
        empty = "No accelerator results recorded (docs/results/device/ is empty)."
        return ["## GPU", "", empty, ""]
    lines = [
        "## GPU (Keras 3 JAX backend)",
        "",
        "From `KERAS_BACKEND=jax python bench/accelerator_train.py DATA --seeds ... ` on a lent",
        "accelerator machine (raw lines in [device/](device/)). Rows with one width are the "
        "earlier",
        "resnet_small runs (the file names say whether online crop+flip was on), whose epoch 1",
        "includes XLA compilation; rows with widths are fast_cnn",
        "runs, compiled on untimed warm-up steps first (compile s) and scored with the saved",
        "model's test-time views. images/s is the median of the later epochs. Test split: a",
        "stratified 10% of the 50,000 CIFAR-10 training images; runs marked val (`--score val`,",
        "for choosing a recipe) trained on the pipeline's train split and scored its val split.",
        "",
        "| file | device | precision | width(s) | batch | epochs | compile s | train s "
        "| accuracy | images/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, summary in summaries:
        epochs = [
            json.loads(line)
            for line in (folder / name).read_text(encoding="utf-8").splitlines()
            if line.startswith('{"epoch"')
        ]
        # Files holding several runs keep only their summaries: no per-epoch speed there.
        speeds = [row["images_per_second"] for row in epochs[1:]]
        speed = f"{statistics.median(speeds):.0f}" if speeds else "—"
        widths = summary.get("widths", summary.get("width"))
        lines.append(
            f"| {name} | {summary['device_name']} | {summary['precision']} | {widths} "
            f"| {summary['batch_size']} | {summary['epochs']} "
            f"| {summary.get('compile_seconds', '—')} | {summary['train_seconds']} "
            f"| {_scored_accuracy(summary)} | {speed} |"
        )
    return [*lines, ""]


def _scored_accuracy(summary: dict) -> str:
    """The test accuracy, or the val accuracy marked as such (runs made to choose a recipe)."""
    if "final_test_accuracy" in summary:
        return str(summary["final_test_accuracy"])
    return f"{summary['final_val_accuracy']} (val)"
