#!/usr/bin/env python3
"""Markdown report of what a branch changes in the pipeline, for a pull request's job summary.

    python scripts/pr_report.py --base origin/main --out pr-report >> "$GITHUB_STEP_SUMMARY"

Run it in the branch's checkout after `dvc pull` and `dvc repro`. It prints:
- `dvc params diff BASE --md`: the params the branch changes;
- `dvc metrics diff BASE --md`: the metrics that moved (train.json, eval.json);
- `dvc plots diff BASE`: each configured plot with numbers on both axes (the training curves,
  the corruption and reliability curves) as a Mermaid chart, which GitHub renders in markdown,
  the branch and the base as separate lines (separate charts when their epochs differ); each
  image plot (the figures the stages write) as an image. GitHub shows neither local files
  nor data: URIs in a summary: with --out DIR the images are written under DIR/plots and
  linked relatively from DIR/report.md (the artifact a reviewer downloads), and with
  --image-url PREFIX they are linked as PREFIX/NAME, where the workflow publishes DIR/plots.

The base needs its dvc.lock (and the metrics or plots it names) in git or in the DVC cache:
commit dvc.lock with every change that re-ran stages, and push the outputs (`dvc push`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

DATA = "<DVC_METRIC_DATA>"
X_LABEL = "<DVC_METRIC_X_LABEL>"
Y_LABEL = "<DVC_METRIC_Y_LABEL>"


def dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True)


def _failure(command: str, result: subprocess.CompletedProcess) -> str:
    reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return f"_`{command}` failed (exit {result.returncode}): {reason}_"


def diff_table(kind: str, base: str, cwd: Path) -> str:
    """`dvc params|metrics diff BASE --md`, or a line saying why there is none."""
    result = dvc([kind, "diff", base, "--md"], cwd)
    if result.returncode != 0:
        return _failure(f"dvc {kind} diff {base}", result)
    table = result.stdout.strip()
    # With nothing changed, dvc prints an empty table: its header and separator lines only.
    return table if len(table.splitlines()) > 2 else f"_No {kind} changed against `{base}`._"


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _xychart(title: str, x_name: str, series: dict[str, dict[float, float]]) -> str:
    xs = sorted(next(iter(series.values())))
    lines = ["```mermaid", "xychart-beta", f'    title "{title}"']
    lines.append(f'    x-axis "{x_name}" [{", ".join(f"{x:g}" for x in xs)}]')
    for points in series.values():
        lines.append(f"    line [{', '.join(f'{points[x]:.4g}' for x in xs)}]")
    lines.append("```")
    legend = "; ".join(f"line {n}: `{name}`" for n, name in enumerate(series, start=1))
    return "\n".join(lines) + "\n\n" + legend


def mermaid_charts(title: str, x_name: str, rows: list[dict], y_name: str) -> list[str]:
    """xycharts of a plot's rows, a line per (field, revision); none when not numeric.

    An xychart has one x-axis and no gaps: when the revisions' x values differ (the base ran
    more epochs), each revision gets its own chart rather than invented points.
    """
    series: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        x = _number(row.get(x_name))
        y = _number(row.get("dvc_inferred_y_value", row.get(y_name)))
        if x is None or y is None:
            return []  # a confusion matrix or other categorical plot: not a line chart
        revision = row.get("rev", "workspace")
        # One file's fields come as `field`; a plot over several files (DVCLive's, one per
        # metric) names each row's source as `filename::field`.
        field = row.get("field") or row.get("filename::field", "").rpartition("::")[2] or y_name
        series[revision][f"{field} ({revision})"][x] = y
    flat = {name: points for lines in series.values() for name, points in lines.items()}
    if not flat:
        return []
    if len({tuple(sorted(points)) for points in flat.values()}) == 1:
        return [_xychart(title, x_name, flat)]
    return [
        _xychart(f"{title} ({revision})", x_name, dict(lines)) for revision, lines in series.items()
    ]


def plots_sections(
    base: str, cwd: Path, images_dir: Path, link_prefix: str | None
) -> tuple[list[str], list[str]]:
    """(charts, images) from `dvc plots diff BASE --json --split`."""
    result = dvc(["plots", "diff", base, "--json", "--split", "-o", str(images_dir)], cwd)
    if result.returncode != 0:
        failed = _failure(f"dvc plots diff {base}", result)
        return [failed], [failed]
    charts, images = [], []
    plots = json.loads(result.stdout).get("data", {})
    # A CSV listed only under a stage's `plots:` comes out as DVC's default plot (its last
    # column against the row number); with plots configured in dvc.yaml's top-level `plots:`
    # (titles, x: epoch), those defaults only repeat them badly.
    configured = any(Path(plot_id).suffix == "" for plot_id in plots)
    for plot_id, entries in plots.items():
        default = Path(plot_id).suffix in (".csv", ".tsv", ".json", ".yaml")
        for entry in entries:
            if entry.get("type") == "image":
                url = Path(entry["url"])
                revision = (entry.get("revisions") or ["workspace"])[0]
                if link_prefix is None:
                    images.append(f"- `{plot_id}` ({revision}): pass --out or --image-url")
                    continue
                target = f"{link_prefix.rstrip('/')}/{url.name}"
                images.append(f"**{plot_id}** ({revision})\n\n![{plot_id}]({target})")
            elif entry.get("type") == "vega" and not (configured and default):
                anchors = entry.get("anchor_definitions", {})
                rows = anchors.get(DATA) or []
                x_name = anchors.get(X_LABEL, "step")
                y_name = anchors.get(Y_LABEL, "")
                charts.extend(mermaid_charts(plot_id, x_name, rows, y_name))
    return charts or ["_No line plots._"], images or ["_No image plots._"]


def build_report(base: str, cwd: Path, out: Path | None, image_url: str | None) -> str:
    with tempfile.TemporaryDirectory(prefix="pr-report-") as scratch:
        images_dir = out / "plots" if out is not None else Path(scratch)
        # Relative links from DIR/report.md unless the images are published elsewhere.
        prefix = image_url or ("plots" if out is not None else None)
        charts, images = plots_sections(base, cwd, images_dir.resolve(), prefix)
    sections = [
        f"## Pipeline changes against `{base}`",
        "### Params (`dvc params diff`)",
        diff_table("params", base, cwd),
        "### Metrics (`dvc metrics diff`)",
        diff_table("metrics", base, cwd),
        "### Plots (`dvc plots diff`)",
        *charts,
        "### Figures",
        *images,
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--out", type=Path, help="write DIR/report.md and DIR/plots/ too")
    parser.add_argument("--image-url", help="URL prefix where DIR/plots/ is published")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the checkout")
    args = parser.parse_args(argv)
    report = build_report(args.base, args.project, args.out, args.image_url)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
