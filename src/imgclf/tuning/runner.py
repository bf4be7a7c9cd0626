"""Running a study's trials: each a `dvc exp run`, one after another or several at once.

One worker runs its trials in the checkout's workspace, which then holds the last trial's
results. Several workers run each trial in a DVC temporary workspace (`dvc exp run --temp`,
under .dvc/tmp/exps), so trials never share files; every one is still an experiment in
`dvc exp show`. Workers on other machines join through the study's storage: Optuna numbers
the trials, and the budget (tune.trials) counts every worker's.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from imgclf.params import TuneParams
from imgclf.tuning import report, search
from imgclf.tuning.pruning import TRIAL_VARIABLE, TrialLink

# Where parallel trials write their output (one at a time goes to the terminal).
LOG_FOLDER = Path(".dvc", "tmp", "imgclf-tune")
SKIPPED = "not run: the study's budget was spent by other workers"


@dataclass
class StudyRun:
    """One `imgclf tune` session's share of a study: what every trial it runs needs."""

    study: Any
    storage: Any  # the study's Optuna storage, already open
    settings: TuneParams
    study_name: str
    storage_url: str
    project_root: Path
    metrics_path: Path
    environ: Mapping[str, str]
    mlflow: tuple[Any, str, str]  # client, experiment id, the study's run id
    workers: int = 1
    deadline: float = float("inf")
    progress: tqdm | None = None  # the study's bar: trials done of tune.trials
    base: Mapping[str, Any] = field(default_factory=dict)  # tuned keys' values at creation
    ran_here: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped: bool = False

    def claim_trial(self) -> Any | None:
        """The next trial to run, or None when the budget or the time is spent."""
        with self._lock:
            if self._stopped:
                return None
            if self.ran_here and time.monotonic() >= self.deadline:
                minutes = self.settings.timeout_minutes
                say(f"tune: the {minutes:g} min budget is spent; stopping")
                return self._stop()
            # Enqueued first trials (WAITING) are in the budget already: ask() runs them next.
            trials = self.study.get_trials(deepcopy=False)
            if sum(trial.state != _states().WAITING for trial in trials) >= self.settings.trials:
                return self._stop_for_budget()
            trial = self.study.ask()
            if trial.number >= self.settings.trials:  # another worker asked at the same moment
                trial.set_user_attr("skipped", SKIPPED)
                self.study.tell(trial, state=_states().FAIL)
                return self._stop_for_budget()
            self.ran_here.append(trial.number)
            return self._seeded(trial.number)

    def _seeded(self, number: int) -> Any:
        """Trial `number`, drawing from a sampler seeded by tune.seed + number.

        Workers on several machines share tune.seed: one seeded sampler each would propose the
        same values to each worker's first trial. Seeding by trial number keeps a study
        reproducible and its trials distinct.
        """
        import optuna

        storage = self.storage
        study = optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=self.settings.seed + number),
            pruner=self.study.pruner,
        )
        study_id = storage.get_study_id_from_name(self.study_name)
        # Fill the new study's storage cache, which Optuna writes a trial's values through:
        # an enqueued trial's values are set without the sampler reading the study first.
        study.get_trials(deepcopy=False)
        return optuna.trial.Trial(
            study, storage.get_trial_id_from_study_id_trial_number(study_id, number)
        )

    def _stop(self) -> None:
        self._stopped = True
        return None

    def _stop_for_budget(self) -> None:
        say(f"tune: the study holds its {self.settings.trials} trials; stopping")
        return self._stop()

    def work(self) -> None:
        """One worker: claim and run trials until none is left."""
        while (trial := self.claim_trial()) is not None:
            run_trial(self, trial)
            self.show_progress()

    def show_progress(self) -> None:
        """Move the bar to the study's finished trials (every worker's), the best so far and
        how many were pruned."""
        if self.progress is None:
            return
        trials = self.study.get_trials(deepcopy=False)
        finished = [trial for trial in trials if trial.state.is_finished()]
        postfix = {}
        if report.is_multi_objective(self.study):
            postfix["front"] = len(self.study.best_trials)
        else:
            with contextlib.suppress(ValueError):  # Optuna's answer while none has completed
                postfix["best"] = f"{self.study.best_value:.4f}"
        postfix["pruned"] = sum(trial.state == _states().PRUNED for trial in finished)
        with self._lock:
            self.progress.n = len(finished)
            self.progress.set_postfix(postfix)  # redraws the bar


def study_bar(trials: int) -> tqdm:
    """The study's bar over its budget; disable=None: shown only when stderr is a terminal,
    not in logs or CI."""
    return tqdm(total=trials, desc="tune", unit="trial", disable=None)


def say(message: str) -> None:
    """Print a line of the session, above the study's bar when one is shown."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()  # before the output dvc writes to the same terminal


def _states() -> Any:
    from optuna.trial import TrialState

    return TrialState


def run_all(session: StudyRun) -> None:
    """Run the session's workers until the budget or the time is spent."""
    if session.workers == 1:
        session.work()
        return
    with ThreadPoolExecutor(session.workers, thread_name_prefix="tune-worker") as pool:
        for future in [pool.submit(session.work) for _ in range(session.workers)]:
            future.result()  # a worker's own error (not a trial's) stops the session


