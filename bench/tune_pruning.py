"""Pruning benchmark: one study with no pruner, the same study with one, on real CIFAR-10.

Unpacks a class-balanced subset of the CIFAR-10 training JPEGs (never committed; under the
work folder), makes a scratch copy of this repository on it, trains the shipped defaults once
(the baseline, `dvc repro`), then runs `imgclf tune` twice with the same search space, sampler
seed and trial count: `--pruner none` and the pruner below. DVC's run cache is emptied before
each study, so every trial trains. The best trial of the full study is trained again with other
`train.seed` values for the seed noise. Writes docs/tuning.md and the measurements
(docs/results/tune_pruning.json); the page is generated: do not edit it by hand.

    nice -n 10 python bench/tune_pruning.py ../shared/datasets/cifar10-train-jpg.tar.gz
    python bench/tune_pruning.py --report-only   # the page from the saved JSON
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

OUT = REPO / "docs" / "tuning.md"
RAW = REPO / "docs" / "results" / "tune_pruning.json"
# The pruner of the pruned study; --warmup-epochs and --reduction-factor change it.
PRUNER = {"pruner": "successive_halving", "pruner_warmup_epochs": 2, "pruner_reduction_factor": 2}


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


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return time.monotonic() - started, result.stdout


def _set_tune(project: Path, **settings) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["tune"].update(settings)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def _bench_env() -> dict[str, str]:
    """The pipeline's environment, importing imgclf from this checkout."""
    from support.project import pipeline_env

    return pipeline_env({"PYTHONPATH": str(REPO / "src")})


def _train_json(project: Path, rev: str | None) -> dict:
    import dvc.api

    return json.loads(dvc.api.read("reports/metrics/train.json", repo=str(project), rev=rev))


def run_study(project: Path, env: dict[str, str], name: str, trials: int) -> dict:
    """One `imgclf tune` study, every trial trained afresh; its trials and importances."""
    import optuna
    from mlflow import MlflowClient

    from imgclf.tuning import report

    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)
    command = [sys.executable, "-m", "imgclf.cli", "tune", "--study", name, "--trials", str(trials)]
    wall, output = _run(command, project, env)
    storage = f"sqlite:///{project / 'mlruns' / 'optuna.db'}"
    study = optuna.load_study(study_name=name, storage=storage)
    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    rows = []
    for trial in study.trials:
        try:
            metrics = _train_json(project, f"tune-{name}-{trial.number}")
        except Exception as error:  # a failed trial has no experiment: say so in the table
            print(f"trial {trial.number} of {name}: no train.json ({error})", file=sys.stderr)
            metrics = {"best_val_accuracy": float("nan"), "epochs": 0, "train_seconds": 0.0}
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "values": trial.user_attrs.get("values", trial.params),
                "best_val_accuracy": metrics["best_val_accuracy"],
                "epochs": metrics["epochs"],
                "train_seconds": metrics["train_seconds"],
                "val_accuracy_by_epoch": val_curve(client, metrics.get("mlflow_run_id")),
            }
        )
    importances, missing = report.param_importances(study, seed=0)
    best = study.best_trial
    return {
        "wall_seconds": round(wall, 1),
        "trials": rows,
        "best_trial": best.number,
        "best_val_accuracy": best.value,
        "best_values": best.user_attrs.get("values", best.params),
        "train_seconds": round(sum(row["train_seconds"] for row in rows), 1),
        "importances": importances,
        "importances_missing": missing,
        "best_line": output.strip().splitlines()[-1],
    }


def val_curve(client, run_id: str | None) -> list[float]:
    """A trial's val accuracy after every epoch, as its MLflow run recorded them."""
    if run_id is None:
        return []
    points = client.get_metric_history(run_id, "val_accuracy")
    return [round(point.value, 4) for point in sorted(points, key=lambda point: point.step)]


