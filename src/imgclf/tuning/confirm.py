"""Screen, then confirm: the study's best settings trained again in full, on several seeds.

A study screens cheaply (tune.screen's values, such as fewer epochs, or a pruner). Its best
tune.confirm settings then train with params.yaml's values of the screened keys, once on each
of tune.confirm_seeds (train.seed): each run is a DVC experiment and an MLflow run nested under
the study's run. The winner has the best mean validation metric over its seeds (the test split
decides nothing); a setting with a failed run is not chosen.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imgclf.tuning import report, search

SEED_KEY = "train.seed"


@dataclass(frozen=True)
class Candidate:
    """One screened setting: its trial, its values (without tune.screen's) and its score."""

    trial: int
    values: dict[str, Any]
    screened: float


@dataclass
class Confirmation:
    """A candidate's full runs: seed -> metric (None: the run failed) and its experiment."""

    candidate: Candidate
    scores: dict[int, float | None] = field(default_factory=dict)
    experiments: dict[int, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.scores) and all(value is not None for value in self.scores.values())

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores.values()) if self.complete else None

    @property
    def spread(self) -> float | None:
        """The sample standard deviation over seeds (None below two complete runs)."""
        if not self.complete or len(self.scores) < 2:
            return None
        return statistics.stdev(self.scores.values())


def candidates(study: Any, count: int, time_budget: float | None = None) -> list[Candidate]:
    """The study's best `count` finished settings, best first, each setting once.

    With two objectives: the points of the Pareto front that train within time_budget
    seconds (all of the front without one), most accurate first.
    """
    trials = report.finished_trials(study)
    if report.is_multi_objective(study):
        front = {trial.number for trial in study.best_trials}
        trials = [
            trial
            for trial in trials
            if trial.number in front and (time_budget is None or trial.values[1] <= time_budget)
        ]
    chosen: list[Candidate] = []
    for trial in sorted(trials, key=lambda trial: (-report.objective(trial), trial.number)):
        values = dict(trial.user_attrs.get("values", trial.params))
        if all(values != known.values for known in chosen):
            chosen.append(Candidate(trial.number, values, report.objective(trial)))
        if len(chosen) == count:
            break
    return chosen


def run_values(
    candidate: Candidate, screen: Mapping[str, Any], base: Mapping[str, Any], seed: int
) -> dict[str, Any]:
    """What one confirmation run sets: the setting, each screened key back at params.yaml's
    value, and the seed."""
    restored = {key: base[key] for key in screen if key in base}
    return {**candidate.values, **restored, SEED_KEY: seed}


def experiment_name(study_name: str, trial: int, seed: int) -> str:
    """The DVC experiment (and MLflow run) name of trial's confirmation on seed."""
    return f"tune-{study_name}-{trial}-seed{seed}"


def winner(confirmations: list[Confirmation]) -> Confirmation | None:
    """The complete confirmation with the best mean (the better screen breaks a tie)."""
    complete = [found for found in confirmations if found.complete]
    if not complete:
        return None
    return max(complete, key=lambda found: (found.mean, found.candidate.screened))


def table_lines(
    confirmations: list[Confirmation], metric: str, seeds: tuple[int, ...]
) -> list[str]:
    """The confirmation as a table: trial, its screen, each seed, mean and spread."""
    best = winner(confirmations)
    head = f"{'trial':>5}  {'screened':>8}  " + "  ".join(f"{f'seed {s}':>7}" for s in seeds)
    lines = [f"confirmation ({metric}, full training):", f"{head}  {'mean':>7}  {'sd':>6}"]
    for found in confirmations:
        cells = [
            f"{'failed':>7}" if found.scores.get(s) is None else f"{found.scores[s]:>7.4f}"
            for s in seeds
        ]
        mean = "-" if found.mean is None else f"{found.mean:.4f}"
        spread = "-" if found.spread is None else f"{found.spread:.4f}"
        mark = "  <- chosen" if found is best else ""
        lines.append(
            f"{found.candidate.trial:>5}  {found.candidate.screened:>8.4f}  "
            f"{'  '.join(cells)}  {mean:>7}  {spread:>6}{mark}"
        )
    return lines


