"""The lever studies' figure: each row's accuracy against the baseline, per seed."""

from __future__ import annotations

import statistics
from pathlib import Path

from common import Study

from render.compare import baseline_of, mean_gain


def write_plot(
    rows: dict[str, list[dict]],
    path: Path,
    study: Study,
    session: dict[str, int] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    session = session or {}
    names = [row for row in study.rows if row != study.baseline and rows[row]]
    gains = [
        100 * (mean_gain(rows[row], baseline_of(rows[row], rows[study.baseline], session)) or 0.0)
        for row in names
    ]
    spreads = [
        100 * statistics.stdev(r["score"] for r in rows[row]) if len(rows[row]) > 1 else 0.0
        for row in names
    ]
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    colours = ["tab:green" if gain > 0 else "tab:red" for gain in gains]
    axes.barh(names, gains, xerr=spreads, color=colours, capsize=3)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.invert_yaxis()
    measure = "test accuracy" if study.score == "test" else "validation accuracy"
    axes.set_xlabel(f"{measure} change vs {study.baseline} (points; bars: ±1 std over seeds)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