def _curve_table(study: dict) -> list[str]:
    """Val accuracy after each epoch, per trial, with the rank of the last epoch's value."""
    rows = [row for row in study["trials"] if row.get("val_accuracy_by_epoch")]
    if not rows:
        return []
    epochs = max(len(row["val_accuracy_by_epoch"]) for row in rows)
    finals = sorted((row["val_accuracy_by_epoch"][-1] for row in rows), reverse=True)
    lines = [
        "| trial | "
        + " | ".join(f"epoch {epoch}" for epoch in range(1, epochs + 1))
        + " | final rank |",
        "|---" * (epochs + 2) + "|",
    ]
    for row in rows:
        curve = row["val_accuracy_by_epoch"]
        cells = [f"{value:.3f}" for value in curve] + [""] * (epochs - len(curve))
        lines.append(
            f"| {row['trial']} | " + " | ".join(cells) + f" | {finals.index(curve[-1]) + 1} |"
        )
    return lines


def seed_noise(project: Path, env: dict[str, str], values: dict, seeds: list[int]) -> list[float]:
    """Best val accuracy of one setting trained with other train.seed values."""
    from imgclf.tuning.search import override_args

    accuracies = []
    for seed in seeds:
        name = f"noise-seed-{seed}"
        overrides = [*override_args(values), "-S", f"train.seed={seed}"]
        _run([sys.executable, "-m", "dvc", "exp", "run", *overrides, "--name", name], project, env)
        accuracies.append(_train_json(project, name)["best_val_accuracy"])
    return accuracies


def pruner_settings(args: argparse.Namespace) -> dict:
    return {
        **PRUNER,
        "pruner_warmup_epochs": args.warmup_epochs,
        "pruner_reduction_factor": args.reduction_factor,
    }


def rerun_pruned(args: argparse.Namespace, measured: dict) -> dict:
    """A new pruned study in the last run's project, against its full study and seed runs.

    The study it replaces stays in the measurements (and on the page) as an earlier pruner.
    """
    project = args.workdir / "project"
    if not (project / "mlruns" / "optuna.db").is_file():
        raise SystemExit(f"no benchmark project in {project}: run the whole benchmark first")
    earlier = {"pruner": measured["pruner"], "study": measured["pruned"], "why": args.why}
    pruner = pruner_settings(args)
    _set_tune(project, **pruner)
    name = f"pruned-{len(measured.get('earlier_pruned', [])) + 1}"
    return {
        **measured,
        "pruner": pruner,
        "pruned": run_study(project, _bench_env(), name, measured["trials"]),
        "earlier_pruned": [*measured.get("earlier_pruned", []), earlier],
    }


def summary(measured: dict, pruner: dict, pruned: dict) -> dict:
    """One pruned study of a run of this benchmark, against that run's full study, in a few
    figures: kept on the page when the next run replaces the run."""
    full = measured["full"]
    return {
        "images": measured["images"],
        "epochs": measured["epochs"],
        "trials": measured["trials"],
        "pruner": pruner,
        "full_train_seconds": full["train_seconds"],
        "pruned_train_seconds": pruned["train_seconds"],
        "full_best_val_accuracy": full["best_val_accuracy"],
        "pruned_best_val_accuracy": pruned["best_val_accuracy"],
        "seed_spread": round(_seed_spread(measured), 4),
    }


def _seed_scores(measured: dict) -> list[float]:
    """Best val accuracy of the full study's best setting under train.seed 0 and the others."""
    return [measured["full"]["best_val_accuracy"], *measured["noise_accuracies"]]


def _seed_spread(measured: dict) -> float:
    scores = _seed_scores(measured)
    return max(scores) - min(scores)


def earlier_runs(previous: dict | None) -> list[dict]:
    """The pruned studies of the runs of this benchmark before this one, oldest first."""
    if previous is None:
        return []
    studies = [
        *((entry["pruner"], entry["study"]) for entry in previous.get("earlier_pruned", [])),
        (previous["pruner"], previous["pruned"]),
    ]
    return [
        *previous.get("earlier_runs", []),
        *(summary(previous, pruner, study) for pruner, study in studies),
    ]


