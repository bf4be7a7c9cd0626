"""The study's MLflow run, shared by every session and worker, and a session's last words."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.params import TuneParams
from imgclf.tracking.store import Store
from imgclf.tuning import confirm, report, search, warm_start

# The study remembers its MLflow run, so every session and machine nests trials under one run.
RUN_ATTRIBUTE = "mlflow_run_id"
# How long a worker that joins a study another worker is creating waits for the study's run.
JOIN_WAIT_SECONDS = 30.0
# params.yaml's values of the tuned keys when the study was created: what a trial sets the keys
# of the options it did not choose back to, in every session and on every machine.
BASE_ATTRIBUTE = "base_values"


def _existing_run_id(study: Any, created: bool) -> str | None:
    """The study's MLflow run: None for a new study (or one from before runs were shared)."""
    if created:
        return None
    deadline = time.monotonic() + JOIN_WAIT_SECONDS
    while True:
        run_id = study.user_attrs.get(RUN_ATTRIBUTE)
        # A study with trials but no run predates shared runs: it gets one now. Trials still
        # WAITING are the creator's enqueued first trials: it is creating the run.
        started = any(trial.state.name != "WAITING" for trial in study.trials)
        if run_id is not None or started or time.monotonic() > deadline:
            return run_id
        time.sleep(0.5)  # the worker that created the study is creating its run


def _check_run_reachable(client: Any, run_id: str, study_name: str) -> None:
    import mlflow

    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        raise search.TuneError(
            f"study {study_name!r} records its MLflow run {run_id}, which this tracking store "
            f"({mlflow.get_tracking_uri()}) does not hold: set MLFLOW_TRACKING_URI to the store "
            "the study's other workers use (the team server: `imgclf server`)"
        ) from error


@contextlib.contextmanager
def study_run(
    study: Any, created: bool, experiment_id: str, settings: TuneParams
) -> Iterator[tuple[Any, str, str]]:
    """The study's MLflow run, started or reopened; yields (client, experiment id, run id)."""
    import mlflow

    from imgclf.tracking.runs import start_run

    client = mlflow.MlflowClient()
    run_id = _existing_run_id(study, created)
    if run_id is not None:
        _check_run_reachable(client, run_id, study.study_name)
    tags = {"tune.study": study.study_name, "tune.role": "study"}
    params = search.study_params(settings)
    name = f"tune-{study.study_name}"
    with start_run(experiment_id, name, tags, params, reopen_run_id=run_id) as run:
        if run.info.run_id != run_id:
            study.set_user_attr(RUN_ATTRIBUTE, run.info.run_id)
        yield client, experiment_id, run.info.run_id


def finish(session: Any) -> str:
    """Record the best trial and the report in the study's run; print the summary line.

    Returns the line that reproduces the best trial. The study as it stands counts: other
    workers' trials too.
    """
    from optuna.trial import TrialState

    study, settings = session.study, session.settings
    client, _, run_id = session.mlflow
    trials = study.get_trials(deepcopy=False)
    found = report.best_line(study, settings.time_budget_seconds)
    if found is None:
        raise search.TuneError(
            f"no trial of study {session.study_name!r} finished (see the output)"
        )
    best, line = found
    best_name = search.experiment_name(session.study_name, best.number)
    client.log_metric(run_id, "best_value", report.objective(best))
    for key, value in (
        ("tune.best_trial", str(best.number)),
        ("tune.best_experiment", best_name),
        ("tune.best_command", line),
    ):
        client.set_tag(run_id, key, value)
    try:
        report.log_study_report(
            client, run_id, study, settings.metric, settings.seed, settings.time_budget_seconds
        )
    except Exception as error:  # the trials are recorded; a figure must not fail the study
        print(f"tune: warning: the study report was not logged: {error}", file=sys.stderr)
    finished = sum(trial.state == TrialState.COMPLETE for trial in trials)
    pruned = sum(trial.state == TrialState.PRUNED for trial in trials)
    others = sum(trial.number not in session.ran_here for trial in trials)
    if report.is_multi_objective(study):
        lines = report.front_lines(study, settings.metric, settings.time_budget_seconds)
        print("\n".join(lines[1:]))
    print(
        f"tune: study {session.study_name!r}: {finished} of {len(trials)} trials finished, "
        f"{pruned} pruned; {len(session.ran_here)} ran here, {others} on other workers; "
        f"the best, {settings.metric} {report.objective(best):.4f}, is trial {best.number} "
        f"({best_name}). Reproduce it with:"
    )

    return line


@dataclass(frozen=True)
class Chosen:
    """What a study chose: the line that reproduces it, and a DVC experiment that ran it
    (with tune.screen's values when the choice was not confirmed)."""

    line: str
    experiment: str


def _enqueue_first_trials(study: Any, settings: TuneParams, recipe: Mapping[str, Any]) -> None:
    trials, notes = warm_start.first_trials(settings.space, recipe)
    for note in notes:
        print(f"tune: warm start: {note}")
    enqueued = warm_start.enqueue(study, trials, settings.trials)
    if enqueued:
        labels = "; ".join(trial.label for trial in enqueued)
        print(f"tune: the first {len(enqueued)} trial(s) are enqueued, not sampled: {labels}")


def run_study(
    study_name: str,
    storage: tuple[Any, str],
    settings: TuneParams,
    store: Store,
    metrics_path: Path,
    environ: Mapping[str, str],
    workers: int,
    recipe: Mapping[str, Any],
) -> Chosen:
    """Join (or create) the study and run this session's trials under the study's MLflow run.

    storage is (the open Optuna storage, its URL); recipe is params.yaml's value of each tuned
    key, which a study this call creates runs first (tune.warm_start). Returns what the study
    chose: its best trial, or with tune.confirm the best confirmed setting.
    """
    from imgclf.tuning import pruning, runner

    optuna_storage, storage_url = storage
    pruner = pruning.build_pruner(search.pruner_settings(settings))
    study, created = search.join_study(
        study_name, optuna_storage, settings.seed, pruner, settings.objectives
    )
    if created:  # only its creator: a joined study has them already
        study.set_user_attr(BASE_ATTRIBUTE, dict(recipe))
        if settings.warm_start:
            _enqueue_first_trials(study, settings, recipe)
    with study_run(study, created, store.experiment_id, settings) as ids:
        session = runner.StudyRun(
            study, optuna_storage, settings, study_name, storage_url, store.project_root,
            metrics_path, dict(environ), ids,
        )  # fmt: skip
        session.workers = workers
        # The keys' values when the study was created; keys added since: params.yaml's now.
        session.base = {**recipe, **study.user_attrs.get(BASE_ATTRIBUTE, {})}
        session.deadline = time.monotonic() + settings.timeout_minutes * 60
        with runner.study_bar(settings.trials) as bar:
            session.progress = bar
            session.show_progress()  # a joined study may hold other workers' trials already
            runner.run_all(session)
        line = finish(session)
        best = report.choose(study, settings.time_budget_seconds).trial
        chosen = Chosen(line, search.experiment_name(study_name, best.number))
        if settings.confirm:
            confirmed, line = confirm.confirm_study(session)
            first_seed = settings.confirm_seeds[0]
            chosen = Chosen(line, confirmed.experiments[first_seed])
        return chosen
