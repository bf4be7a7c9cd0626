"""The lever studies: one change at a time from a recipe, as a `dvc exp run --queue` grid.

Two studies: `levers` (the default) changes the seed recipe one lever at a time and ranks by
test accuracy (docs/results.md, kept reproducible as it was run); `fast` is the ablation of
the shipped fast recipe, one lever removed or replaced by its plain alternative at a time,
ranked by the saved model's validation accuracy with the test accuracy beside it
(docs/ablation.md). Runs every row for every seed as a queued DVC experiment in a scratch copy
of this repository on a class-folder data set (its carved, stratified test split), saves
`dvc exp show --json` next to the report, and writes the page and its plot from that JSON
alone. The reports are generated: do not edit them by hand.

    python bench/run_study.py ../shared/datasets/cifar10-train-jpg.tar.gz --seeds 0 1
    python bench/run_study.py DATA --study fast --seeds 0 1 2
    python bench/run_study.py --report-only [--study fast]   # the page from the saved JSON
    python bench/run_study.py DATA --study fast --seeds 0 1 2 --add-missing   # fill the gaps
    python bench/run_study.py DATA --study fast --seeds 0 1 2 --replace       # start over

`--add-missing` runs only the row x seed experiments the saved JSON lacks and adds them to it;
the page then lists them apart (machine, date, commit) and marks the paired differences that
compare runs from two different sessions.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from run_benchmarks import SEED_RECIPE  # noqa: E402
from run_benchmarks import session as bench_session  # noqa: E402

OUT = REPO / "docs" / "results.md"
RAW = REPO / "docs" / "results" / "exp_show.json"
PLOT = REPO / "docs" / "results" / "levers.png"
BASELINE = "seed-recipe"

# Row name (also part of the experiment name) -> (what changes, the -S overrides on the recipe).
ROWS: dict[str, tuple[str, dict[str, str]]] = {
    BASELINE: ("seed recipe (seed_cnn, Adam 1e-3, cross-entropy, 10 epochs, batch 64)", {}),
    "label-smoothing": ("label smoothing 0.1", {"loss.label_smoothing": "0.1"}),
    "focal": ("focal loss (gamma 2, alpha 0.25)", {"loss.name": "focal"}),
    "l2": ("L2 5e-4 on every kernel", {"reg.l2": "0.0005"}),
    "weight-decay": (
        "decoupled weight decay 0.05 (AdamW)",
        {"optimizer.name": "adamw", "optimizer.weight_decay": "0.05"},
    ),
    "dropout": ("dropout 0.3 before the classifier", {"reg.dropout": "0.3"}),
    "sgd-nesterov-cosine": (
        "SGD 0.03, Nesterov momentum 0.9, cosine schedule (instead of Adam, constant)",
        {
            "optimizer.name": "sgd",
            "optimizer.lr": "0.03",
            "optimizer.momentum": "0.9",
            "optimizer.nesterov": "true",
            "optimizer.schedule": "cosine",
        },
    ),
    "crop-flip": ("online random crop (4 px) + flip", {"augment.online_crop_flip": "true"}),
    "cutout": ("online cutout, half the side", {"augment.online_cutout_fraction": "0.5"}),
    "color-jitter": ("online colour jitter 0.3", {"augment.online_color_jitter": "0.3"}),
    "offline-copies": (
        "1 stored augmented copy per image (flip, rotation, shift, crop)",
        {"augment.copies": "1"},
    ),
    "mixup": ("MixUp, alpha 0.2", {"augment.mixup_alpha": "0.2"}),
    "cutmix": ("CutMix, alpha 1.0", {"augment.cutmix_alpha": "1.0"}),
}

# The ablation of the shipped defaults (docs/fast-recipe.md): each row removes one lever or puts
# back its plain alternative. Fewer corruption images only shorten evaluate, not training.
FAST_RECIPE = {"evaluate.corruption_images": "500"}
FAST_ROWS: dict[str, tuple[str, dict[str, str]]] = {
    "default": ("the shipped defaults (fast_cnn, params.yaml)", {}),
    "gelu": ("GELU instead of ReLU (the records' activation)", {"model.activation": "gelu"}),
    "no-whitening": ("no patch-whitening layer", {"model.whitening": "false"}),
    "progressive": (
        "the first 5 of 8 epochs on 24 px images (progressive resizing)",
        {"augment.progressive_side": "24"},
    ),
    "no-dirac": ("random init instead of identity", {"model.dirac_init": "false"}),
    "plain-batchnorm": (
        "Keras' BatchNorm (momentum 0.99, eps 1e-3, scale trained, shift lr x1)",
        {
            "model.batchnorm_momentum": "0.99",
            "model.batchnorm_epsilon": "0.001",
            "model.batchnorm_scale": "true",
            "optimizer.batchnorm_lr_multiplier": "1",
        },
    ),
    "no-lookahead": ("no lookahead averaging", {"optimizer.lookahead_every": "0"}),
    "random-flip": ("random flip instead of alternating", {"augment.online_flip": "random"}),
    "no-tta": ("no test-time augmentation", {"evaluate.tta": "none"}),
    "adam": (
        "Adam 3e-3 instead of Nesterov SGD",
        {"optimizer.name": "adam", "optimizer.lr": "0.003"},
    ),
    "no-label-smoothing": ("label smoothing 0 (instead of 0.2)", {"loss.label_smoothing": "0"}),
    "focal": ("focal loss, label smoothing 0.2 kept", {"loss.name": "focal"}),
    "poly1": ("Poly-1 loss, label smoothing 0.2 kept", {"loss.name": "poly1"}),
}


@dataclass(frozen=True)
class Study:
    """One grid: its recipe, rows, baseline row, what it ranks by, and where it writes."""

    name: str
    title: str
    recipe: dict[str, str]
    rows: dict[str, tuple[str, dict[str, str]]]
    baseline: str
    score: str  # "test": eval.json accuracy; "val": the saved model's val accuracy (train.json)
    out: Path
    raw: Path
    plot: Path

    @property
    def prefix(self) -> str:
        """Experiment names start with it (the levers study keeps its first runs' names)."""
        return "study" if self.name == "levers" else self.name

    def experiment(self, row: str, seed: int, again: int = 0) -> str:
        """The experiment's name; `again`: the baseline run anew in that later session."""
        return f"{self.prefix}-{row}-s{seed}" + (f"-again{again}" if again else "")


LEVERS = Study(
    "levers",
    "Which levers help: one change at a time from the seed recipe",
    SEED_RECIPE,
    ROWS,
    BASELINE,
    "test",
    OUT,
    RAW,
    PLOT,
)
FAST = Study(
    "fast",
    "The fast recipe's ablation: one lever off at a time from the shipped defaults",
    FAST_RECIPE,
    FAST_ROWS,
    "default",
    "val",
    REPO / "docs" / "ablation.md",
    REPO / "docs" / "results" / "ablation_exp_show.json",
    REPO / "docs" / "results" / "ablation.png",
)
STUDIES = {study.name: study for study in (LEVERS, FAST)}
DATA_STAGES = ("download", "preprocess", "validate", "augment")


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def experiment_name(row: str, seed: int) -> str:
    return LEVERS.experiment(row, seed)


def run_grid(
    data: Path,
    runs: list[tuple[str, int]],
    workdir: Path,
    jobs: int,
    study: Study = LEVERS,
    names: list[str] | None = None,
) -> list:
    """Queue every (row, seed) of `runs` (named `names`, else by the study), run the queue,
    return `dvc exp show --json`."""
    from support.project import make_project, pipeline_env

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    project = make_project(workdir, {"data": {"source": "folder", "path": str(data.resolve())}})
    # The stages run the project's own copy of the code, whatever imgclf is installed.
    env = pipeline_env({"PYTHONPATH": str(project / "src")})
    for stage in DATA_STAGES:
        _run(["dvc", "repro", "--single-item", stage], project, env)
    # Queued experiments start from the last commit: it must hold the data stages' lock.
    _run(["git", "add", "dvc.lock"], project, env)
    _run(["git", "commit", "-qm", "data stages for the study"], project, env)
    for index, (row, seed) in enumerate(runs):
        overrides = study.rows[row][1]
        name = names[index] if names else study.experiment(row, seed)
        command = ["dvc", "exp", "run", "--queue", "--name", name]
        for key, value in {**study.recipe, **overrides, "train.seed": str(seed)}.items():
            command += ["-S", f"{key}={value}"]
        _run(command, project, env)
    started = time.monotonic()
    # The queue's workers outlive `dvc queue start` and would hold captured pipes open.
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(jobs)],
        cwd=project,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    total = len(runs)
    while True:
        time.sleep(30)
        status = _run(["dvc", "queue", "status"], project, env)
        pending = sum(word in status for word in ("Queued", "Running"))
        counts = {word: status.count(word) for word in ("Queued", "Running", "Success", "Failed")}
        minutes = (time.monotonic() - started) / 60
        print(f"[{minutes:5.1f} min] {counts} of {total}", flush=True)
        if not pending:
            break
    if counts["Failed"]:
        print(f"warning: {counts['Failed']} experiments failed; see `dvc queue logs`", flush=True)
    return json.loads(_run(["dvc", "exp", "show", "--json"], project, env))


