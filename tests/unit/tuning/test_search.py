"""Tests for the tuning core: the search space schema, trials as -S overrides, the best line."""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import optuna
import pytest
import yaml

from imgclf.params import ParamsError, TuneParams, load_params, parse_params
from imgclf.stages import tune as tune_stage
from imgclf.tuning import search

REPO_ROOT = Path(__file__).resolve().parents[3]


def _space(space: dict) -> TuneParams:
    return parse_params({"tune": {"space": space}}).tune


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"reg.l3": {"low": 0, "high": 1}}, "tune.space: key 'reg.l3' is not a params key"),
        ({"l2": {"low": 0, "high": 1}}, "key 'l2' is not a params key"),
        ({"data.seed": {"choices": [0, 1]}}, "key 'data.seed' cannot be tuned"),
        ({"tune.trials": {"low": 1, "high": 5}}, "key 'tune.trials' cannot be tuned"),
        ({"mlflow.log_model": {"choices": [True]}}, "key 'mlflow.log_model' cannot be tuned"),
        ({"optimizer.name": {"low": 0, "high": 1}}, "'optimizer.name' is not a number"),
        ({"optimizer.name": {"choices": ["adam", "adamm"]}}, "'adamm' is not allowed"),
        ({"reg.l2": {"low": 0, "high": 2}}, "key 'reg.l2': 2 is not allowed"),
        ({"train.epochs": {"low": 1, "high": 4, "step": 1.5}}, "step must be one too"),
        ({"train.epochs": {"low": 1.5, "high": 4}}, "key 'train.epochs': 1.5 is not allowed"),
        ({"reg.l2": {"low": 0.1, "high": 0.01}}, "tune.space.reg.l2: low (0.1) must be below"),
        ({"optimizer.lr": {"low": 0, "high": 0.1, "log": True}}, "log needs low > 0"),
        ({"reg.l2": {"low": 0}}, "give low and high"),
        ({"loss.name": {"choices": ["focal"], "low": 0}}, "not both"),
        ({"reg.l2": {"low": 0, "high": 1, "lo": 0}}, "tune.space.reg.l2.lo: unknown key"),
    ],
)
def test_space_errors_name_the_key(space: dict, message: str) -> None:
    with pytest.raises(ParamsError) as raised:
        _space(space)
    assert message in str(raised.value)


def test_the_shipped_params_yaml_holds_a_valid_search_space() -> None:
    settings = load_params(REPO_ROOT / "params.yaml").tune
    assert settings.metric == "best_val_accuracy"  # a val metric: the test split steers nothing
    assert {"optimizer.lr", "optimizer.momentum", "reg.l2"} <= set(settings.space_keys())
    assert settings.trials >= 1 and settings.timeout_minutes > 0
    # Each optimizer brings its own learning-rate range: SGD's and AdamW's are 100x apart.
    options = settings.space["optimizer.name"].option_spaces()
    assert {"sgd", "adamw"} <= options.keys()
    sgd, adamw = options["sgd"]["optimizer.lr"], options["adamw"]["optimizer.lr"]
    assert sgd.log and adamw.log and adamw.high <= sgd.low / 10
    assert "optimizer.momentum" not in options["adamw"]


def test_the_shipped_search_space_holds_the_shipped_recipe() -> None:
    # A space that leaves out the defaults' own values searches around another recipe (as the
    # first one did: adam at 3e-4..1e-2 beside sgd at 0.375).
    params = load_params(REPO_ROOT / "params.yaml")
    for key, dimension in params.tune.space.items():
        section, name = key.split(".")
        value = getattr(getattr(params, section), name)
        if dimension.low is None:
            assert value in dimension.values(), key
        else:
            assert dimension.low <= value <= dimension.high, key
        # The keys of the recipe's own option (sgd's lr and momentum) hold its values too.
        for inner_key, inner in dimension.option_space(value).items():
            section, name = inner_key.split(".")
            assert inner.contains(getattr(getattr(params, section), name)), inner_key


