"""bench/common.py: what a benchmark session records, and the studies it reads from YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

common = pytest.importorskip("common")


def test_a_benchmark_session_names_this_checkout_s_commit() -> None:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=common.REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    session = common.session()
    assert session["commit"] == head and head
    assert session["machine"] == common.machine()
    assert len(session["date"]) == 10  # YYYY-MM-DD
    # The processor features it names are flags of this CPU, in FEATURES' order.
    named = session["features"].split()
    if not session["features"].startswith("none of"):
        assert named == [flag for flag in common.FEATURES if flag in named]


def test_the_studies_write_their_files_under_docs_results() -> None:
    levers, fast = common.STUDIES["levers"], common.STUDIES["fast"]
    assert levers.out == common.REPO / "docs/results/levers.md"
    assert fast.raw == common.REPO / "docs/results/ablation_exp_show.json"
    assert levers.recipe == common.SEED_RECIPE and levers.baseline in levers.rows
    assert fast.experiment("gelu", 1) == "fast-gelu-s1"
    assert levers.experiment("seed-recipe", 0, 2) == "study-seed-recipe-s0-again2"
    # Every -S value is a string, as dvc exp run receives it.
    for study in (levers, fast):
        for _, overrides in study.rows.values():
            assert all(isinstance(value, str) for value in overrides.values())
