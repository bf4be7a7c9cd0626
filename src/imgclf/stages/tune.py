"""tune (run by hand, not by DVC): Optuna proposes params, each trial is a DVC experiment.

Each trial runs `dvc exp run -S key=value ... --name tune-<study>-<n>` (with --workers N, N at
once, each in a DVC temporary workspace) and is scored by a val metric from train.json (never
the test split); a pruner (tune.pruner) stops bad trials after a few epochs. The trial's MLflow
run is tagged with the study and trial number and nested under the study's run. The study lives
in mlruns/optuna.db, or in tune.storage / --storage (any Optuna RDB, such as the team's
PostgreSQL), where workers on several machines share it; `--study NAME` joins or continues it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.params import Params
from imgclf.stages.common import run_stage, stage_parser


def _storage_url(args: argparse.Namespace, params: Params, project_root: Path) -> str:
    """--storage, else tune.storage, else the checkout's SQLite file."""
    chosen = args.storage or params.tune.storage
    if chosen:
        return chosen
    return f"sqlite:///{project_root / 'mlruns' / 'optuna.db'}"


def _report(args: argparse.Namespace, params: Params, project_root: Path) -> int:
    from imgclf.tracking.store import masked
    from imgclf.tuning import pruning, report, search

    url = _storage_url(args, params, project_root)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ImgclfError(f"no study storage at {url}: run `imgclf tune` first, or pass --storage")
    study = search.load_existing_study(args.report, pruning.open_storage(url), masked(url))
    settings = params.tune
    print(report.report_text(study, settings.metric, settings.seed, settings.time_budget_seconds))
    return 0


def _tune(args: argparse.Namespace, params: Params) -> int:
    from imgclf.tracking.store import open_store, resolve_project_root

    project_root = resolve_project_root(os.environ, Path.cwd())
    if args.report:
        return _report(args, params, project_root)
    overrides = {
        "trials": args.trials,
        "timeout_minutes": args.timeout_minutes,
        "confirm": args.confirm,
    }
    updates = {key: value for key, value in overrides.items() if value is not None}
    try:  # checked again: --confirm must compose with the rest of the section
        settings = type(params.tune).model_validate({**params.tune.model_dump(), **updates})
    except ValueError as error:
        raise ImgclfError(f"tune with {search_line(updates)}: {error}") from None
    if not settings.space:
        raise ImgclfError("tune.space in params.yaml is empty: give it at least one key")
    if args.apply and settings.screen and not settings.confirm:
        raise ImgclfError(
            "--apply would put the best screening trial in the workspace, with tune.screen's "
            f"values ({search_line(settings.screen)}): add --confirm K to apply a setting "
            "trained in full"
        )
    from imgclf.tuning import pruning, search, session, warm_start

    study_name = args.study or time.strftime("%Y%m%d-%H%M%S")
    if not search.STUDY_NAME.fullmatch(study_name):
        raise ImgclfError(f"--study {study_name!r}: use letters, digits, - and _ (64 at most)")
    url = _storage_url(args, params, project_root)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    storage = pruning.open_storage(url)  # an unreachable database fails here, before any trial
    store = open_store(os.environ, Path.cwd(), params.mlflow.experiment_name)
    recipe = warm_start.recipe_values(params, settings)
    chosen = session.run_study(
        study_name, (storage, url), settings, store, args.metrics, os.environ, args.workers, recipe
    )
    if args.apply:
        _apply(chosen.experiment)
    print(chosen.line)  # the last line, with --apply too
    return 0


def search_line(values: dict) -> str:
    """key=value, ... for a message."""
    return ", ".join(f"{key}={value}" for key, value in values.items())


def _apply(experiment: str) -> None:
    """Put the chosen experiment's params and outputs in the workspace (`dvc exp apply`)."""
    import subprocess

    print(f"tune: --apply: dvc exp apply {experiment}", flush=True)
    done = subprocess.run([sys.executable, "-m", "dvc", "exp", "apply", experiment], check=False)
    if done.returncode != 0:
        raise ImgclfError(
            f"dvc exp apply {experiment} exited {done.returncode} (see above); the study is "
            "recorded: run it again by hand once the workspace is clean"
        )


def _positive(kind: type, hint: str = "") -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}{hint}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("tune", "Search params with Optuna, one DVC experiment per trial.")
    parser.add_argument(
        "--trials", type=_positive(int), help="the study's budget in trials (default: tune.trials)"
    )
    parser.add_argument(
        "--timeout-minutes",
        type=_positive(float),
        help="wall-time budget; no trial starts after it (default: tune.timeout_minutes)",
    )
    parser.add_argument("--study", help="study name; an existing one is continued (default: now)")
    parser.add_argument(
        "--workers",
        type=_positive(int, " (1 runs the trials one after another in this workspace)"),
        default=1,
        help="trials at once on this machine, each in a DVC temporary workspace (default: 1)",
    )
    parser.add_argument(
        "--storage",
        help="Optuna RDB URL of the study, shared by workers on other machines "
        "(default: tune.storage, else mlruns/optuna.db)",
    )
    parser.add_argument(
        "--report",
        metavar="STUDY",
        help="print the study's importances and the line that reproduces its best trial "
        "(running or finished); run nothing",
    )
    parser.add_argument(
        "--confirm",
        metavar="K",
        type=_positive(int),
        help="after the study, train its best K settings in full on each of "
        "tune.confirm_seeds and choose on the mean (default: tune.confirm)",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="put the chosen experiment in the workspace at the end (dvc exp apply)",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("reports/metrics/train.json"),
        help="train.json the trials write, as in dvc.yaml (default: %(default)s)",
    )
    return run_stage(parser, _tune, argv)


if __name__ == "__main__":
    sys.exit(main())
