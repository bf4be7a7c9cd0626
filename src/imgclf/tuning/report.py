"""What a study found: its trials, the parameter importances and the best trial's line."""

from __future__ import annotations

import warnings
from typing import Any

from imgclf.tuning.search import experiment_name, reproduce_command


def finished_trials(study: Any) -> list:
    """Trials that trained to the end (COMPLETE): the ones importances and `best` read."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


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
    return optuna.importance.get_param_importances(study, evaluator=evaluator), None


def trial_rows(study: Any, metric: str) -> list[dict[str, Any]]:
    """One row per trial: number, state, value (for a pruned one its last report), epochs."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        value = trial.value
        if value is None and steps:
            value = trial.intermediate_values[steps[-1]]
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                metric: value,
                "epochs_reported": len(steps),
                "seconds": trial.duration.total_seconds() if trial.duration else None,
                **trial.user_attrs.get("values", trial.params),
            }
        )
    return rows


def best_line(study: Any) -> tuple[Any, str] | None:
    """The best finished trial and the `dvc exp run -S ...` line that reproduces it."""
    if not finished_trials(study):
        return None
    best = study.best_trial
    return best, reproduce_command(best.user_attrs.get("values", best.params))


def report_text(study: Any, metric: str, seed: int) -> str:
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
    found = best_line(study)
    if found is None:
        lines += ["", "no trial has finished yet: nothing to reproduce"]
        return "\n".join(lines)
    best, line = found
    name = experiment_name(study.study_name, best.number)
    lines += ["", f"best: trial {best.number} ({name}), {metric} {best.value:.4f}", line]
    return "\n".join(lines)


def log_study_report(client: Any, run_id: str, study: Any, metric: str, seed: int) -> None:
    """The optimisation history and importances as figures, and both as tables, in the run."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as optuna_plots

    rows = trial_rows(study, metric)
    client.log_table(run_id, _columns(rows), "tune/trials.json")
    importances, _ = param_importances(study, seed)
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures = {"tune/optimization_history.png": optuna_plots.plot_optimization_history(study)}
        if importances:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
            figures["tune/param_importances.png"] = optuna_plots.plot_param_importances(
                study, evaluator=evaluator
            )
    if importances:
        table = {"parameter": list(importances), "importance": list(importances.values())}
        client.log_table(run_id, table, "tune/importances.json")
    for path, axes in figures.items():
        figure = axes.figure
        figure.tight_layout()
        client.log_figure(run_id, figure, path)
        plt.close(figure)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    """Rows as the column lists MLflow's log_table takes (a missing cell is None)."""
    names = list(dict.fromkeys(key for row in rows for key in row))
    return {name: [row.get(name) for row in rows] for name in names}