def run_jobs(session: StudyRun, jobs: list[Callable[[], None]]) -> None:
    """Run jobs (confirmation runs) with the session's workers: one at a time in the
    workspace, or several at once, each experiment in its own temporary workspace."""
    if session.workers == 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(session.workers, thread_name_prefix="tune-worker") as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def trial_command(values: Mapping[str, Any], name: str, temporary: bool) -> list[str]:
    """The `dvc exp run` of one trial, with the same interpreter's dvc."""
    # --wait-for-lock: parallel trials take turns at the moments DVC locks the repository.
    command = [sys.executable, "-m", "dvc", "--wait-for-lock", "exp", "run"]
    return [
        *command,
        *(["--temp"] if temporary else []),
        *search.override_args(values),
        "--name",
        name,
    ]


def run_trial(session: StudyRun, trial: Any) -> None:
    """One experiment: run dvc with the trial's values, tag its run, tell Optuna how it went."""
    settings, states = session.settings, _states()
    drawn = search.suggest_params(trial, settings.space)
    values = search.with_other_options_reset(drawn, settings.space, session.base)
    trial.set_user_attr("values", values)  # the setting: floats are rounded after Optuna draws
    if settings.screen:  # what the trial ran besides, to screen cheaply
        trial.set_user_attr("screen", dict(settings.screen))
    ran = {**values, **settings.screen}
    name = search.experiment_name(session.study_name, trial.number)
    say(f"tune: trial {trial.number} ({name}): {search.reproduce_command(ran)}")
    link = TrialLink(
        session.storage_url,
        session.study_name,
        trial.number,
        settings.metric,
        search.pruner_settings(settings),
    )
    started = time.monotonic()
    try:
        code = _run_dvc(session, trial_command(ran, name, session.workers > 1), name, link)
    except BaseException:  # Ctrl+C: the trial must not stay RUNNING in the stored study
        session.study.tell(trial, state=states.FAIL)
        raise
    run_id = tag_run(session, name, {"tune.trial": str(trial.number)})
    try:
        if code != 0:
            raise search.TuneError(f"dvc exp run exited {code}")
        result = search.read_experiment_result(
            session.project_root, name, session.metrics_path, settings.metric
        )
        if run_id is not None and result.run_id != run_id:
            raise search.TuneError(f"{name}'s {session.metrics_path} is not from its run {run_id}")
        if result.seconds is None and report.is_multi_objective(session.study):
            raise search.TuneError(f"{name}'s {session.metrics_path} has no train_seconds")
    except search.TuneError as error:
        session.study.tell(trial, state=states.FAIL)
        say(f"tune: trial {trial.number} failed ({error}); the study goes on")
        return
    _tell(session, trial, result, run_id, time.monotonic() - started)


def _run_dvc(session: StudyRun, command: list[str], name: str, link: TrialLink | None) -> int:
    """Run one experiment (a trial's when link is given); in parallel its output goes to a log
    file, not the terminal."""
    env = dict(session.environ)
    env.pop(TRIAL_VARIABLE, None)
    if link is not None:
        env[TRIAL_VARIABLE] = link.to_json()
    if session.workers == 1:  # stdout and stderr stay the user's, to follow the training
        # The study's bar steps aside meanwhile (the lock is not held for a whole trial).
        with tqdm.external_write_mode(file=sys.stdout, nolock=True):
            return subprocess.run(command, env=env, check=False).returncode
    log_path = session.project_root / LOG_FOLDER / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"tune: {name} writes its output to {log_path}")
    with log_path.open("wb") as log:
        return subprocess.run(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode


def run_experiment(session: StudyRun, values: Mapping[str, Any], name: str) -> int:
    """`dvc exp run` one experiment outside any trial (a confirmation run): never pruned."""
    return _run_dvc(session, trial_command(values, name, session.workers > 1), name, None)


def tag_run(session: StudyRun, name: str, tags: Mapping[str, str]) -> str | None:
    """Tag experiment name's MLflow run with the study and tags (the trial's number, or what a
    confirmation run confirms) and nest it under the study's run; None when it has none."""
    client, experiment_id, parent_run_id = session.mlflow
    run_id = search.find_run_id(client, experiment_id, name)
    if run_id is not None:
        for key, value in {
            "tune.study": session.study_name,
            **tags,
            "mlflow.parentRunId": parent_run_id,  # nests the run under the study in the UI
        }.items():
            client.set_tag(run_id, key, value)
    return run_id


def _tell(
    session: StudyRun, trial: Any, result: search.TrialResult, run_id: str | None, seconds: float
) -> None:
    client, _, parent_run_id = session.mlflow
    metric, states = session.settings.metric, _states()
    if run_id is not None:
        trial.set_user_attr("mlflow_run_id", run_id)
    if result.pruned:
        session.study.tell(trial, state=states.PRUNED)
        outcome = f"pruned after epoch {result.epochs} ({metric} {result.value:.4f})"
    elif report.is_multi_objective(session.study):
        session.study.tell(trial, [result.value, result.seconds])
        client.log_metric(parent_run_id, metric, result.value, step=trial.number)
        client.log_metric(parent_run_id, "train_seconds", result.seconds, step=trial.number)
        outcome = f"{metric} {result.value:.4f}, train_seconds {result.seconds:.1f}"
    else:
        session.study.tell(trial, result.value)
        client.log_metric(parent_run_id, metric, result.value, step=trial.number)
        outcome = f"{metric} {result.value:.4f}"
    cached = "" if run_id else " (DVC restored these results from its run cache)"
    say(f"tune: trial {trial.number}: {outcome} in {seconds:.0f} s{cached}")
