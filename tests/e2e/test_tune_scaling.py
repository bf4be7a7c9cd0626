"""End to end: pruned trials, trials in parallel, and two `imgclf tune` processes on one
PostgreSQL study, on the tiny synthetic pipeline with the real dvc, MLflow and Optuna.

The search space pits a learning rate that learns against one that cannot (1e-7), so a
median pruner has something to stop after the first epoch. Each test uses its own sampler
seed, far from the others: trial k draws with tune.seed + k, and a trial with the same params
as an earlier one would be restored from DVC's run cache (no training, no MLflow run). For the
same reason warm start is off but where a test sets params.yaml to values no trial ran: its
first trial would be params.yaml's values, which the last trial run in the workspace left.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from support.postgres import throwaway_postgres
from support.project import STUDY_EVALUATE, TINY_PARAMS, make_project, pipeline_env, run

pytestmark = pytest.mark.slow

EPOCHS = 3
PARAMS = {
    **TINY_PARAMS,
    "train": {**TINY_PARAMS["train"], "epochs": EPOCHS},
    "mlflow": {"log_model": False},
    "evaluate": STUDY_EVALUATE,
    "tune": {
        "warm_start": False,
        "pruner": "median",
        "pruner_startup_trials": 1,
        "space": {
            "optimizer.lr": {"choices": [0.002, 1.0e-7]},
            "reg.l2": {"low": 0.0, "high": 1.0e-4},
        },
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_project(tmp_path_factory.mktemp("tune-scaling"), PARAMS)
    run(["dvc", "repro"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "baseline"], path)
    return path


def _set_seed(project: Path, seed: int, warm_start_l2: float | None = None) -> None:
    """tune.seed; with warm_start_l2, warm start on and params.yaml's reg.l2 at that value."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["tune"]["seed"] = seed
    if warm_start_l2 is not None:
        params["tune"]["warm_start"] = True
        params["reg"]["l2"] = warm_start_l2
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def _study(project: Path, name: str, storage: str | None = None) -> optuna.Study:
    storage = storage or f"sqlite:///{project / 'mlruns' / 'optuna.db'}"
    return optuna.load_study(study_name=name, storage=storage)


