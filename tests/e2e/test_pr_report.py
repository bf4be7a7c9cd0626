"""scripts/pr_report.py on a real two-commit git + DVC repository (a trivial stage, no training)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support.project import REPO_ROOT, run

pytestmark = pytest.mark.slow

# A one-stage pipeline shaped like imgclf's: a metrics JSON, a per-epoch CSV and a figure, all
# kept in git (cache: false), with top-level plots as dvc.yaml declares them.
STAGE = """\
import csv, json
from pathlib import Path
import yaml
from PIL import Image
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
Path("reports/plots").mkdir(parents=True, exist_ok=True)
Path("reports/figures").mkdir(parents=True, exist_ok=True)
json.dump({"accuracy": round(0.5 + lr, 4)}, open("reports/metrics.json", "w"))
with open("reports/plots/history.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["epoch", "accuracy", "val_accuracy"])
    for epoch in (1, 2):
        writer.writerow([epoch, lr * epoch, lr * epoch / 2])
Image.new("RGB", (8, 8), (int(lr * 255), 0, 0)).save("reports/figures/confusion_matrix.png")
"""
DVC_YAML = """\
stages:
  score:
    cmd: python stage.py
    deps: [stage.py]
    params: [train.lr]
    metrics:
      - reports/metrics.json:
          cache: false
    plots:
      - reports/plots/history.csv:
          cache: false
      - reports/figures/confusion_matrix.png:
          cache: false
plots:
  - Accuracy:
      x: epoch
      y:
        reports/plots/history.csv: [accuracy, val_accuracy]
  - reports/figures/confusion_matrix.png
"""


def commit_run(repo: Path, learning_rate: float, message: str) -> None:
    (repo / "params.yaml").write_text(f"train:\n  lr: {learning_rate}\n", encoding="utf-8")
    run(["dvc", "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", message], repo)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pr-report")
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.invalid"],
        ["git", "config", "user.name", "imgclf tests"],
        ["dvc", "init", "-q"],
    ):
        run(command, path)
    (path / "stage.py").write_text(STAGE, encoding="utf-8")
    (path / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")
    commit_run(path, 0.1, "base")
    commit_run(path, 0.3, "branch: a higher learning rate")
    return path


def _row(markdown: str, name: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_summary_shows_changed_params_metrics_plots_and_figures(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "pr-report"
    script = str(REPO_ROOT / "scripts" / "pr_report.py")
    result = run([sys.executable, script, "--base", "HEAD~1", "--out", str(out)], repo)
    markdown = result.stdout
    assert (out / "report.md").read_text(encoding="utf-8") == markdown
    assert _row(markdown, "train.lr") == ["params.yaml", "train.lr", "0.1", "0.3"]
    assert _row(markdown, "accuracy")[1:5] == ["accuracy", "0.6", "0.8", "0.2"]
    # The training curves of both revisions, as a chart GitHub renders.
    assert "```mermaid\nxychart-beta" in markdown
    assert "`val_accuracy (HEAD~1)`" in markdown and "`val_accuracy (workspace)`" in markdown
    assert 'title "Accuracy"' in markdown  # both revisions on one chart: the same epochs
    assert 'title "reports/plots/history.csv' not in markdown  # DVC's default plot: left out
    # The figure of each revision, copied next to report.md and linked relatively.
    links = [line for line in markdown.splitlines() if line.startswith("![")]
    assert len(links) == 2
    for link in links:
        target = link[link.index("](") + 2 : -1]
        assert target.startswith("plots/") and (out / target).is_file()


def test_summary_without_changes_says_so(repo: Path) -> None:
    script = str(REPO_ROOT / "scripts" / "pr_report.py")
    markdown = run([sys.executable, script, "--base", "HEAD"], repo).stdout
    assert "_No params changed against `HEAD`._" in markdown
    assert "_No metrics changed against `HEAD`._" in markdown
    assert "pass --out or --image-url" in markdown
