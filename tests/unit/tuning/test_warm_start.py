"""Tests for the warm start: a new study's first trials are the recipe and each option at its
start, enqueued in a real Optuna study, once per study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from imgclf.params import load_params, parse_params
from imgclf.stages import tune as tune_stage
from imgclf.tuning import search, warm_start

REPO_ROOT = Path(__file__).resolve().parents[3]

SPACE = {
    "optimizer.name": {
        "options": {
            "sgd": {
                "optimizer.lr": {"low": 0.1, "high": 0.75, "log": True},
                "optimizer.momentum": {"low": 0.7, "high": 0.95},
            },
            "adamw": {
                "optimizer.lr": {"low": 3e-4, "high": 1e-2, "log": True, "start": 3e-3},
                "optimizer.weight_decay": {"low": 0.0, "high": 0.1, "start": 0.0},
            },
        }
    },
    "reg.l2": {"low": 1e-4, "high": 2e-3, "log": True},
}
# What the trials run with params.yaml's defaults (sgd at 0.375, momentum 0.85, l2 0.00066).
RECIPE = {
    "optimizer.name": "sgd",
    "optimizer.lr": 0.375,
    "optimizer.momentum": 0.85,
    "reg.l2": 0.00066,
}
ADAMW = {
    "optimizer.name": "adamw",
    "optimizer.lr": 0.003,
    "optimizer.weight_decay": 0.0,
    "reg.l2": 0.00066,
}


def _first_trials(space: dict, **sections: dict) -> tuple[list, list[str]]:
    params = parse_params({**sections, "tune": {"space": space}})
    recipe = warm_start.recipe_values(params, params.tune)
    return warm_start.first_trials(params.tune.space, recipe)


def test_the_shipped_space_starts_from_the_recipe_then_each_optimizer() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    recipe = warm_start.recipe_values(params, params.tune)
    trials, notes = warm_start.first_trials(params.tune.space, recipe)
    assert notes == []
    assert [trial.label for trial in trials] == [
        warm_start.RECIPE,
        *(f"optimizer.name={option}" for option in params.tune.space["optimizer.name"].values()
          if option != params.optimizer.name),
    ]  # fmt: skip
    first, adamw = trials[0].params, trials[1].params
    assert first["optimizer.name"] == params.optimizer.name == "sgd"
    assert first["optimizer.lr|sgd"] == params.optimizer.lr
    assert first["reg.l2"] == params.reg.l2 == adamw["reg.l2"]
    # The ablation's Adam row: 3e-3, no decoupled decay (docs/results/ablation.md).
    assert (adamw["optimizer.lr|adamw"], adamw["optimizer.weight_decay|adamw"]) == (3e-3, 0.0)
    assert "optimizer.momentum|adamw" not in adamw


def test_a_new_study_runs_the_enqueued_trials_first_then_samples() -> None:
    settings = parse_params({"tune": {"space": SPACE}}).tune
    trials, _ = _first_trials(SPACE)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    assert warm_start.enqueue(study, trials, budget=20) == trials
    drawn = []
    for _ in range(6):
        trial = study.ask()
        drawn.append(search.suggest_params(trial, settings.space))
        study.tell(trial, 0.5)
    assert drawn[:2] == [RECIPE, ADAMW]
    assert [trial.params for trial in study.trials[:2]] == [trial.params for trial in trials]
    labels = [trial.user_attrs.get(warm_start.ATTRIBUTE) for trial in study.trials]
    assert labels == [warm_start.RECIPE, "optimizer.name=adamw", None, None, None, None]
    assert all(values not in (RECIPE, ADAMW) for values in drawn[2:])  # sampled, not queued


def test_the_budget_caps_the_enqueued_trials() -> None:
    trials, _ = _first_trials(SPACE)
    study = optuna.create_study()
    assert warm_start.enqueue(study, trials, budget=1) == trials[:1]
    assert [trial.state.name for trial in study.trials] == ["WAITING"]


def test_a_recipe_outside_the_space_is_left_out_with_a_note() -> None:
    trials, notes = _first_trials(SPACE, reg={"l2": 0.01})
    assert trials == []  # every first trial keeps the recipe's reg.l2
    assert notes[0] == (
        f"{warm_start.RECIPE} is not enqueued: reg.l2 is 0.01 in params.yaml, outside tune.space"
    )


def test_an_option_without_a_start_takes_params_yaml_value_where_it_fits() -> None:
    space = {
        "optimizer.name": {
            "options": {
                "sgd": {"optimizer.lr": {"low": 0.1, "high": 0.75, "log": True}},
                "lion": {"optimizer.lr": {"low": 1e-5, "high": 1e-3, "log": True}},
                "rmsprop": {"optimizer.momentum": {"low": 0.0, "high": 0.9}},
            }
        }
    }
    trials, notes = _first_trials(space)
    assert [trial.params for trial in trials] == [
        {"optimizer.name": "sgd", "optimizer.lr|sgd": 0.375},
        {"optimizer.name": "rmsprop", "optimizer.momentum|rmsprop": 0.85},
    ]  # the sgd option is the recipe itself: it runs once
    assert notes == [
        "optimizer.name=lion is not enqueued: optimizer.lr is 0.375 in params.yaml, outside "
        "option 'lion''s range (give it a start)"
    ]


def test_a_plain_list_of_choices_starts_from_the_recipe_only() -> None:
    trials, notes = _first_trials({"optimizer.name": {"choices": ["adam", "sgd"]}})
    assert [trial.params for trial in trials] == [{"optimizer.name": "sgd"}] and notes == []


@pytest.fixture
def outside_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that is no DVC repository, as cwd: every trial's `dvc exp run` fails fast,
    while the study and its enqueued trials are real and stored."""
    monkeypatch.chdir(tmp_path)
    for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def _stored(folder: Path, name: str) -> list:
    storage = f"sqlite:///{folder / 'mlruns' / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=storage).trials