def _experiments(project: Path) -> dict[str, dict]:
    """train.json of every experiment in `dvc exp show --json`, by name."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    rows = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment["revs"]:
                metrics = revision["data"]["metrics"]["reports/metrics/train.json"]["data"]
                rows[revision["name"]] = metrics
    return rows


def _trial_runs(client: MlflowClient, study: str) -> dict[int, list]:
    experiment = client.get_experiment_by_name("imgclf")
    found: dict[int, list] = {}
    for recorded in client.search_runs(
        [experiment.experiment_id], f"tags.`tune.study` = '{study}'", max_results=500
    ):
        if recorded.data.tags.get("tune.role") != "study":
            found.setdefault(int(recorded.data.tags["tune.trial"]), []).append(recorded)
    return found


def test_a_pruned_trial_is_recorded_as_pruned_everywhere(project: Path) -> None:
    # Trial k draws with seed 2 + k: lr 0.002, 1e-7, 0.002, so trial 1 lags.
    _set_seed(project, 2)
    out = run(["imgclf", "tune", "--trials", "3", "--study", "prune"], project).stdout
    states = {trial.number: trial.state for trial in _study(project, "prune").trials}
    pruned = [number for number, state in states.items() if state.name == "PRUNED"]
    assert pruned, out
    assert "trial pruned after epoch 1 of 3" in out
    rows = _experiments(project)
    runs = _trial_runs(MlflowClient(f"sqlite:///{project / 'mlflow.db'}"), "prune")
    assert sorted(runs) == [0, 1, 2]
    for number, state in states.items():
        (recorded,) = runs[number]
        metrics = rows[f"tune-prune-{number}"]
        assert metrics["mlflow_run_id"] == recorded.info.run_id
        if number in pruned:
            assert metrics["pruned"] is True and metrics["epochs"] < EPOCHS
            assert recorded.data.tags["tune.pruned"] == "true"
            assert recorded.data.tags["tune.pruned_at_epoch"] == str(metrics["epochs"])
        else:
            assert state.name == "COMPLETE" and metrics["pruned"] is False
            assert metrics["epochs"] == EPOCHS and recorded.data.tags["tune.pruned"] == "false"

    report = run(["imgclf", "tune", "--report", "prune"], project).stdout
    assert f"3 trials ({3 - len(pruned)} complete, {len(pruned)} pruned)" in report
    assert report.strip().splitlines()[-1] == out.strip().splitlines()[-1]


def test_two_workers_run_trials_at_once_and_lose_none(project: Path) -> None:
    _set_seed(project, 10)  # seeds 10-12: no trial repeats another test's (the run cache)
    # Three trials on two workers: two at once, and one that waits for a free worker.
    run(["imgclf", "tune", "--trials", "3", "--study", "par", "--workers", "2"], project)
    assert [t.state.name != "FAIL" for t in _study(project, "par").trials] == [True] * 3
    rows = _experiments(project)
    runs = _trial_runs(MlflowClient(f"sqlite:///{project / 'mlflow.db'}"), "par")
    assert sorted(runs) == [0, 1, 2]
    for number, (recorded,) in runs.items():
        assert rows[f"tune-par-{number}"]["mlflow_run_id"] == recorded.info.run_id
        assert recorded.info.status == "FINISHED"
    spans = sorted((r.info.start_time, r.info.end_time) for (r,) in runs.values())
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with throwaway_postgres("optuna") as uri:
        yield uri


def test_two_processes_share_one_postgres_study(
    project: Path, postgres: str, tmp_path: Path
) -> None:
    """Two checkouts (two machines) and one MLflow store; the study lives in PostgreSQL.

    Warm start is on: the process that creates the study enqueues params.yaml's values as
    trial 0, and the other waits for the study's MLflow run meanwhile."""
    _set_seed(project, 20, warm_start_l2=1.234e-05)  # in the space; no trial draws it
    clones = [tmp_path / "a", tmp_path / "b"]
    for clone in clones:
        shutil.copytree(project, clone, symlinks=True)
    store = f"sqlite:///{tmp_path / 'team-mlflow.db'}"
    command = ["imgclf", "tune", "--trials", "3", "--study", "team", "--storage", postgres]
    env = pipeline_env({"MLFLOW_TRACKING_URI": store})
    processes = [
        subprocess.Popen(command, cwd=clone, env=env, stdout=subprocess.PIPE, text=True)
        for clone in clones
    ]
    outputs = [process.communicate(timeout=900)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs

    trials = _study(project, "team", postgres).trials
    ran = [t for t in trials if "skipped" not in t.user_attrs]
    assert sorted(t.number for t in ran) == [0, 1, 2]  # unique numbers, the budget in total
    first = next(t for t in trials if t.number == 0)
    assert first.user_attrs["values"] == {"optimizer.lr": 0.002, "reg.l2": 1.234e-05}
    assert first.user_attrs["warm_start"] == "the recipe (params.yaml)"
    assert all(t.state.name == "FAIL" for t in trials if t not in ran)
    counts = [int(re.search(r"(\d+) ran here, (\d+) on other", out).group(1)) for out in outputs]
    assert sum(counts) == 3 and min(counts) >= 1, outputs
    for out in outputs:  # each process's summary counts the other's trials
        assert re.search(r"[1-9]\d* on other workers", out), out
    runs = _trial_runs(MlflowClient(store), "team")
    finished = {t.number for t in ran if t.state.name in ("COMPLETE", "PRUNED")}
    assert {number: len(found) for number, found in runs.items()} == dict.fromkeys(finished, 1), (
        outputs
    )
    study_runs = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("imgclf").experiment_id],
        "tags.`tune.role` = 'study'",
    )
    assert len(study_runs) == 1
    for found in runs.values():
        assert found[0].data.tags["mlflow.parentRunId"] == study_runs[0].info.run_id
