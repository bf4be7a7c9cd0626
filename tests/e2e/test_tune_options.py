"""End to end, on the tiny synthetic pipeline with the real dvc, MLflow and Optuna: one study
that chooses the optimizer, each with its own settings, starts from the recipe and each
option's start, screens on one epoch, weighs train seconds too (a Pareto front) and confirms
the front's best two settings on two epochs and two seeds. The study serves every test of the
file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from imgclf.tuning import search
from support.project import STUDY_EVALUATE, TINY_PARAMS, make_project, run

pytestmark = pytest.mark.slow

# The tiny recipe is Adam at 0.002; SGD's rates are ten times higher, so each optimizer has
# its own range, and SGD alone tunes momentum.
PARAMS = {
    **TINY_PARAMS,
    "train": {**TINY_PARAMS["train"], "epochs": 2},
    "mlflow": {"log_model": False},
    "evaluate": STUDY_EVALUATE,
    "tune": {
        "screen": {"train.epochs": 1},
        "confirm_seeds": [0, 1],
        "objectives": "accuracy_and_time",
        "space": {
            "optimizer.name": {
                "options": {
                    "adam": {"optimizer.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
                    "sgd": {
                        "optimizer.lr": {"low": 0.01, "high": 0.1, "log": True, "start": 0.05},
                        "optimizer.momentum": {"low": 0.8, "high": 0.95, "start": 0.9},
                    },
                }
            }
        },
    },
}
# What the first two trials ran: a key of the option not chosen is set back to params.yaml's
# value, since a trial in the workspace starts from the last trial's params.yaml.
FIRST = [
    {"optimizer.name": "adam", "optimizer.lr": 0.002, "optimizer.momentum": 0.85},
    {"optimizer.name": "sgd", "optimizer.lr": 0.05, "optimizer.momentum": 0.9},
]


class Study(NamedTuple):
    name: str
    project: Path
    out: str
    study: optuna.Study
    client: MlflowClient
    experiment_id: str


def _run_study(project: Path, name: str, *options: str) -> Study:
    out = run(["imgclf", "tune", "--study", name, *options], project, 1800).stdout
    loaded = optuna.load_study(study_name=name, storage=f"sqlite:///{project}/mlruns/optuna.db")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("imgclf").experiment_id
    return Study(name, project, out, loaded, client, experiment_id)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    project = make_project(tmp_path_factory.mktemp("tune-options") / "project", PARAMS)
    return _run_study(project, "opt", "--trials", "3", "--confirm", "2", "--apply")


def _runs(found: Study, query: str) -> list:
    query = f"tags.`tune.study` = '{found.name}' and {query}"
    return found.client.search_runs([found.experiment_id], query, max_results=100)


def _train_metrics(project: Path) -> dict[str, dict]:
    """train.json of every experiment in `dvc exp show --json`, by name."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    return {
        revision["name"]: revision["data"]["metrics"]["reports/metrics/train.json"]["data"]
        for baseline in shown
        for experiment in baseline.get("experiments") or []
        for revision in experiment["revs"]
    }


def test_a_study_starts_from_the_recipe_and_each_option_then_draws_only_their_keys(
    study: Study,
) -> None:
    assert "the first 2 trial(s) are enqueued, not sampled" in study.out
    lines = re.findall(r"^tune: trial (\d) \(tune-opt-\d\): (dvc exp run .*)$", study.out, re.M)
    assert [number for number, _ in lines] == ["0", "1", "2"]
    screen = " -S train.epochs=1"  # what every trial ran besides, to screen
    assert lines[0][1] == (
        "dvc exp run -S optimizer.name=adam -S optimizer.lr=0.002 -S optimizer.momentum=0.85"
        + screen
    )
    assert lines[1][1] == (
        "dvc exp run -S optimizer.name=sgd -S optimizer.lr=0.05 -S optimizer.momentum=0.9" + screen
    )
    values = [trial.user_attrs["values"] for trial in study.study.trials]
    assert values[:2] == FIRST
    assert set(values[2]) == {"optimizer.name", "optimizer.lr", "optimizer.momentum"}
    assert all(trial.state.name == "COMPLETE" for trial in study.study.trials)
    for number, drawn in enumerate(values):
        (recorded,) = _runs(study, f"tags.`tune.trial` = '{number}'")
        logged = recorded.data.params
        assert float(logged["optimizer.lr"]) == pytest.approx(drawn["optimizer.lr"])
        assert logged["optimizer.name"] == drawn["optimizer.name"]
        # An adam trial after the sgd one trained with params.yaml's momentum, not sgd's draw.
        assert float(logged["optimizer.momentum"]) == pytest.approx(drawn["optimizer.momentum"])
        assert logged["train.epochs"] == "1"