def measure(args: argparse.Namespace) -> dict:
    from run_benchmarks import session as bench_session

    from support.project import make_project

    previous = json.loads(RAW.read_text(encoding="utf-8")) if RAW.is_file() else None
    session = bench_session()
    shutil.rmtree(args.workdir, ignore_errors=True)
    images = extract_subset(args.data, args.workdir / "images", args.per_class)
    project = make_project(
        args.workdir / "project",
        {
            "data": {"source": "folder", "path": str(args.workdir / "images")},
            "train": {"epochs": args.epochs},
            # Fewer corrupted test images: evaluate is not what this page measures.
            "evaluate": {"corruption_images": 200},
            # The shipped tune.space (params.yaml), around the fast recipe's own values.
            "tune": {"seed": args.seed, "pruner": "none"},
        },
    )
    env = _bench_env()
    started = time.monotonic()
    baseline_seconds, _ = _run([sys.executable, "-m", "dvc", "repro"], project, env)
    defaults = _train_json(project, None)
    full = run_study(project, env, "full", args.trials)
    (args.workdir / "full.json").write_text(json.dumps(full, indent=2), encoding="utf-8")
    _set_tune(project, **pruner_settings(args))
    pruned = run_study(project, env, "pruned", args.trials)
    noise = seed_noise(project, env, full["best_values"], args.noise_seeds)
    return {
        "session": session,
        "images": images,
        "epochs": args.epochs,
        "trials": args.trials,
        "seed": args.seed,
        "space": _shipped_space(),
        "pruner": pruner_settings(args),
        "defaults": {
            "best_val_accuracy": defaults["best_val_accuracy"],
            "train_seconds": defaults["train_seconds"],
            "repro_seconds": round(baseline_seconds, 1),
        },
        "full": full,
        "pruned": pruned,
        "noise_seeds": args.noise_seeds,
        "noise_accuracies": noise,
        "total_seconds": round(time.monotonic() - started, 1),
        "earlier_runs": earlier_runs(previous),
    }


def _session_line(session: dict | None) -> str:
    """Where and from which code the measurements came (runs before 2026-12-04 did not say)."""
    if not session:
        return ""
    return (
        f" Machine: {session['machine']}. Date: {session['date']}. "
        f"Code: commit {session['commit']}."
    )


def _shipped_values(keys) -> dict:
    from imgclf.params import load_params

    params = load_params(REPO / "params.yaml")
    return {key: getattr(getattr(params, key.split(".")[0]), key.split(".")[1]) for key in keys}


def _shipped_space() -> dict:
    from imgclf.params import load_params

    space = load_params(REPO / "params.yaml").tune.space
    return {key: dimension.model_dump(exclude_defaults=True) for key, dimension in space.items()}