# --- From `dvc exp show --json` to the report ------------------------------------------------


def _revisions(shown: list) -> list[dict]:
    """Every experiment revision in the JSON, with its name and data."""
    found = []
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                found.append({"name": revision.get("name") or experiment.get("name"), **revision})
    return found


def _file_data(data: dict, section: str, suffix: str) -> dict:
    for path, content in (data.get(section) or {}).items():
        if path.endswith(suffix):
            return content.get("data") or {}
    return {}


def missing_runs(
    shown: list, rows: list[str], seeds: list[int], study: Study = LEVERS
) -> list[tuple[str, int]]:
    """The (row, seed) pairs of the grid that have no finished run in `shown`, seeds first."""
    found = collect(shown, study)
    have = {(row, record["seed"]) for row, records in found.items() for record in records}
    return [(row, seed) for seed in seeds for row in rows if (row, seed) not in have]


def add_runs(saved: dict, shown: list, addition: dict) -> dict:
    """The saved study with a later session's `dvc exp show --json` and its details added.

    Rows are read from every commit entry of the list, so the later runs are appended as they
    are; `addition` (machine, date, commit, jobs, experiments) says where they came from.
    """
    meta = {**saved["meta"], "additions": [*saved["meta"].get("additions", []), addition]}
    return {"meta": meta, "exp_show": [*saved["exp_show"], *shown]}