def test_the_best_two_are_confirmed_in_full_on_two_seeds_and_the_best_mean_wins(
    study: Study,
) -> None:
    metrics = _train_metrics(study.project)
    confirmed: dict[int, dict[int, float]] = {}
    for recorded in _runs(study, "tags.`tune.role` = 'confirm'"):
        params, tags = recorded.data.params, recorded.data.tags
        assert params["train.epochs"] == "2" and params["train.seed"] == tags["tune.seed"]
        trial, seed = int(tags["tune.confirms_trial"]), int(params["train.seed"])
        found = metrics[f"tune-opt-{trial}-seed{seed}"]
        assert found["mlflow_run_id"] == recorded.info.run_id and found["epochs"] == 2
        confirmed.setdefault(trial, {})[seed] = found["best_val_accuracy"]
    front = sorted(study.study.best_trials, key=lambda t: (-t.values[0], t.number))
    assert sorted(confirmed) == sorted(t.number for t in front[:2])  # the front's best two
    assert all(sorted(seeds) == [0, 1] for seeds in confirmed.values())
    means = {trial: sum(s.values()) / 2 for trial, s in confirmed.items()}
    winner = max(means, key=means.get)
    (study_run,) = _runs(study, "tags.`tune.role` = 'study'")
    assert study_run.data.tags["tune.confirmed_trial"] == str(winner)
    assert study_run.data.metrics["confirmed_mean"] == pytest.approx(means[winner])
    names = {item.path for item in study.client.list_artifacts(study_run.info.run_id, "tune")}
    assert "tune/confirmation.json" in names
    chosen = study.study.trials[winner].user_attrs["values"]
    line = study.out.strip().splitlines()[-1]
    assert "chosen on mean" in study.out and line == search.reproduce_command(chosen)
    assert line == study_run.data.tags["tune.confirmed_command"] and "train.epochs" not in line
    # --apply: the workspace now holds the winner trained in full on the first seed.
    params = yaml.safe_load((study.project / "params.yaml").read_text(encoding="utf-8"))
    assert params["train"]["epochs"] == 2 and params["train"]["seed"] == 0
    assert params["optimizer"]["name"] == chosen["optimizer.name"]
    assert params["optimizer"]["lr"] == pytest.approx(chosen["optimizer.lr"])
    workspace = json.loads((study.project / "reports/metrics/train.json").read_text())
    assert workspace["best_val_accuracy"] == pytest.approx(confirmed[winner][0])


def test_the_front_of_accuracy_and_time_is_printed_and_in_the_study_run(study: Study) -> None:
    metrics = _train_metrics(study.project)
    for trial in study.study.trials:  # the time objective is the trial's train_seconds
        assert trial.values[1] == metrics[f"tune-opt-{trial.number}"]["train_seconds"]
    points = study.study.best_trials
    shown = f"Pareto front ({len(points)} trials; chosen: the most accurate)"
    assert shown in study.out
    chosen = max(points, key=lambda t: (t.values[0], -t.values[1]))
    (study_run,) = _runs(study, "tags.`tune.role` = 'study'")
    assert study_run.data.tags["tune.best_trial"] == str(chosen.number)
    names = {item.path for item in study.client.list_artifacts(study_run.info.run_id, "tune")}
    assert {"tune/pareto_front.png", "tune/pareto_front.json"} <= names
    history = study.client.get_metric_history(study_run.info.run_id, "train_seconds")
    assert sorted(point.step for point in history) == [0, 1, 2]