def _trial_table(study: dict, keys: list[str]) -> list[str]:
    lines = [
        "| trial | state | epochs | train s | best val accuracy | " + " | ".join(keys) + " |",
        "|---" * (5 + len(keys)) + "|",
    ]
    for row in study["trials"]:
        cells = [str(row["values"][key]) for key in keys]
        lines.append(
            f"| {row['trial']} | {row['state'].lower()} | {row['epochs']} | "
            f"{row['train_seconds']:.1f} | {row['best_val_accuracy']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def _sameness(full: dict, pruned: dict) -> str:
    """Whether both studies tried the same settings, trial by trial (measured, not assumed)."""
    same = [
        a["values"] == b["values"] for a, b in zip(full["trials"], pruned["trials"], strict=True)
    ]
    if all(same):
        return (
            "Both studies proposed the same settings, trial by trial (Optuna's TPE draws its "
            "first 10 trials at random, each from `tune.seed` plus the trial number), so the "
            "pruned study differs only in stopping the trials that lag."
        )
    return (
        f"The studies proposed the same settings in {sum(same)} of {len(same)} trials; the "
        "others differ because the sampler had seen different (pruned) results."
    )


def _rungs_text(pruner: dict, epochs: int) -> str:
    """Where successive halving compares trials: min_resource x factor^k epochs, before the end."""
    factor = pruner["pruner_reduction_factor"]
    rungs, epoch = [], pruner["pruner_warmup_epochs"]
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= factor
    where = " and again after epoch ".join(str(rung) for rung in rungs)
    share = {2: "half", 3: "third", 4: "quarter"}.get(factor, f"1/{factor}")
    return (
        f"after epoch {where}, a trial goes on only when it is in the top {share} of the trials "
        "that reached that epoch"
    )


def _what_pruning_stopped(full: dict, pruned: dict) -> str:
    """Where the trials the pruner stopped would have ranked in the full study (settings both
    studies tried), and where the pruned study's best ranks there."""
    scores = sorted((row["best_val_accuracy"] for row in full["trials"]), reverse=True)
    rank = {row["trial"]: scores.index(row["best_val_accuracy"]) + 1 for row in full["trials"]}
    both = [
        (ours, theirs)
        for ours, theirs in zip(full["trials"], pruned["trials"], strict=True)
        if ours["values"] == theirs["values"]
    ]
    stopped = sorted(rank[ours["trial"]] for ours, theirs in both if theirs["state"] == "PRUNED")
    best = [rank[ours["trial"]] for ours, theirs in both if theirs["trial"] == pruned["best_trial"]]
    text = (
        f"- What the pruner stopped: of the {len(both)} settings both studies tried, it stopped "
        f"{len(stopped)}, which ranked {', '.join(map(str, stopped)) or '-'} of "
        f"{len(full['trials'])} in the full study"
    )
    if best:
        text += f"; the pruned study's best setting ranked {best[0]} there"
    return text + "."


def _within(gap: float, spread: float) -> bool:
    """Whether an accuracy difference is within the seed spread, as the page prints both."""
    return round(abs(gap), 4) <= round(spread, 4)


def _earlier_lines(measured: dict, full: dict, spread: float) -> list[str]:
    """One line per pruner measured before the one above, against the same full study."""
    lines = []
    for entry in measured.get("earlier_pruned", []):
        pruner, study = entry["pruner"], entry["study"]
        ratio = study["train_seconds"] / full["train_seconds"]
        gap = full["best_val_accuracy"] - study["best_val_accuracy"]
        lines.append(
            f"- Measured before it, against the same full study: `{pruner['pruner']}` with "
            f"warm-up {pruner['pruner_warmup_epochs']} and factor "
            f"{pruner['pruner_reduction_factor']}: pruned / full = {ratio:.2f}, best val "
            f"accuracy {study['best_val_accuracy']:.4f} (difference {gap:+.4f}, "
            f"{'within' if _within(gap, spread) else 'outside'} the seed spread). {entry['why']}"
        )
    return lines


def _earlier_runs_table(runs: list[dict]) -> list[str]:
    """The earlier runs of this benchmark (other data, epochs or pruner), as they were measured."""
    if not runs:
        return []
    lines = [
        "",
        "## Earlier runs of this benchmark",
        "",
        "The same search space; each row is one pruned study against the full study of its own "
        "run, with that run's seed spread.",
        "",
        "| images | epochs | trials | pruner (warm-up, factor) | pruned / full train seconds "
        "| best val full | best val pruned | seed spread | within noise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        pruner = run["pruner"]
        gap = run["full_best_val_accuracy"] - run["pruned_best_val_accuracy"]
        lines.append(
            f"| {run['images']:,} | {run['epochs']} | {run['trials']} | {pruner['pruner']} "
            f"({pruner['pruner_warmup_epochs']}, {pruner['pruner_reduction_factor']}) | "
            f"{run['pruned_train_seconds'] / run['full_train_seconds']:.2f} | "
            f"{run['full_best_val_accuracy']:.4f} | {run['pruned_best_val_accuracy']:.4f} | "
            f"{run['seed_spread']:.4f} | {'yes' if _within(gap, run['seed_spread']) else 'no'} |"
        )
    return lines


def write_report(measured: dict, out: Path) -> None:
    full, pruned, defaults = measured["full"], measured["pruned"], measured["defaults"]
    ratio = pruned["train_seconds"] / full["train_seconds"]
    spread = _seed_spread(measured)
    gap = full["best_val_accuracy"] - pruned["best_val_accuracy"]
    within = _within(gap, spread)
    pruner = measured["pruner"]
    keys = list(measured["space"])
    shipped = _shipped_values(keys)
    lines = [
        "# Tuning: what pruning saves, and what the search chose",
        "",
        "Generated by `nice -n 10 python bench/tune_pruning.py ../shared/datasets/"
        "cifar10-train-jpg.tar.gz` (do not edit by hand; `--report-only` rebuilds it from "
        "`docs/results/tune_pruning.json`).",
        "",
        f"Data: {measured['images']:,} CIFAR-10 training JPEGs ({measured['images'] // 10:,} per "
        "class, the first in the archive), split by the pipeline into train, val and a carved "
        f"test split. Every trial trains the shipped fast recipe for {measured['epochs']} epochs "
        f"with the {len(keys)} searched keys below changed; the score is `best_val_accuracy` (val, "
        "never test). "
        f"Both studies: the same space, `tune.seed: {measured['seed']}`, {measured['trials']} "
        "trials, one worker, DVC's run cache emptied first so every trial trains. "
        + _sameness(full, pruned)
        + _session_line(measured.get("session")),
        "",
        f"Pruner: `tune.pruner: {pruner['pruner']}`, `pruner_warmup_epochs: "
        f"{pruner['pruner_warmup_epochs']}`, `pruner_reduction_factor: "
        f"{pruner['pruner_reduction_factor']}` (Optuna's asynchronous successive halving: "
        f"{_rungs_text(pruner, measured['epochs'])}).",
        "",
        "## Pruned against full",
        "",
        "| study | best val accuracy | best trial | summed train seconds | trials pruned | "
        "wall seconds (whole study) |",
        "|---|---|---|---|---|---|",
    ]
    for name, study in (("no pruner", full), (pruner["pruner"], pruned)):
        count = sum(row["state"] == "PRUNED" for row in study["trials"])
        lines.append(
            f"| {name} | {study['best_val_accuracy']:.4f} | {study['best_trial']} | "
            f"{study['train_seconds']:.1f} | {count} of {len(study['trials'])} | "
            f"{study['wall_seconds']:.0f} |"
        )
    noise_text = ", ".join(f"{value:.4f}" for value in _seed_scores(measured))
    other_seeds = ", ".join(str(seed) for seed in measured["noise_seeds"])
    lines += [
        "",
        f"- Summed training seconds (train.json `train_seconds`, the wall time of `fit` plus the "
        f"whitening set-up): pruned / full = **{ratio:.2f}** (target: at most 0.50: "
        f"{'met' if ratio <= 0.5 else 'not met'}).",
        f"- Best val accuracy: full {full['best_val_accuracy']:.4f}, pruned "
        f"{pruned['best_val_accuracy']:.4f} (difference {gap:+.4f}). Seed noise: the full "
        f"study's best setting trained with `train.seed` 0, {other_seeds} scores "
        f"{noise_text} (spread {spread:.4f}); the difference is "
        f"{'within' if within else 'outside'} that spread.",
        _what_pruning_stopped(full, pruned),
        *_earlier_lines(measured, full, spread),
        f"- Wall time of the {'first ' if measured.get('earlier_pruned') else ''}benchmark run "
        "(baseline, the full and the first pruned study, seed runs): "
        f"{measured['total_seconds'] / 60:.1f} min on this machine's 2 shared cores; trials "
        "also pay for process start-up and the evaluate stage, which pruning does not shorten.",
        "",
        "## What the search chose, against the shipped defaults",
        "",
        "| key | shipped default | best of the full study | best of the pruned study |",
        "|---|---|---|---|",
    ]
    for key in keys:
        lines.append(
            f"| `{key}` | {shipped[key]} | {full['best_values'][key]} | "
            f"{pruned['best_values'][key]} |"
        )
    lines += [
        f"| best val accuracy | {defaults['best_val_accuracy']:.4f} (`dvc repro`, "
        f"{defaults['train_seconds']:.1f} s) | {full['best_val_accuracy']:.4f} | "
        f"{pruned['best_val_accuracy']:.4f} |",
        "",
        "Optimiser: TPE (`optuna.samplers.TPESampler`, seeded by `tune.seed`), the only sampler "
        "`imgclf tune` uses. The optimiser itself (`optimizer.name: sgd`) was not searched: "
        "the fast recipe's BatchNorm-shift multiplier and learning rate are SGD's.",
        "",
        "Reproduce the best trial of each study:",
        "",
        "```bash",
        full["best_line"],
        pruned["best_line"],
        "```",
        "",
        "## What mattered (fANOVA importances)",
        "",
        "Over the finished (not pruned) trials of each study, seeded, summing to 1; "
        f"{measured['trials']} trials are few for a random forest, so read them as a ranking, "
        "not as exact shares.",
        "",
        "| key | full study | pruned study |",
        "|---|---|---|",
    ]
    for key in keys:
        cells = [
            f"{study['importances'][key]:.3f}" if key in study["importances"] else "-"
            for study in (full, pruned)
        ]
        lines.append(f"| `{key}` | {cells[0]} | {cells[1]} |")
    for study_name, study in (("full", full), ("pruned", pruned)):
        if study["importances_missing"]:
            lines.append(f"\n{study_name} study: {study['importances_missing']}.")
    curves = _curve_table(full)
    if curves:
        lines += [
            "",
            "## Val accuracy by epoch, full study",
            "",
            "Each trial's val accuracy after every epoch (its MLflow run) and its rank at the "
            "end. A pruner compares trials at its rungs: where the early columns rank the "
            "trials otherwise than the last one, pruning there stops eventual winners.",
            "",
            *curves,
        ]
    lines += _earlier_runs_table(measured.get("earlier_runs", []))
    lines += ["", "## Every trial", "", "No pruner:", "", *_trial_table(full, keys), ""]
    lines += [f"{pruner['pruner']}:", "", *_trial_table(pruned, keys), ""]
    out.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="cifar10-train-jpg.tar.gz")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgclf-tune-bench"))
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-seeds", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--warmup-epochs", type=int, default=PRUNER["pruner_warmup_epochs"])
    parser.add_argument("--reduction-factor", type=int, default=PRUNER["pruner_reduction_factor"])
    parser.add_argument(
        "--rerun-pruned",
        action="store_true",
        help="only a new pruned study, in --workdir's project from the last run (same full study)",
    )
    parser.add_argument("--why", default="", help="with --rerun-pruned: why the pruner changed")
    args = parser.parse_args()
    if args.rerun_pruned:
        measured = rerun_pruned(args, json.loads(RAW.read_text(encoding="utf-8")))
        RAW.write_text(json.dumps(measured, indent=2), encoding="utf-8")
    elif not args.report_only:
        if args.data is None:
            parser.error("give the CIFAR-10 JPEG archive (or --report-only)")
        measured = measure(args)
        RAW.parent.mkdir(parents=True, exist_ok=True)
        RAW.write_text(json.dumps(measured, indent=2), encoding="utf-8")
    write_report(json.loads(RAW.read_text(encoding="utf-8")), OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