def test_tune_metric_must_be_a_val_metric() -> None:
    with pytest.raises(ParamsError, match="tune.metric"):
        parse_params({"tune": {"metric": "accuracy"}})


SPACE = {
    "optimizer.name": {"choices": ["adam", "sgd"]},
    "optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "reg.l2": {"low": 0, "high": 1e-3},
    "train.epochs": {"low": 1, "high": 9, "step": 2},
    "optimizer.nesterov": {"choices": [True, False]},
}


def test_suggested_values_respect_the_space_and_the_key_types() -> None:
    settings = _space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    for _ in range(12):
        values = search.suggest_params(study.ask(), settings.space)
        assert list(values) == list(SPACE)
        assert values["optimizer.name"] in ("adam", "sgd")
        assert 1e-4 <= values["optimizer.lr"] <= 1e-2
        assert isinstance(values["reg.l2"], float) and 0 <= values["reg.l2"] <= 1e-3
        assert isinstance(values["train.epochs"], int) and values["train.epochs"] in (1, 3, 5, 7, 9)
        assert isinstance(values["optimizer.nesterov"], bool)
        for key in ("optimizer.lr", "reg.l2"):  # cut to 4 significant digits
            assert values[key] == float(f"{values[key]:.4g}")


def test_same_seed_same_proposals() -> None:
    settings = _space(SPACE)

    def proposals(seed: int) -> list[dict]:
        study = search.create_study(f"s{seed}", None, seed)
        return [search.suggest_params(study.ask(), settings.space) for _ in range(3)]

    assert proposals(7) == proposals(7)
    assert proposals(7) != proposals(8)


# Each optimizer with its own keys; adam has none of its own (it keeps params.yaml's lr).
CONDITIONAL = {
    "optimizer.name": {
        "options": {
            "sgd": {
                "optimizer.lr": {"low": 0.1, "high": 0.75, "log": True},
                "optimizer.momentum": {"low": 0.7, "high": 0.95},
            },
            "adamw": {
                "optimizer.lr": {"low": 3e-4, "high": 1e-2, "log": True},
                "optimizer.weight_decay": {"low": 0.0, "high": 0.1},
            },
            "adam": None,
        }
    },
    "reg.l2": {"low": 1e-4, "high": 2e-3, "log": True},
}
OWN_KEYS = {
    "sgd": {"optimizer.lr", "optimizer.momentum"},
    "adamw": {"optimizer.lr", "optimizer.weight_decay"},
    "adam": set(),
}


def test_an_options_own_keys_are_drawn_only_when_it_is_chosen() -> None:
    space = _space(CONDITIONAL).space
    # Past its 5 startup trials TPE samples from the study's history, option by option.
    sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(30):
        trial = study.ask()
        values = search.suggest_params(trial, space)
        option = values["optimizer.name"]
        # The trial's -S overrides (and so its run) hold the chosen option's keys, no other.
        assert set(values) == {"optimizer.name", "reg.l2"} | OWN_KEYS[option]
        assert set(trial.params) == {"optimizer.name", "reg.l2"} | {
            search.parameter_name(key, option) for key in OWN_KEYS[option]
        }
        assert "|" not in search.reproduce_command(values)
        if "optimizer.lr" in values:
            low, high = {"sgd": (0.1, 0.75), "adamw": (3e-4, 1e-2)}[option]
            assert low <= values["optimizer.lr"] <= high
        study.tell(trial, 1.0 if option == "adamw" else values["reg.l2"])
    chosen = [trial.params["optimizer.name"] for trial in study.trials]
    assert set(chosen) == {"sgd", "adamw", "adam"}
    # TPE learnt that adamw scores best: it proposes it for most trials after the startup.
    assert chosen[5:].count("adamw") > len(chosen[5:]) / 2
    lows = {
        name: distribution.low
        for trial in study.trials
        for name, distribution in trial.distributions.items()
        if name.startswith("optimizer.lr|")
    }
    assert lows == {"optimizer.lr|sgd": 0.1, "optimizer.lr|adamw": 3e-4}