def collect(shown: list, study: Study = LEVERS) -> dict[str, list[dict]]:
    """Row -> one record per finished seed (accuracies, wall time, params) from the JSON.

    `score` is what the study ranks by: the test accuracy (levers) or the saved model's
    validation accuracy (fast), which the test split never steers.
    """
    rows: dict[str, list[dict]] = {row: [] for row in study.rows}
    pattern = re.compile(
        rf"^{re.escape(study.prefix)}-(?P<row>.+?)-s(?P<seed>\d+)(?:-again(?P<again>\d+))?$"
    )
    for revision in _revisions(shown):
        match = pattern.match(revision.get("name") or "")
        data = revision.get("data") or {}
        if not match or match["row"] not in rows:
            continue
        evaluation = _file_data(data, "metrics", "eval.json")
        train = _file_data(data, "metrics", "train.json")
        if "accuracy" not in evaluation:
            continue  # failed or unfinished: reported as missing
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


def _mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _gain(records: list[dict], baseline: list[dict]) -> float | None:
    if not records or not baseline:
        return None
    mean = statistics.mean
    return mean(r["score"] for r in records) - mean(r["score"] for r in baseline)


def _paired(records: list[dict], baseline: list[dict], session: dict[str, int]) -> str:
    """Each seed's change against the recipe run with the same seed (same init, same order).

    `session` maps an experiment to the session that ran it (0: the first); a pair of runs
    from two sessions (another machine, maybe other code) is marked with a dagger.
    """
    recipe = {record["seed"]: record for record in baseline}
    pairs = []
    for r in records:
        if r["seed"] not in recipe:
            continue
        base = recipe[r["seed"]]
        apart = session.get(r["experiment"], 0) != session.get(base["experiment"], 0)
        pairs.append(
            f"s{r['seed']} {100 * (r['score'] - base['score']):+.2f}{'†' if apart else ''}"
        )
    return ", ".join(pairs) or "—"


def _sessions(meta: dict) -> dict[str, int]:
    """Experiment name -> the session that added it (1, 2, ...; absent: the first run).

    An addition that only ran the baseline anew for an earlier session's rows (its
    `baseline_for`, on the same machine) counts as that session.
    """
    return {
        name: addition.get("baseline_for", index)
        for index, addition in enumerate(meta.get("additions", []), start=1)
        for name in addition["experiments"]
    }


def _baseline_of(records: list[dict], baseline: list[dict], session: dict[str, int]) -> list[dict]:
    """The baseline runs `records` compare with: those a later session ran anew
    (`--baseline-again`) when every record comes from that session, else the first ones."""
    sessions = {session.get(record["experiment"], 0) for record in records}
    again = [b for b in baseline if b["again"] and session.get(b["experiment"], 0) in sessions]
    if len(sessions) == 1 and again:
        return again
    return [b for b in baseline if not b["again"]]


