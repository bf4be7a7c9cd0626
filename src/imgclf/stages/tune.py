"""tune (run by hand, not by DVC): Optuna proposes params, each trial is a DVC experiment.

Each trial runs `dvc exp run -S key=value ... --name tune-<study>-<n>` in this checkout, one
after another, and scores it with a val metric from train.json (never the test split). The
trial's MLflow run is tagged with the study and trial number and nested under the study's run.
The study lives in mlruns/optuna.db, so `--study NAME` continues an earlier one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.params import Params, TuneParams
from imgclf.stages.common import run_stage, stage_parser


def _run_trial(study, settings: TuneParams, study_name: str, metrics: Path, ids: tuple) -> None:
    """One experiment: ask Optuna, run dvc, tag the MLflow run, tell Optuna how it went."""
    import mlflow
    from optuna.trial import TrialState

    from imgclf import tune

    client, experiment_id, parent_run_id = ids
    metric = settings.metric
    trial = study.ask()
    values = tune.suggest_params(trial, settings.space)
    trial.set_user_attr("values", values)  # what ran: floats are rounded after Optuna draws
    name = tune.experiment_name(study_name, trial.number)
    print(f"tune: trial {trial.number} ({name}): {tune.reproduce_command(values)}", flush=True)
    started = time.monotonic()
    # The same interpreter's dvc; stdout and stderr stay the user's, to follow the training.
    command = [sys.executable, "-m", "dvc", "exp", "run", *tune.override_args(values)]
    try:
        code = subprocess.run([*command, "--name", name], check=False).returncode
    except BaseException:  # Ctrl+C: the trial must not stay RUNNING in the stored study
        study.tell(trial, state=TrialState.FAIL)
        raise
    run_id = tune.find_run_id(client, experiment_id, name)
    if run_id is not None:
        trial.set_user_attr("mlflow_run_id", run_id)
        for key, value in (
            ("tune.study", study_name),
            ("tune.trial", str(trial.number)),
            ("mlflow.parentRunId", parent_run_id),  # nests the trial under the study in the UI
        ):
            client.set_tag(run_id, key, value)
    try:
        if code != 0:
            raise tune.TuneError(f"dvc exp run exited {code}")
        value, metrics_run_id = tune.read_result(metrics, metric)
        if run_id is not None and metrics_run_id != run_id:
            raise tune.TuneError(f"{metrics} is not from this trial's run {run_id}")
    except tune.TuneError as error:
        study.tell(trial, state=TrialState.FAIL)
        print(f"tune: trial {trial.number} failed ({error}); the study goes on", flush=True)
        return
    study.tell(trial, value)
    mlflow.log_metric(metric, value, step=trial.number)
    cached = "" if run_id else " (DVC restored these results from its run cache)"
    seconds = time.monotonic() - started
    print(f"tune: trial {trial.number}: {metric} {value:.4f} in {seconds:.0f} s{cached}")


def _tune(args: argparse.Namespace, params: Params) -> int:
    from imgclf import tracking, tune

    overrides = {"trials": args.trials, "timeout_minutes": args.timeout_minutes}
    settings = params.tune.model_copy(
        update={key: value for key, value in overrides.items() if value is not None}
    )
    if not settings.space:
        raise ImgclfError("tune.space in params.yaml is empty: give it at least one key")
    study_name = args.study or time.strftime("%Y%m%d-%H%M%S")
    if not tune.STUDY_NAME.fullmatch(study_name):
        raise ImgclfError(f"--study {study_name!r}: use letters, digits, - and _ (64 at most)")
    project_root = tracking.resolve_project_root(os.environ, Path.cwd())
    experiment_id = tracking.connect(
        tracking.resolve_tracking_uri(os.environ, project_root),
        params.mlflow.experiment_name,
        tracking.default_artifact_location(os.environ, project_root),
    )
    import mlflow

    (project_root / "mlruns").mkdir(exist_ok=True)
    storage = f"sqlite:///{project_root / 'mlruns' / 'optuna.db'}"
    study = tune.create_study(study_name, storage, settings.seed)
    tags = {"tune.study": study_name, "tune.role": "study"}
    deadline = time.monotonic() + settings.timeout_minutes * 60
    run_params = tune.study_params(settings)
    with tracking.start_run(experiment_id, f"tune-{study_name}", tags, run_params) as parent:
        ids = (mlflow.MlflowClient(), experiment_id, parent.info.run_id)
        for number in range(1, settings.trials + 1):
            _run_trial(study, settings, study_name, args.metrics, ids)
            # Like Optuna's own timeout: a running trial finishes, no new one starts.
            if number < settings.trials and time.monotonic() >= deadline:
                print(f"tune: the {settings.timeout_minutes:g} min budget is spent; stopping")
                break
        finished = [t for t in study.trials if t.value is not None]
        if not finished:
            raise tune.TuneError(f"no trial of study {study_name!r} finished (see the output)")
        best = study.best_trial
        best_values = best.user_attrs.get("values", best.params)
        line = tune.reproduce_command(best_values)
        mlflow.log_metric("best_value", best.value)
        mlflow.set_tags(
            {
                "tune.best_trial": str(best.number),
                "tune.best_experiment": tune.experiment_name(study_name, best.number),
                "tune.best_command": line,
            }
        )
    print(
        f"tune: study {study_name!r}: {len(finished)} of {len(study.trials)} trials finished; "
        f"the best, {settings.metric} {best.value:.4f}, is trial {best.number} "
        f"({tune.experiment_name(study_name, best.number)}). Reproduce it with:"
    )
    print(line)
    return 0


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("tune", "Search params with Optuna, one DVC experiment per trial.")
    parser.add_argument("--trials", type=_positive(int), help="most trials (default: tune.trials)")
    parser.add_argument(
        "--timeout-minutes",
        type=_positive(float),
        help="wall-time budget; no trial starts after it (default: tune.timeout_minutes)",
    )
    parser.add_argument("--study", help="study name; an existing one is continued (default: now)")
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("reports/metrics/train.json"),
        help="train.json the trials write, as in dvc.yaml (default: %(default)s)",
    )
    return run_stage(parser, _tune, argv)


if __name__ == "__main__":
    sys.exit(main())
