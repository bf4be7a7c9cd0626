"""Pruning benchmark: one study with no pruner, the same study with one, on real CIFAR-10.

Unpacks a class-balanced subset of the CIFAR-10 training JPEGs (never committed; under the
work folder), makes a scratch copy of this repository on it, trains the shipped defaults once
(the baseline, `dvc repro`), then runs `imgclf tune` twice with the same search space, sampler
seed and trial count: `--pruner none` and the pruner below. DVC's run cache is emptied before
each study, so every trial trains. The best trial of the full study is trained again with other
`train.seed` values for the seed noise. Writes docs/results/tune_pruning.json;
`python bench/render tuning` turns it into docs/results/tuning.md.

    nice -n 10 python bench/tune_pruning.py ../shared/datasets/cifar10-train-jpg.tar.gz
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml
from common import REPO, RESULTS, bench_env, extract_subset, run, session, train_json

sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

RAW = RESULTS / "tune_pruning.json"
# The pruner of the pruned study; --warmup-epochs and --reduction-factor change it.
PRUNER = {"pruner": "successive_halving", "pruner_warmup_epochs": 2, "pruner_reduction_factor": 2}


def _set_tune(project: Path, **settings) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["tune"].update(settings)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def run_study(project: Path, env: dict[str, str], name: str, trials: int) -> dict:
    """One `imgclf tune` study, every trial trained afresh; its trials and importances."""
    import optuna
    from mlflow import MlflowClient

    from imgclf.tuning import report

    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)
    command = [sys.executable, "-m", "imgclf.cli", "tune", "--study", name, "--trials", str(trials)]
    wall, output = run(command, project, env, 4000)
    storage = f"sqlite:///{project / 'mlruns' / 'optuna.db'}"
    study = optuna.load_study(study_name=name, storage=storage)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    rows = []
    for trial in study.trials:
        try:
            metrics = train_json(project, f"tune-{name}-{trial.number}")
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


def seed_noise(project: Path, env: dict[str, str], values: dict, seeds: list[int]) -> list[float]:
    """Best val accuracy of one setting trained with other train.seed values."""
    from imgclf.tuning.search import override_args

    accuracies = []
    for seed in seeds:
        name = f"noise-seed-{seed}"
        overrides = [*override_args(values), "-S", f"train.seed={seed}"]
        command = [sys.executable, "-m", "dvc", "exp", "run", *overrides, "--name", name]
        run(command, project, env, 4000)
        accuracies.append(train_json(project, name)["best_val_accuracy"])
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
        "pruned": run_study(project, bench_env(), name, measured["trials"]),
        "earlier_pruned": [*measured.get("earlier_pruned", []), earlier],
    }


def summary(measured: dict, pruner: dict, pruned: dict) -> dict:
    """One pruned study of a run of this benchmark, against that run's full study, in a few
    figures: kept on the page when the next run replaces the run."""
    full = measured["full"]
    # The full study's best setting under train.seed 0 and the other seeds.
    scores = [full["best_val_accuracy"], *measured["noise_accuracies"]]
    return {
        "images": measured["images"],
        "epochs": measured["epochs"],
        "trials": measured["trials"],
        "pruner": pruner,
        "full_train_seconds": full["train_seconds"],
        "pruned_train_seconds": pruned["train_seconds"],
        "full_best_val_accuracy": full["best_val_accuracy"],
        "pruned_best_val_accuracy": pruned["best_val_accuracy"],
        "seed_spread": round(max(scores) - min(scores), 4),
    }


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
    from support.project import make_project

    previous = json.loads(RAW.read_text(encoding="utf-8")) if RAW.is_file() else None
    where = session()
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
    env = bench_env()
    started = time.monotonic()
    baseline_seconds, _ = run([sys.executable, "-m", "dvc", "repro"], project, env, 4000)
    defaults = train_json(project, None)
    full = run_study(project, env, "full", args.trials)
    (args.workdir / "full.json").write_text(json.dumps(full, indent=2), encoding="utf-8")
    _set_tune(project, **pruner_settings(args))
    pruned = run_study(project, env, "pruned", args.trials)
    noise = seed_noise(project, env, full["best_values"], args.noise_seeds)
    from imgclf.params import load_params

    space = load_params(REPO / "params.yaml").tune.space
    return {
        "session": where,
        "images": images,
        **{key: getattr(args, key) for key in ("epochs", "trials", "seed")},
        "space": {key: dim.model_dump(exclude_defaults=True) for key, dim in space.items()},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="cifar10-train-jpg.tar.gz")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgclf-tune-bench"))
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-seeds", type=int, nargs="*", default=[1, 2])
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
    elif args.data is None:
        parser.error("give the CIFAR-10 JPEG archive (or --rerun-pruned)")
    else:
        measured = measure(args)
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(measured, indent=2), encoding="utf-8")
    print(f"wrote {RAW}; `python bench/render tuning` makes the page")


if __name__ == "__main__":
    main()
