"""Tests for what a study reports: the chosen trial, and for accuracy_and_time the Pareto
front and its rule, on real Optuna studies."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from imgclf.tuning import report, search

# (val accuracy, train seconds) per trial; trial 3 is dominated by trial 2.
POINTS = [(0.80, 10.0), (0.85, 30.0), (0.83, 12.0), (0.70, 50.0), (0.86, 100.0)]


def _two_objective_study(points: list[tuple[float, float]] = POINTS) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=search.directions("accuracy_and_time"))
    for accuracy, seconds in points:
        trial = study.ask()
        lr = trial.suggest_float("optimizer.lr", 1e-3, 1.0, log=True)
        trial.set_user_attr("values", {"optimizer.lr": lr})
        study.tell(trial, [accuracy, seconds])
    return study


def test_directions_follow_the_objectives() -> None:
    assert search.directions("accuracy") == ["maximize"]
    assert search.directions("accuracy_and_time") == ["maximize", "minimize"]


@pytest.mark.parametrize(
    ("budget", "chosen", "note"),
    [
        (None, 4, ""),  # the most accurate point of the front
        (40.0, 1, ""),  # the most accurate within 40 s
        (12.0, 2, ""),  # the budget itself counts as within
        (5.0, 0, "no point of the front trains within 5 s; the fastest (10.0 s) is chosen"),
    ],
)
def test_the_chosen_point_is_the_most_accurate_within_the_budget(
    budget: float | None, chosen: int, note: str
) -> None:
    found = report.choose(_two_objective_study(), budget)
    assert found.trial.number == chosen and found.note == note


def test_a_dominated_trial_is_never_chosen_and_the_front_table_marks_the_choice() -> None:
    study = _two_objective_study()
    lines = report.front_lines(study, "best_val_accuracy", 40.0)
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [0, 2, 1, 4]  # fastest first; trial 3 dominated
    assert [row[0] for row in rows if "<-" in row] == ["1"]
    assert "the most accurate within 40 s" in lines[1]


def test_a_single_objective_study_chooses_its_best_trial() -> None:
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7):
        study.tell(study.ask(), value)
    assert report.choose(study).trial.number == 1
    assert report.choose(optuna.create_study(direction="maximize")) is None


def test_the_report_of_a_two_objective_study_has_importances_front_and_line() -> None:
    study = _two_objective_study()
    text = report.report_text(study, "best_val_accuracy", seed=0, time_budget=40.0)
    assert "optimizer.lr" in text and "Pareto front (4 trials" in text
    best = study.trials[1]
    assert "best: trial 1 (" in text and "best_val_accuracy 0.8500" in text
    assert text.splitlines()[-1] == search.reproduce_command(best.user_attrs["values"])
    rows = report.trial_rows(study, "best_val_accuracy")
    assert [row["train_seconds"] for row in rows] == [seconds for _, seconds in POINTS]


def test_the_study_run_gets_the_front_as_a_figure_and_a_table(tmp_path: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    report.log_study_report(client, run_id, _two_objective_study(), "best_val_accuracy", 0, 40.0)
    names = {item.path for item in client.list_artifacts(run_id, "tune")}
    assert {"tune/pareto_front.png", "tune/pareto_front.json"} <= names
    table = json.loads(
        Path(client.download_artifacts(run_id, "tune/pareto_front.json")).read_text()
    )
    columns = table["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in table["data"]]
    assert [row["trial"] for row in rows] == [0, 2, 1, 4]
    assert [row["trial"] for row in rows if row["chosen"]] == [1]
