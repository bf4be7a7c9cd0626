"""What a study found: its trials, the parameter importances and the best trial's line."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from imgclf.tuning.search import experiment_name, reproduce_command


def finished_trials(study: Any) -> list:
    """Trials that trained to the end (COMPLETE): the ones importances and `best` read."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def is_multi_objective(study: Any) -> bool:
    """Whether the study weighs train seconds too (tune.objectives accuracy_and_time)."""
    return len(study.directions) > 1


def objective(trial: Any) -> float | None:
    """The trial's metric (the first objective); None until it has one."""
    values = trial.values
    return None if values is None else values[0]


@dataclass(frozen=True)
class Choice:
    """The trial a study chooses, and a note when the rule could not be met as stated."""

    trial: Any
    note: str = ""


def choose(study: Any, time_budget: float | None = None) -> Choice | None:
    """The best finished trial; None when none has finished.

    With two objectives: the most accurate point of the Pareto front that trains within
    time_budget seconds (fewer seconds break a tie); when no point does, the fastest point,
    with a note saying so.
    """
    if not finished_trials(study):
        return None
    if not is_multi_objective(study):
        return Choice(study.best_trial)
    front = study.best_trials
    within = [t for t in front if time_budget is None or t.values[1] <= time_budget]
    if within:
        return Choice(min(within, key=lambda t: (-t.values[0], t.values[1])))
    fastest = min(front, key=lambda t: (t.values[1], -t.values[0]))
    return Choice(
        fastest,
        f"no point of the front trains within {time_budget:g} s; the fastest "
        f"({fastest.values[1]:.1f} s) is chosen",
    )


def _target(study: Any) -> dict[str, Any]:
    """The keyword that points Optuna's importances and plots at the metric of a
    two-objective study (nothing for a single objective)."""
    return {"target": objective} if is_multi_objective(study) else {}


def param_importances(study: Any, seed: int) -> tuple[dict[str, float], str | None]:
    """fANOVA importances (seeded, summing to 1) of the finished trials; or why there are none.

    fANOVA rather than Optuna's default (PED-ANOVA): it reads every finished trial, where
    PED-ANOVA wants several above its top-10% baseline, which a study of tens of trials lacks.
    """
    import optuna

    finished = finished_trials(study)
    if len(finished) < 2:
        return {}, f"importances need 2 finished trials; the study has {len(finished)}"
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    importances = optuna.importance.get_param_importances(
        study, evaluator=evaluator, **_target(study)
    )
    return importances, None


def trial_rows(study: Any, metric: str) -> list[dict[str, Any]]:
    """One row per trial: number, state, value (for a pruned one its last report), epochs."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        value = objective(trial)
        if value is None and steps:
            value = trial.intermediate_values[steps[-1]]
        seconds = trial.values[1] if trial.values and len(trial.values) > 1 else None
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                metric: value,
                **({"train_seconds": seconds} if is_multi_objective(study) else {}),
                "epochs_reported": len(steps),
                "seconds": trial.duration.total_seconds() if trial.duration else None,
                **trial.user_attrs.get("values", trial.params),
            }
        )
    return rows


def best_line(study: Any, time_budget: float | None = None) -> tuple[Any, str] | None:
    """The chosen finished trial (choose) and the `dvc exp run -S ...` line that reproduces
    it."""
    chosen = choose(study, time_budget)
    if chosen is None:
        return None
    best = chosen.trial
    return best, reproduce_command(best.user_attrs.get("values", best.params))


def front_lines(study: Any, metric: str, time_budget: float | None) -> list[str]:
    """The Pareto front of a two-objective study as a table, fastest first, and its rule."""
    chosen = choose(study, time_budget)
    front = sorted(study.best_trials, key=lambda t: t.values[1])
    rule = "the most accurate" + (f" within {time_budget:g} s" if time_budget else "")
    lines = ["", f"Pareto front ({len(front)} trials; chosen: {rule}):"]
    lines.append(f"{'trial':>5}  {metric:>18}  train_seconds")
    for trial in front:
        mark = "  <- chosen" if chosen and trial.number == chosen.trial.number else ""
        lines.append(f"{trial.number:>5}  {trial.values[0]:>18.4f}  {trial.values[1]:>13.1f}{mark}")
    if chosen and chosen.note:
        lines.append(chosen.note)
    return lines


def report_text(study: Any, metric: str, seed: int, time_budget: float | None = None) -> str:
    """The table `imgclf tune --report` prints, ending with the best trial's line."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
    lines = [f"study {study.study_name!r}: {len(study.trials)} trials ({states or 'none yet'})"]
    importances, missing = param_importances(study, seed)
    if importances:
        width = max(map(len, importances))
        lines += ["", f"{'parameter':<{width}}  importance (fANOVA)"]
        lines += [f"{key:<{width}}  {value:.3f}" for key, value in importances.items()]
    else:
        lines.append(missing)
    found = best_line(study, time_budget)
    if found is None:
        lines += ["", "no trial has finished yet: nothing to reproduce"]
        return "\n".join(lines)
    if is_multi_objective(study):
        lines += front_lines(study, metric, time_budget)
    best, line = found
    name = experiment_name(study.study_name, best.number)
    lines += ["", f"best: trial {best.number} ({name}), {metric} {objective(best):.4f}", line]
    return "\n".join(lines)


def log_study_report(
    client: Any, run_id: str, study: Any, metric: str, seed: int, time_budget: float | None = None
) -> None:
    """The optimisation history and importances as figures, and both as tables, in the run;
    for two objectives also the Pareto front, as a figure and a table."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as optuna_plots

    rows = trial_rows(study, metric)
    client.log_table(run_id, columns(rows), "tune/trials.json")
    importances, _ = param_importances(study, seed)
    target = {**_target(study), "target_name": metric}
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures = {
            "tune/optimization_history.png": optuna_plots.plot_optimization_history(study, **target)
        }
        if importances:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
            figures["tune/param_importances.png"] = optuna_plots.plot_param_importances(
                study, evaluator=evaluator, **target
            )
        if is_multi_objective(study):
            figures["tune/pareto_front.png"] = optuna_plots.plot_pareto_front(
                study, target_names=[metric, "train_seconds"]
            )
            client.log_table(
                run_id, _front_table(study, metric, time_budget), "tune/pareto_front.json"
            )
    if importances:
        table = {"parameter": list(importances), "importance": list(importances.values())}
        client.log_table(run_id, table, "tune/importances.json")
    for path, axes in figures.items():
        figure = axes.figure
        figure.tight_layout()
        client.log_figure(run_id, figure, path)
        plt.close(figure)


def _front_table(study: Any, metric: str, time_budget: float | None) -> dict[str, list]:
    """The Pareto front as columns: trial, metric, train seconds, whether chosen, its line."""
    chosen = choose(study, time_budget)
    front = sorted(study.best_trials, key=lambda t: t.values[1])
    rows = [
        {
            "trial": trial.number,
            metric: trial.values[0],
            "train_seconds": trial.values[1],
            "chosen": chosen is not None and trial.number == chosen.trial.number,
            "command": reproduce_command(trial.user_attrs.get("values", trial.params)),
        }
        for trial in front
    ]
    return columns(rows)


def columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    """Rows as the column lists MLflow's log_table takes (a missing cell is None)."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    return {name: [row.get(name) for row in rows] for name in names}