def columns(confirmations: list[Confirmation], metric: str) -> dict[str, list]:
    """One row per confirmation run, as the columns MLflow's log_table takes."""
    best = winner(confirmations)
    rows = [
        {
            "trial": found.candidate.trial,
            "seed": seed,
            metric: score,
            "screened": found.candidate.screened,
            "mean": found.mean,
            "chosen": found is best,
            "experiment": found.experiments.get(seed),
        }
        for found in confirmations
        for seed, score in found.scores.items()
    ]
    return report.columns(rows)


def confirm_study(session: Any) -> tuple[Confirmation, str]:
    """Train the study's best tune.confirm settings on every seed; record and return the
    winner and the line that reproduces it."""
    from imgclf.tuning import runner

    settings = session.settings
    found = candidates(session.study, settings.confirm, settings.time_budget_seconds)
    if not found:
        raise search.TuneError(f"study {session.study_name!r} has no finished trial to confirm")
    runner.say(
        f"tune: confirming the best {len(found)} setting(s) (trials "
        f"{', '.join(str(c.trial) for c in found)}) in full on seeds "
        f"{', '.join(map(str, settings.confirm_seeds))}"
    )
    confirmations = [Confirmation(candidate) for candidate in found]
    jobs = [(found, seed) for found in confirmations for seed in settings.confirm_seeds]
    runner.run_jobs(session, [lambda job=job: _confirm_one(session, *job) for job in jobs])
    best = winner(confirmations)
    for line in table_lines(confirmations, settings.metric, settings.confirm_seeds):
        runner.say(line)
    if best is None:
        raise search.TuneError("every confirmed setting had a failed run (see the output)")
    line = search.reproduce_command(best.candidate.values)
    _record(session, confirmations, best, line)
    first = best.experiments[settings.confirm_seeds[0]]
    runner.say(
        f"tune: chosen on mean {settings.metric} over {len(best.scores)} seeds: trial "
        f"{best.candidate.trial}, {best.mean:.4f}; `dvc exp apply {first}` puts it in the "
        "workspace. Reproduce it with:"
    )
    return best, line


def _confirm_one(session: Any, found: Confirmation, seed: int) -> None:
    """One full run of a candidate on seed; a failed one is recorded as None."""
    from imgclf.tuning import runner

    candidate, settings = found.candidate, session.settings
    name = experiment_name(session.study_name, candidate.trial, seed)
    values = run_values(candidate, settings.screen, session.base, seed)
    found.experiments[seed] = name
    runner.say(f"tune: confirm trial {candidate.trial}, seed {seed} ({name}): "
               f"{search.reproduce_command(values)}")  # fmt: skip
    code = runner.run_experiment(session, values, name)
    tags = {"tune.role": "confirm", "tune.confirms_trial": str(candidate.trial),
            "tune.seed": str(seed)}  # fmt: skip
    runner.tag_run(session, name, tags)
    try:
        if code != 0:
            raise search.TuneError(f"dvc exp run exited {code}")
        result = search.read_experiment_result(
            session.project_root, name, session.metrics_path, settings.metric
        )
    except search.TuneError as error:
        found.scores[seed] = None
        runner.say(f"tune: confirmation {name} failed ({error})")
        return
    found.scores[seed] = result.value
    runner.say(f"tune: confirmation {name}: {settings.metric} {result.value:.4f}")


def _record(session: Any, confirmations: list[Confirmation], best: Confirmation, line: str) -> None:
    """The confirmation table and the winner in the study's MLflow run."""
    client, _, run_id = session.mlflow
    metric = session.settings.metric
    client.log_table(run_id, columns(confirmations, metric), "tune/confirmation.json")
    client.log_metric(run_id, "confirmed_mean", best.mean)
    for key, value in (
        ("tune.confirmed_trial", str(best.candidate.trial)),
        ("tune.confirmed_command", line),
        ("tune.confirmed_seeds", ",".join(map(str, best.scores))),
    ):
        client.set_tag(run_id, key, value)