def test_only_the_session_that_creates_the_study_enqueues(
    outside_dvc: Path, with_mlflow_store, capsys
) -> None:
    with_mlflow_store(outside_dvc)
    params = {"tune": {"space": SPACE}}
    (outside_dvc / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    tune_stage.main(["--trials", "3", "--study", "warm"])
    out = capsys.readouterr().out
    assert "the first 2 trial(s) are enqueued, not sampled: the recipe (params.yaml); " in out
    tune_stage.main(["--trials", "4", "--study", "warm"])  # the study continued: none again
    assert "enqueued" not in capsys.readouterr().out
    stored = _stored(outside_dvc, "warm")
    # What they ran: the other option's keys set back to params.yaml's values as well.
    ran = [{**RECIPE, "optimizer.weight_decay": 0.0}, {**ADAMW, "optimizer.momentum": 0.85}]
    assert [trial.user_attrs.get("values") for trial in stored[:2]] == ran
    assert "-S optimizer.name=sgd -S optimizer.lr=0.375 -S optimizer.momentum=0.85 " in out
    labels = [trial.user_attrs.get(warm_start.ATTRIBUTE) for trial in stored]
    assert labels == [warm_start.RECIPE, "optimizer.name=adamw", None, None]
    assert [trial.state.name for trial in stored] == ["FAIL"] * 4


def test_a_budget_of_only_the_enqueued_trials_runs_them_all(
    outside_dvc: Path, with_mlflow_store, capsys
) -> None:
    # The enqueued trials are stored (WAITING) before any runs: they must not count as spent.
    with_mlflow_store(outside_dvc)
    params = {"tune": {"space": SPACE}}
    (outside_dvc / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    tune_stage.main(["--trials", "2", "--study", "exact"])
    out = capsys.readouterr().out
    assert "tune: trial 0 " in out and "tune: trial 1 " in out
    stored = _stored(outside_dvc, "exact")
    assert [trial.state.name for trial in stored] == ["FAIL", "FAIL"]  # ran (outside DVC: failed)
    labels = [trial.user_attrs.get(warm_start.ATTRIBUTE) for trial in stored]
    assert labels == [warm_start.RECIPE, "optimizer.name=adamw"]


def test_warm_start_false_samples_from_the_first_trial(
    outside_dvc: Path, with_mlflow_store, capsys
) -> None:
    with_mlflow_store(outside_dvc)
    params = {"tune": {"space": SPACE, "warm_start": False}}
    (outside_dvc / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    tune_stage.main(["--trials", "1", "--study", "cold"])
    assert "enqueued" not in capsys.readouterr().out
    (trial,) = _stored(outside_dvc, "cold")
    assert warm_start.ATTRIBUTE not in trial.user_attrs
    assert trial.user_attrs["values"] != RECIPE