def test_a_trial_sets_the_other_options_keys_back_to_the_study_s_base() -> None:
    # In the workspace a trial starts from the last one's params.yaml: an adamw trial's weight
    # decay must not carry over into the next sgd trial.
    space = _space(CONDITIONAL).space
    drawn = {"optimizer.name": "sgd", "optimizer.lr": 0.3, "optimizer.momentum": 0.9}
    base = {"optimizer.lr": 0.375, "optimizer.momentum": 0.85, "optimizer.weight_decay": 0.0}
    ran = search.with_other_options_reset({**drawn, "reg.l2": 1e-3}, space, base)
    assert ran == {**drawn, "reg.l2": 1e-3, "optimizer.weight_decay": 0.0}
    assert search.with_other_options_reset(drawn, _space(SPACE).space, base) == drawn


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0023456, "0.0023456"),
        (1e-05, "1e-05"),
        (0.0, "0.0"),
        (3, "3"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ("adam", "adam"),
        ("categorical_crossentropy", "categorical_crossentropy"),
        ("true", "'true'"),  # the word, not the bool
        ("1e-3", "'1e-3'"),
        ("two words", "'two words'"),
        ("it's", "'it\\'s'"),
    ],
)
def test_values_are_formatted_for_hydra(value, text: str) -> None:
    assert search.format_value(value) == text


def test_round_significant() -> None:
    assert search.round_significant(0.0023456789) == 0.002346
    assert search.round_significant(123456.0) == 123500.0
    assert search.round_significant(0.0) == 0.0


def test_best_line_is_shell_quoted_and_dvc_reads_back_the_same_values(tmp_path: Path) -> None:
    from dvc.utils.hydra import apply_overrides

    values = {
        "optimizer.name": "sgd",
        "optimizer.lr": 0.002346,
        "reg.l2": 1e-05,
        "train.epochs": 3,
        "optimizer.nesterov": True,
        "mlflow.experiment_name": "it's mine",  # not tunable; only exercises the quoting
    }
    line = search.reproduce_command(values)
    assert line.startswith("dvc exp run -S optimizer.name=sgd -S optimizer.lr=0.002346 ")
    words = shlex.split(line)
    assert words[:3] == ["dvc", "exp", "run"]
    assert words[3::2] == ["-S"] * len(values)
    overrides = words[4::2]
    assert [item.split("=", 1)[0] for item in overrides] == list(values)
    # DVC's own -S parser writes the values into a copy of params.yaml: they come back equal.
    params_path = tmp_path / "params.yaml"
    params_path.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    apply_overrides(params_path, overrides)
    params = load_params(params_path)
    assert params.optimizer.name == "sgd" and params.optimizer.lr == 0.002346
    assert params.reg.l2 == 1e-05 and params.train.epochs == 3 and params.optimizer.nesterov
    assert params.mlflow.experiment_name == "it's mine"


def test_read_result(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"best_val_accuracy": 0.75, "mlflow_run_id": "abc"}))
    assert search.read_result(path, "best_val_accuracy") == (0.75, "abc")
    with pytest.raises(search.TuneError, match="no finite 'final_val_accuracy'"):
        search.read_result(path, "final_val_accuracy")
    path.write_text(json.dumps({"best_val_accuracy": math.nan}))
    with pytest.raises(search.TuneError, match="no finite"):
        search.read_result(path, "best_val_accuracy")
    with pytest.raises(search.TuneError, match="cannot read"):
        search.read_result(tmp_path / "missing.json", "best_val_accuracy")


def test_experiment_and_study_names() -> None:
    assert search.experiment_name("20260101-120000", 4) == "tune-20260101-120000-4"
    assert search.STUDY_NAME.fullmatch("lr_sweep-2")
    assert not search.STUDY_NAME.fullmatch("has space")
    assert not search.STUDY_NAME.fullmatch("-leading-dash")