def _verdict(records: list[dict], baseline: list[dict]) -> str:
    """Helped / hurt only when the gap exceeds both rows' seed-to-seed spread."""
    gain = _gain(records, baseline)
    if gain is None or len(records) < 2 or len(baseline) < 2:
        return "not enough seeds"
    spread = max(
        statistics.stdev(r["score"] for r in records),
        statistics.stdev(r["score"] for r in baseline),
    )
    if gain > 2 * spread and gain > 0.002:
        return "helped"
    if gain < -2 * spread and gain < -0.002:
        return "hurt"
    return "no clear effect"


def write_plot(
    rows: dict[str, list[dict]],
    path: Path,
    study: Study = LEVERS,
    session: dict[str, int] | None = None,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    session = session or {}
    names = [row for row in study.rows if row != study.baseline and rows[row]]
    gains = [
        100 * (_gain(rows[row], _baseline_of(rows[row], rows[study.baseline], session)) or 0.0)
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


def _middle_column(records: list[dict], study: Study) -> str:
    """The column between the paired differences and the seconds: ECE (levers) or the test
    accuracy (fast, ranked by validation)."""
    if study.score == "test":
        return _mean_std([float(r["ece"]) for r in records if r.get("ece") is not None], 3)
    return _mean_std([r["accuracy"] for r in records])


def write_report(
    shown: list,
    meta: dict,
    out: Path | None = None,
    plot: Path | None = None,
    study: Study = LEVERS,
) -> None:
    out, plot = out or study.out, plot or study.plot
    collected = collect(shown, study)
    session = _sessions(meta)
    compared = {  # the baseline runs each row is measured against
        row: _baseline_of(collected[row], collected[study.baseline], session) for row in study.rows
    }
    # The baseline row shows its first runs; runs anew get rows of their own under it.
    rows = {**collected, study.baseline: compared[study.baseline]}
    seeds = sorted({record["seed"] for records in rows.values() for record in records})
    flag = "" if study is LEVERS else f" --study {study.name}"
    ranked_by = (
        "test accuracy on the carved test split"
        if study.score == "test"
        else "the saved model's validation accuracy (`serving_val_accuracy` in train.json: with "
        "its test-time views), the test accuracy beside it deciding nothing"
    )
    lines = [
        f"# {study.title}",
        "",
        "Generated by `bench/run_study.py` from `dvc exp show --json` (saved in",
        f"[results/{study.raw.name}](results/{study.raw.name})); do not edit by hand. "
        "Reproduce with:",
        "",
        "```bash",
        f"python bench/run_study.py {meta.get('data', '<class-folder data>')}{flag} "
        f"--seeds {' '.join(map(str, seeds))} --replace",
        f"python bench/run_study.py --report-only{flag}   # this page from the saved JSON",
        "```",
        "",
        f"Data: {meta.get('data_description', 'see the command')}. "
        f"Machine: {meta.get('machine', 'unknown')}. Date: {meta.get('date', 'unknown')}. "
        f"Code: commit {meta.get('commit', 'unknown')}.",
        "",
        f"Every row is the {study.baseline} row with one change, queued with `dvc exp run "
        f"--queue` and run by `dvc queue start -j {meta.get('jobs', 1)}`; ranked by "
        f"{ranked_by}; mean ± standard deviation over the seeds (`train.seed`). Train seconds "
        "is the `fit` wall time from train.json. A verdict of helped/hurt needs the gap to "
        "exceed twice the larger seed-to-seed spread of the two rows; the paired column "
        f"compares each seed with the {study.baseline} run of the same seed (same initial "
        "weights and batch order).",
        "",
    ]
    if study.score == "test":
        lines += [
            "| row | change | seeds | test accuracy | Δ vs recipe (points) | Δ per seed (paired) "
            "| ECE | train seconds | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    else:
        lines += [
            "| row | change | seeds | val accuracy | Δ val (points) | Δ val per seed (paired) "
            "| test accuracy | train seconds | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    again_rows = {}  # session number -> its runs of the baseline anew
    reruns = [record for record in collected[study.baseline] if record["again"]]
    for number, addition in enumerate(meta.get("additions", []), start=1):
        names = set(addition["experiments"])
        if again := [r for r in reruns if r["experiment"] in names]:
            again_rows[number] = sorted(again, key=lambda record: record["seed"])
    for row, (description, _) in study.rows.items():
        records = sorted(rows[row], key=lambda record: record["seed"])
        baseline = compared[row]
        gain = _gain(records, baseline)
        is_base = row == study.baseline
        middle = _middle_column(records, study)
        lines.append(
            f"| {row} | {description} | {len(records)} | "
            f"{_mean_std([r['score'] for r in records])} | "
            f"{'—' if gain is None or is_base else f'{100 * gain:+.2f}'} | "
            f"{'—' if is_base else _paired(records, baseline, session)} | "
            f"{middle} | {_mean_std([r['train_seconds'] for r in records], 0)} | "
            f"{'—' if is_base else _verdict(records, baseline)} |"
        )
        if is_base:
            for number, again in again_rows.items():
                addition = meta["additions"][number - 1]
                served = session[again[0]["experiment"]]
                lines.append(
                    f"| {study.baseline}, again | the same, run anew on {addition['machine']}, "
                    f"{addition['date']}, for the rows added in session {served}, which compare "
                    f"with these runs | {len(again)} | "
                    f"{_mean_std([r['score'] for r in again])} | — | — | "
                    f"{_middle_column(again, study)} | "
                    f"{_mean_std([r['train_seconds'] for r in again], 0)} | — |"
                )

    def gain_of(row: str) -> float | None:
        return _gain(rows[row], compared[row])

    def verdict_of(row: str) -> str:
        return _verdict(rows[row], compared[row])

    ranked = sorted(
        (row for row in study.rows if row != study.baseline and gain_of(row) is not None),
        key=gain_of,
        reverse=True,
    )
    helped = [row for row in ranked if verdict_of(row) == "helped"]
    not_helped = [row for row in ranked if verdict_of(row) != "helped"]
    lines += ["", f"![accuracy change per row](results/{plot.name})", "", "## Summary", ""]
    if ranked:
        best = ", ".join(f"{row} ({100 * gain_of(row):+.2f} points)" for row in ranked[:3])
        lines.append(f"- Three best single changes by mean gain: {best}.")
    if study is LEVERS:
        lines.append(f"- Helped beyond the seed spread: {', '.join(helped) or 'none'}.")
        lines.append(
            f"- Did not help (no clear effect or hurt): {', '.join(not_helped) or 'none'}."
        )
        lines.append(
            "- The shipped fast recipe, one lever removed at a time: [ablation.md](ablation.md)."
        )
    else:  # an ablation: a row that hurts is a lever that earns its place
        verdicts = {row: verdict_of(row) for row in ranked}
        hurt = [row for row in ranked if verdicts[row] == "hurt"]
        unclear = [row for row in ranked if verdicts[row] == "no clear effect"]
        few = [row for row in ranked if verdicts[row] == "not enough seeds"]
        lines += [
            "- The default's lever earns its place against these rows (removing or replacing "
            f"it cost more than the seed spread): {', '.join(reversed(hurt)) or 'none'}.",
            f"- No clear effect at this budget: {', '.join(unclear) or 'none'}.",
            f"- Better without (the replacement helped): {', '.join(helped) or 'none'}.",
            f"- Too few seeds to say: {', '.join(few) or 'none'}.",
        ]
    missing = [row for row in study.rows if len(rows[row]) < len(seeds)]
    if missing:
        lines.append(f"- Missing seeds (failed or not run): {', '.join(missing)}.")
    lines += ["", *meta.get("notes", [])]
    for number, addition in enumerate(meta.get("additions", []), start=1):
        lines += [
            "",
            f"Added later with `--add-missing`: {', '.join(addition['experiments'])}; run on "
            f"{addition['machine']}, {addition['date']}, commit {addition['commit']}, "
            f"`dvc queue start -j {addition['jobs']}`. A paired difference marked † compares "
            "runs from two sessions (another machine, maybe other code): the same seed gives "
            "the same initial weights and batch order only where the code drew them the same "
            "way, and the arithmetic rounds differently on another CPU, so read it as unpaired.",
        ]
        if number in again_rows:
            served = session[again_rows[number][0]["experiment"]]
            rows_of = "its own rows" if served == number else f"the rows of session {served}"
            lines[-1] += (
                f" It ran the {study.baseline} anew (`--baseline-again`, the `{study.baseline}, "
                f"again` row) for {rows_of}: their differences, verdicts and ranks compare with "
                "those runs, pairs from one machine."
            )
    lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    write_plot(collected, plot, study, session)


def as_recorded(study: Study, meta: dict) -> Study:
    """`study` with the rows its saved runs were queued with (meta["rows"]), when recorded.

    The code's rows follow today's defaults; a saved study keeps describing, and adding to,
    the rows it ran, so --report-only rebuilds its page as it was.
    """
    rows = meta.get("rows")
    if not rows:
        return study
    recorded = {
        name: (description, dict(overrides)) for name, (description, overrides) in rows.items()
    }
    return replace(study, rows=recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="class-folder directory or archive")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--study", choices=list(STUDIES), default="levers")
    parser.add_argument("--rows", nargs="+", help="rows to run (default: all of the study's)")
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (dvc queue start -j)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgclf-study"))
    parser.add_argument("--report-only", action="store_true", help="rebuild from the saved JSON")
    parser.add_argument("--note", action="append", default=[], help="a line added to the report")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--add-missing",
        action="store_true",
        help="run only the row x seed experiments the saved JSON lacks and add them to it",
    )
    keep.add_argument(
        "--replace", action="store_true", help="start the study over: the saved JSON is replaced"
    )
    parser.add_argument(
        "--baseline-again",
        action="store_true",
        help="with --add-missing: run the baseline row anew for every seed, so the added rows "
        "pair with runs from their own machine and code",
    )
    args = parser.parse_args()
    if args.baseline_again and not args.add_missing:
        parser.error("--baseline-again adds to a saved study: give it with --add-missing")
    study = STUDIES[args.study]
    saved = None
    if args.report_only or args.add_missing:
        saved = json.loads(study.raw.read_text(encoding="utf-8"))
        study = as_recorded(study, saved["meta"])
    rows = args.rows or list(study.rows)
    unknown = sorted(set(rows) - set(study.rows))
    if unknown:
        parser.error(f"unknown rows {unknown} for study {study.name}: {', '.join(study.rows)}")
    if args.report_only:
        if args.note:  # kept with the results, so a later rebuild says the same
            saved["meta"]["notes"] = args.note
            study.raw.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        write_report(saved["exp_show"], saved["meta"], study=study)
        print(f"wrote {study.out}")
        return
    if args.data is None:
        parser.error("give the class-folder data (or --report-only)")
    if study.raw.exists() and not (args.add_missing or args.replace):
        parser.error(
            f"{study.raw.relative_to(REPO)} already holds this study's runs: --add-missing runs "
            "only the row x seed experiments it lacks and keeps the rest; --replace starts over"
        )
    session = bench_session()
    if args.add_missing:
        runs = missing_runs(saved["exp_show"], rows, args.seeds, study)
        if not runs and not args.baseline_again:
            print(f"nothing missing: every row has seeds {args.seeds} in {study.raw}")
            return
        experiments = [study.experiment(*run) for run in runs]
        addition = {**session, "jobs": args.jobs}
        if args.baseline_again:
            additions = saved["meta"].get("additions", [])
            number = len(additions) + 1  # this session's
            if not runs:  # nothing missing: the baseline anew for the last session's rows
                if not additions or additions[-1]["machine"] != session["machine"]:
                    parser.error(
                        "--baseline-again with nothing missing serves the last session's rows, "
                        "which must come from this machine; none do"
                    )
                addition["baseline_for"] = len(additions)
            runs += [(study.baseline, seed) for seed in args.seeds]
            experiments += [study.experiment(study.baseline, seed, number) for seed in args.seeds]
        print(f"running {len(runs)}: {', '.join(experiments)}")
        shown = run_grid(args.data, runs, args.workdir, args.jobs, study, experiments)
        saved = add_runs(saved, shown, {**addition, "experiments": experiments})
        if args.note:
            saved["meta"]["notes"] = args.note
    else:
        meta = {
            "data": str(args.data),
            "data_description": f"{args.data.name} (class folders; preprocess carves a "
            "stratified test split)",
            **session,
            "jobs": args.jobs,
            "notes": args.note,
            "rows": study.rows,  # what each row changed, as the page will describe it
        }
        runs = [(row, seed) for seed in args.seeds for row in rows]
        saved = {
            "meta": meta,
            "exp_show": run_grid(args.data, runs, args.workdir, args.jobs, study),
        }
    study.raw.parent.mkdir(parents=True, exist_ok=True)
    study.raw.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    write_report(saved["exp_show"], saved["meta"], study=study)
    print(f"wrote {study.out}")


if __name__ == "__main__":
    main()
