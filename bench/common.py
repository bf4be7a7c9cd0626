"""What the bench scripts and the renderer share. A library, not a script: it has no main.

Where the results live (docs/results/), how a script runs a command, what a benchmark session
records (the machine, its processor features, the date and the commit), the lever studies of
bench/studies.yaml, and how their runs are read back from `dvc exp show --json`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import tarfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
DATA_STAGES = ("download", "preprocess", "validate", "augment")
# Processor flags that decide how fast a 2-core CPU trains (vector width, bfloat16 units).
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
_STUDIES = yaml.safe_load((REPO / "bench" / "studies.yaml").read_text(encoding="utf-8"))
SEED_RECIPE: dict[str, str] = _STUDIES["seed_recipe"]


def run(command: list[str], cwd: Path, env: dict[str, str], tail: int = 3000) -> tuple[float, str]:
    """Run `command`; its wall seconds and stdout. A failure stops the benchmark with its output."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{result.stdout[-tail:]}\n{result.stderr[-tail:]}"
        )
    return seconds, result.stdout


def bench_env() -> dict[str, str]:
    """The pipeline's environment (as the tests run it), importing imgclf from this checkout;
    the calling script has put tests/ and src/ on sys.path."""
    from support.project import pipeline_env

    return pipeline_env({"PYTHONPATH": str(REPO / "src")})


def train_json(project: Path, rev: str | None) -> dict:
    """reports/metrics/train.json of experiment rev (None: the workspace's)."""
    import dvc.api

    return json.loads(dvc.api.read("reports/metrics/train.json", repo=str(project), rev=rev))


def extract_subset(archive: Path, destination: Path, per_class: int) -> int:
    """The first per_class JPEGs of every class folder of archive, as train/<class>/*.jpg."""
    counts: dict[str, int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3 or parts[0] != "train":
                continue
            if counts.get(parts[1], 0) >= per_class:
                continue
            target = destination / "train" / parts[1] / parts[2]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            counts[parts[1]] = counts.get(parts[1], 0) + 1
    return sum(counts.values())


def _cpuinfo(key: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine() -> str:
    """The processor, cores, memory, system and Python a benchmark ran on."""
    cpu = _cpuinfo("model name") or platform.processor() or platform.machine()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {system}"


def session() -> dict[str, str]:
    """Where, when and from which code a benchmark measures: machine, processor features (of
    FEATURES, those the CPU has), date and commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    flags = set(_cpuinfo("flags").split())
    return {
        "machine": machine(),
        "features": " ".join(flag for flag in FEATURES if flag in flags)
        or "none of " + ", ".join(FEATURES),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
    }


@dataclass(frozen=True)
class Study:
    """One grid of bench/studies.yaml: recipe, rows, baseline row, what it ranks by, its files."""

    name: str
    title: str
    prefix: str  # experiment names start with it
    recipe: dict[str, str]
    rows: dict[str, tuple[str, dict[str, str]]]
    baseline: str
    score: str  # "test": eval.json accuracy; "val": the saved model's val accuracy (train.json)
    out: Path
    raw: Path
    plot: Path

    def experiment(self, row: str, seed: int, again: int = 0) -> str:
        """The experiment's name; `again`: the baseline run anew in that later session."""
        return f"{self.prefix}-{row}-s{seed}" + (f"-again{again}" if again else "")


def _study(name: str, spec: dict) -> Study:
    files = {key: RESULTS / spec[file] for key, file in (("out", "page"), ("raw", "raw"))}
    rows = {row: (text, dict(overrides)) for row, (text, overrides) in spec["rows"].items()}
    fields = {key: spec[key] for key in ("title", "prefix", "recipe", "baseline", "score")}
    return Study(name, rows=rows, plot=RESULTS / spec["plot"], **fields, **files)


STUDIES = {name: _study(name, spec) for name, spec in _STUDIES["studies"].items()}


def as_recorded(study: Study, meta: dict) -> Study:
    """`study` with the rows its saved runs were queued with (meta["rows"]), when recorded:
    a saved study keeps describing, and adding to, the rows it ran."""
    rows = meta.get("rows")
    if not rows:
        return study
    return replace(study, rows={name: (text, dict(over)) for name, (text, over) in rows.items()})


def _file_data(data: dict, section: str, suffix: str) -> dict:
    for path, content in (data.get(section) or {}).items():
        if path.endswith(suffix):
            return content.get("data") or {}
    return {}


def collect(shown: list, study: Study) -> dict[str, list[dict]]:
    """Row -> one record per finished seed (scores, wall time, params) from `dvc exp show --json`.

    `score` is what the study ranks by: the test accuracy (levers) or the saved model's
    validation accuracy (fast), which the test split never steers.
    """
    rows: dict[str, list[dict]] = {row: [] for row in study.rows}
    pattern = re.compile(
        rf"^{re.escape(study.prefix)}-(?P<row>.+?)-s(?P<seed>\d+)(?:-again(?P<again>\d+))?$"
    )
    revisions = [
        {"name": revision.get("name") or experiment.get("name"), **revision}
        for commit in shown
        for experiment in commit.get("experiments") or []
        for revision in experiment.get("revs") or []
    ]
    for revision in revisions:
        match = pattern.match(revision.get("name") or "")
        data = revision.get("data") or {}
        evaluation = _file_data(data, "metrics", "eval.json")
        if not match or match["row"] not in rows or "accuracy" not in evaluation:
            continue  # another study's, failed or unfinished: reported as missing
        train = _file_data(data, "metrics", "train.json")
        val = train.get("serving_val_accuracy", train.get("best_val_accuracy"))
        score = evaluation["accuracy"] if study.score == "test" else val
        if score is None:
            continue
        rows[match["row"]].append(
            {
                "experiment": revision["name"],
                "seed": int(match["seed"]),
                "again": int(match["again"] or 0),  # the baseline run anew in that session
                "score": float(score),
                "accuracy": float(evaluation["accuracy"]),
                "val_accuracy": None if val is None else float(val),
                "ece": evaluation.get("ece"),
                "train_seconds": float(train.get("train_seconds", math.nan)),
                "params": _file_data(data, "params", "params.yaml"),
            }
        )
    return rows
