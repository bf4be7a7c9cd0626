"""Automatic choice benchmark: where `imgclf tune --confirm` ends, from two starting points.

On a class-balanced subset of the CIFAR-10 training JPEGs (never committed; under the work
folder), in a scratch copy of this repository per start, each start is trained in full on the
confirmation seeds (its baseline), then one `imgclf tune --confirm K` study screens --trials
settings on --screen-epochs epochs (warm-started from the start) and trains its best K in full
on the same seeds; it chooses on mean val accuracy (the test split decides nothing).
- default: the shipped params.yaml and its tune.space;
- seed: the seed article's recipe (bench/studies.yaml's seed_recipe: Adam at 1e-3, constant
  rate, no augmentation, seed_cnn), with SEED_SPACE, which can also reach the fast recipe's
  architecture, schedule and augmentation. Its gap is to the default start's baseline.
Writes docs/results/tune_choice.json; `python bench/render choice` makes the page.

    nice -n 10 python bench/tune_choice.py ../shared/datasets/cifar10-train-jpg.tar.gz
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, SEED_RECIPE, bench_env, extract_subset, run, session, train_json

sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

RAW = RESULTS / "tune_choice.json"
_SGD = {"low": 0.1, "high": 0.75, "log": True, "start": 0.375}  # the fast recipe's rate
# The seed start's space: each optimizer with a start (the seed recipe's lr of 1e-3 lies outside
# SGD's range), and the fast recipe's architecture, schedule and augmentation as choices.
SEED_SPACE = {
    "optimizer.name": {
        "options": {
            "adam": {"optimizer.lr": {"low": 3.0e-4, "high": 1.0e-2, "log": True}},
            "sgd": {
                "optimizer.lr": _SGD,
                "optimizer.momentum": {"low": 0.7, "high": 0.95, "start": 0.85},
            },
            "muon": {"optimizer.lr": _SGD},
        }
    },
    "model.arch": {"choices": ["seed_cnn", "fast_cnn"]},
    "optimizer.schedule": {"choices": ["constant", "linear"]},
    "augment.online_crop_flip": {"choices": [False, True]},
    "reg.l2": {"low": 0.0, "high": 2.0e-3},
    "loss.label_smoothing": {"low": 0.0, "high": 0.3},
}


def typed(text: str) -> object:
    """A studies.yaml value (a string, as -S takes it) as params.yaml holds it."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _nested(flat: dict[str, object]) -> dict[str, dict]:
    sections: dict[str, dict] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    return sections


def make_start(args: argparse.Namespace, name: str, recipe: dict, space: dict | None) -> Path:
    """A scratch project whose params.yaml is the start (and its study's settings)."""
    from support.project import make_project

    tune = {"seed": args.seed, "pruner": "none", "trials": args.trials, "confirm": args.confirm,
            "confirm_seeds": args.seeds, "screen": {"train.epochs": args.screen_epochs},
            "timeout_minutes": 100_000.0}  # fmt: skip
    if space is not None:
        tune["space"] = space
    overrides = _nested({key: typed(value) for key, value in recipe.items()})
    return make_project(
        args.workdir / name,
        {
            **overrides,
            "data": {"source": "folder", "path": str(args.workdir / "images")},
            # Fewer corrupted test images: evaluate is not what this page measures.
            "evaluate": {**overrides.get("evaluate", {}), "corruption_images": 200},
            "tune": tune,
        },
    )


def baseline(project: Path, env: dict[str, str], seeds: list[int]) -> dict[str, dict]:
    """The start trained in full on each seed: val accuracy and train seconds by seed."""
    found = {}
    for seed in seeds:
        name = f"start-seed{seed}"
        command = [sys.executable, "-m", "dvc", "exp", "run", "-S", f"train.seed={seed}"]
        run([*command, "--name", name], project, env, 4000)
        metrics = train_json(project, name)
        found[str(seed)] = {key: metrics[key] for key in ("best_val_accuracy", "train_seconds")}
    return found


def study(project: Path, env: dict[str, str], name: str, seeds: list[int]) -> dict:
    """One `imgclf tune --confirm` study: its screened trials, confirmations and choice."""
    import optuna

    from imgclf.tuning import confirm

    wall, output = run([sys.executable, "-m", "imgclf.cli", "tune", "--study", name],
                       project, env, 4000)  # fmt: skip
    storage = f"sqlite:///{project / 'mlruns' / 'optuna.db'}"
    trials = optuna.load_study(study_name=name, storage=storage).trials
    confirmed: dict[str, dict[str, float]] = {}
    for trial in trials:
        for seed in seeds:
            try:
                metrics = train_json(project, confirm.experiment_name(name, trial.number, seed))
            except Exception:  # not confirmed: no such experiment
                continue
            scores = confirmed.setdefault(str(trial.number), {})
            scores[str(seed)] = metrics["best_val_accuracy"]
    means = {trial: statistics.fmean(scores.values()) for trial, scores in confirmed.items()}
    chosen = max(means, key=means.get)
    rows = [
        {"trial": t.number, "state": t.state.name, "screened": t.value,
         "warm_start": t.user_attrs.get("warm_start"),
         "values": t.user_attrs.get("values", t.params)}
        for t in trials
    ]  # fmt: skip
    line = output.strip().splitlines()[-1]
    return {"wall_seconds": round(wall, 1), "trials": rows, "confirmed": confirmed,
            "chosen": {"trial": int(chosen), "mean": means[chosen], "line": line}}  # fmt: skip


def measure_start(args: argparse.Namespace, name: str, recipe: dict, space: dict | None) -> dict:
    env = bench_env()
    project = make_start(args, name, recipe, space)
    run([sys.executable, "-m", "dvc", "repro", "augment"], project, env, 4000)  # the data once
    started = time.monotonic()
    found = {"recipe": recipe, "space": space, "baseline": baseline(project, env, args.seeds)}
    found["study"] = study(project, env, name, args.seeds)
    found["seconds"] = round(time.monotonic() - started, 1)
    print(f"{name}: {json.dumps(found['study']['chosen'])}", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="cifar10-train-jpg.tar.gz")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgclf-choice-bench"))
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--screen-epochs", type=int, default=2)
    parser.add_argument("--confirm", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seed", type=int, default=0, help="tune.seed of both studies")
    parser.add_argument("--starts", nargs="+", default=["default", "seed"])
    parser.add_argument("--raw", type=Path, default=RAW, help="where the JSON goes")
    args = parser.parse_args()
    where = session()
    shutil.rmtree(args.workdir, ignore_errors=True)
    images = extract_subset(args.data, args.workdir / "images", args.per_class)
    starts = {"default": ({}, None), "seed": (SEED_RECIPE, SEED_SPACE)}
    measured = {
        "session": where,
        "images": images,
        **{key: getattr(args, key) for key in ("trials", "screen_epochs", "confirm", "seeds")},
        "starts": {name: measure_start(args, name, *starts[name]) for name in args.starts},
    }
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps(measured, indent=2), encoding="utf-8")
    print(f"wrote {args.raw}; `python bench/render choice` makes the page")


if __name__ == "__main__":
    main()
