"""End to end: a study that chooses the optimizer, each with its own settings, and starts from
the recipe and each option's start, on the tiny synthetic pipeline with the real dvc, MLflow
and Optuna."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from support.project import TINY_PARAMS, make_project, run

pytestmark = pytest.mark.slow

# The tiny recipe is Adam at 0.002; SGD's rates are ten times higher, so each optimizer has
# its own range, and SGD alone tunes momentum.
PARAMS = {
    **TINY_PARAMS,
    "mlflow": {"log_model": False},
    "tune": {
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
        }
    },
}
# What the first two trials ran: a key of the option not chosen is set back to params.yaml's
# value, since a trial in the workspace starts from the last trial's params.yaml.
FIRST = [
    {"optimizer.name": "adam", "optimizer.lr": 0.002, "optimizer.momentum": 0.85},
    {"optimizer.name": "sgd", "optimizer.lr": 0.05, "optimizer.momentum": 0.9},
]


def test_a_study_starts_from_the_recipe_and_each_option_then_draws_only_their_keys(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project", PARAMS)
    out = run(["imgclf", "tune", "--trials", "3", "--study", "opt"], project, 1800).stdout
    assert "the first 2 trial(s) are enqueued, not sampled" in out
    lines = re.findall(r"^tune: trial (\d) \(tune-opt-\d\): (dvc exp run .*)$", out, re.M)
    assert [number for number, _ in lines] == ["0", "1", "2"]
    assert lines[0][1] == (
        "dvc exp run -S optimizer.name=adam -S optimizer.lr=0.002 -S optimizer.momentum=0.85"
    )
    assert lines[1][1] == (
        "dvc exp run -S optimizer.name=sgd -S optimizer.lr=0.05 -S optimizer.momentum=0.9"
    )
    study = optuna.load_study(study_name="opt", storage=f"sqlite:///{project}/mlruns/optuna.db")
    values = [trial.user_attrs["values"] for trial in study.trials]
    assert values[:2] == FIRST
    assert set(values[2]) == {"optimizer.name", "optimizer.lr", "optimizer.momentum"}
    assert all(trial.state.name == "COMPLETE" for trial in study.trials)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("imgclf")
    for number, drawn in enumerate(values):
        (recorded,) = client.search_runs(
            [experiment.experiment_id], f"tags.`tune.trial` = '{number}'"
        )
        logged = recorded.data.params
        assert float(logged["optimizer.lr"]) == pytest.approx(drawn["optimizer.lr"])
        assert logged["optimizer.name"] == drawn["optimizer.name"]
        # An adam trial after the sgd one trained with params.yaml's momentum, not sgd's draw.
        assert float(logged["optimizer.momentum"]) == pytest.approx(drawn["optimizer.momentum"])
