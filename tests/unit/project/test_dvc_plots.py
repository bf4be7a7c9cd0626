"""dvc.yaml's plots and metrics: each plot drawn once, metrics in git, the run cache kept."""

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


def _entry(entry) -> tuple[str, dict]:
    return next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})


def test_every_plotted_file_is_a_stage_output() -> None:
    written = [
        _entry(entry)[0]
        for stage in PIPELINE["stages"].values()
        for entry in [*stage.get("outs", []), *stage.get("metrics", [])]
    ]
    for path in _plotted_files():
        assert any(path == out or path.startswith(out + "/") for out in written), path


def test_every_output_but_metrics_stays_in_the_cache_so_the_run_cache_works() -> None:
    # DVC keeps no run cache for a stage with an uncached output that is not a metric or a
    # plot: a deleted model, or an experiment's params seen before, would train again.
    for name, stage in PIPELINE["stages"].items():
        uncached = [
            path
            for path, settings in map(_entry, stage.get("outs", []))
            if settings.get("cache", True) is False
        ]
        assert not uncached, f"stage {name}: {uncached} cache: false turns off its run cache"


def test_metrics_are_kept_in_git() -> None:
    for name, stage in PIPELINE["stages"].items():
        for path, settings in map(_entry, stage.get("metrics", [])):
            assert settings.get("cache") is False, f"{name}: {path} should be cache: false"
