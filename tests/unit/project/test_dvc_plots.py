"""dvc.yaml's plots and metrics: each plot drawn once, and what a commit keeps for `dvc * diff`."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))


def _plotted_files() -> set[str]:
    files = set()
    for plot in PIPELINE["plots"]:
        if isinstance(plot, dict):  # a named plot: the files on its y axis
            files.update(next(iter(plot.values()))["y"])
        else:  # an image, drawn as it is
            files.add(plot)
    return files


def test_no_stage_declares_a_plot_the_top_level_section_draws() -> None:
    # A stage's `plots:` entry is drawn again with DVC's default settings beside the top-level
    # one: every plot is declared once, in the top-level section.
    for name, stage in PIPELINE["stages"].items():
        assert not stage.get("plots"), f"stage {name} declares plots: move them to plots:"


def test_every_plotted_file_is_a_stage_output_kept_in_git() -> None:
    kept = {}
    for stage in PIPELINE["stages"].values():
        for entry in [*stage.get("outs", []), *stage.get("metrics", [])]:
            path, settings = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            kept[path] = settings.get("cache", True) is False
    for path in _plotted_files():
        owner = path if path in kept else next((out for out in kept if path.startswith(out)), None)
        assert owner is not None, f"{path} is plotted but no stage writes it"
        if not path.endswith(".png"):  # figures stay in DVC's cache; data goes to git
            assert kept[owner], f"{owner} should be cache: false, so dvc plots diff needs no remote"


def test_metrics_are_kept_in_git() -> None:
    for name, stage in PIPELINE["stages"].items():
        for entry in stage.get("metrics", []):
            path, settings = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            assert settings.get("cache") is False, f"{name}: {path} should be cache: false"