def _write_params(folder: Path, **tune_settings) -> None:
    params = {"tune": {"space": {"reg.l2": {"low": 0, "high": 1e-3}}, **tune_settings}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


@pytest.fixture
def outside_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that is no DVC repository, as cwd, with the project's own MLflow store."""
    monkeypatch.chdir(tmp_path)
    for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def _stored_states(folder: Path, study_name: str) -> list:
    storage = f"sqlite:///{folder / 'mlruns' / 'optuna.db'}"
    study = optuna.load_study(study_name=study_name, storage=storage)
    return [trial.state for trial in study.trials]


def test_a_failed_trial_is_recorded_and_the_study_goes_on(
    outside_dvc: Path, with_mlflow_store, capsys
) -> None:
    import mlflow

    with_mlflow_store(outside_dvc)
    _write_params(outside_dvc)
    # Outside a DVC repository every `dvc exp run` fails.
    assert tune_stage.main(["--trials", "2", "--study", "broken"]) == 2
    out, err = capsys.readouterr()
    assert "tune: trial 0 failed (dvc exp run exited" in out
    assert "tune: trial 1 failed (dvc exp run exited" in out
    assert "no trial of study 'broken' finished" in err
    assert _stored_states(outside_dvc, "broken") == [optuna.trial.TrialState.FAIL] * 2
    mlflow.set_tracking_uri(f"sqlite:///{outside_dvc / 'mlflow.db'}")
    (parent,) = mlflow.search_runs(experiment_names=["imgclf"], output_format="list")
    assert parent.info.run_name == "tune-broken"
    assert parent.info.status == "FAILED"
    assert parent.data.tags["tune.study"] == "broken"
    assert json.loads(parent.data.params["tune.space"]) == {
        "reg.l2": {"low": 0, "high": 0.001, "log": False}
    }


def test_no_trial_starts_after_the_time_budget(
    outside_dvc: Path, with_mlflow_store, capsys
) -> None:
    with_mlflow_store(outside_dvc)
    _write_params(outside_dvc, trials=5)
    assert tune_stage.main(["--timeout-minutes", "0.0001", "--study", "hurried"]) == 2
    assert "the 0.0001 min budget is spent; stopping" in capsys.readouterr().out
    assert _stored_states(outside_dvc, "hurried") == [optuna.trial.TrialState.FAIL]


def test_bad_options_and_an_empty_space_stop_before_any_trial(outside_dvc: Path, capsys) -> None:
    _write_params(outside_dvc)
    with pytest.raises(SystemExit):
        tune_stage.main(["--trials", "0"])
    assert "--trials: must be above 0" in capsys.readouterr().err
    assert tune_stage.main(["--study", "no spaces"]) == 2
    assert "--study 'no spaces'" in capsys.readouterr().err
    (outside_dvc / "params.yaml").write_text("tune: {space: {}}\n", encoding="utf-8")
    assert tune_stage.main([]) == 2
    assert "tune.space in params.yaml is empty" in capsys.readouterr().err
    assert not (outside_dvc / "mlruns").exists() and not (outside_dvc / "mlflow.db").exists()


def test_a_bad_option_stops_before_any_trial_naming_its_key(outside_dvc: Path, capsys) -> None:
    space = {"optimizer.name": {"options": {"adamw": {"optimizer.lr": {"low": 1e-4, "high": 20}}}}}
    params = {"tune": {"space": space}}
    (outside_dvc / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    assert tune_stage.main(["--study", "bad"]) == 2
    err = capsys.readouterr().err
    assert "key 'optimizer.lr' in option 'adamw' of optimizer.name: 20 is not allowed" in err
    assert not (outside_dvc / "mlruns").exists() and not (outside_dvc / "mlflow.db").exists()


def test_workers_and_storage_are_checked_before_any_trial(outside_dvc: Path, capsys) -> None:
    from support.mlflow_server import free_port

    _write_params(outside_dvc)
    with pytest.raises(SystemExit):
        tune_stage.main(["--workers", "0"])
    assert (
        "--workers: must be above 0, got 0 (1 runs the trials one after" in capsys.readouterr().err
    )
    url = f"postgresql://tuner:pw@127.0.0.1:{free_port()}/optuna"
    assert tune_stage.main(["--storage", url, "--study", "far"]) == 2
    err = capsys.readouterr().err
    assert "cannot open the study storage postgresql://tuner:***@127.0.0.1" in err
    assert not (outside_dvc / "mlflow.db").exists()  # no MLflow run
    assert not (outside_dvc / "mlruns").exists()  # no trial, no artifact


def _finished_study(folder: Path, name: str, accuracies: list[float]) -> None:
    """A study whose trials ended (one pruned), as `imgclf tune` records them."""
    (folder / "mlruns").mkdir(exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=f"sqlite:///{folder / 'mlruns' / 'optuna.db'}",
        direction="maximize",
    )
    for index, accuracy in enumerate(accuracies):
        trial = study.ask()
        values = {"reg.l2": trial.suggest_float("reg.l2", 0, 1e-3), "optimizer.name": "adam"}
        trial.suggest_categorical("optimizer.name", ["adam", "sgd"])
        trial.set_user_attr("values", values)
        trial.report(accuracy, 1)
        if index == len(accuracies) - 1:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, accuracy)


def test_report_prints_importances_and_the_best_line(outside_dvc: Path, capsys) -> None:
    _write_params(outside_dvc)
    _finished_study(outside_dvc, "done", [0.6, 0.8, 0.7, 0.1])
    assert tune_stage.main(["--report", "done"]) == 0
    out = capsys.readouterr().out
    assert "study 'done': 4 trials (3 complete, 1 pruned)" in out
    assert re.search(r"^reg\.l2\s+\d\.\d{3}$", out, re.M)
    assert re.search(r"^optimizer\.name\s+\d\.\d{3}$", out, re.M)
    best = optuna.load_study(
        study_name="done", storage=f"sqlite:///{outside_dvc / 'mlruns' / 'optuna.db'}"
    ).trials[1]
    assert "best: trial 1 (tune-done-1), best_val_accuracy 0.8000" in out
    assert out.strip().splitlines()[-1] == search.reproduce_command(best.user_attrs["values"])
    assert tune_stage.main(["--report", "other"]) == 2
    assert "no study 'other' in sqlite:///" in capsys.readouterr().err


def test_a_study_that_holds_its_budget_runs_nothing_and_keeps_one_mlflow_run(
    outside_dvc: Path, with_mlflow_store, capsys
) -> None:
    import mlflow

    with_mlflow_store(outside_dvc)
    _write_params(outside_dvc)
    _finished_study(outside_dvc, "full", [0.6, 0.8, 0.1])
    for _ in range(2):  # two sessions of one study: no trial starts, one MLflow run for both
        assert tune_stage.main(["--trials", "3", "--study", "full"]) == 0
        out = capsys.readouterr().out
        assert "the study holds its 3 trials; stopping" in out
        assert "2 of 3 trials finished, 1 pruned; 0 ran here, 3 on other workers" in out
    mlflow.set_tracking_uri(f"sqlite:///{outside_dvc / 'mlflow.db'}")
    (parent,) = mlflow.search_runs(experiment_names=["imgclf"], output_format="list")
    assert parent.info.run_name == "tune-full" and parent.data.tags["tune.best_trial"] == "1"
    client = mlflow.MlflowClient()
    logged = {item.path for item in client.list_artifacts(parent.info.run_id, "tune")}
    assert logged == {
        "tune/trials.json",
        "tune/importances.json",
        "tune/optimization_history.png",
        "tune/param_importances.png",
    }
    stored = optuna.load_study(
        study_name="full", storage=f"sqlite:///{outside_dvc / 'mlruns' / 'optuna.db'}"
    )
    assert stored.user_attrs["mlflow_run_id"] == parent.info.run_id
    assert len(stored.trials) == 3
