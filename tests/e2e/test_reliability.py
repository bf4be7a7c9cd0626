"""End to end: faults in the pipeline itself, with the real dvc and mlflow on tiny data.

The tests share one project and run in file order: a `dvc repro` whose train stage is SIGKILLed
mid-fit, a run with other params, the resume; then outputs edited by hand and a validation that
fails. (Queued experiments, one of them broken, are tested in test_experiments.py.)
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow import MlflowClient

from support.project import TINY_PARAMS, make_project, pipeline_env, run

pytestmark = pytest.mark.slow

EPOCHS = 4
# Four short epochs: the kill lands after the first is saved and well before the last.
PARAMS = {
    **TINY_PARAMS,
    "train": {"epochs": EPOCHS, "batch_size": 32},
    "mlflow": {"log_model": False},
}
BACKUPS = Path(".dvc/tmp/imgclf-train-backup")


def _client(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def _runs(project: Path) -> list:
    client = _client(project)
    experiment = client.get_experiment_by_name("imgclf")
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def _loss_steps(project: Path, run_id: str) -> list[int]:
    return sorted(point.step for point in _client(project).get_metric_history(run_id, "loss"))


def _lock_stages(project: Path) -> dict:
    lock = project / "dvc.lock"
    return yaml.safe_load(lock.read_text())["stages"] if lock.exists() else {}


def _set_params(project: Path, section: str, **values) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # it ended meanwhile
        return []


def _repro_killing_train_after_an_epoch(project: Path) -> tuple[int, str]:
    """`dvc repro`, SIGKILLing the train stage's process once an epoch is saved."""
    repro = subprocess.Popen(
        ["dvc", "repro"],
        cwd=project,
        env=pipeline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((project / BACKUPS).glob("*/epoch-*")):
            assert repro.poll() is None, repro.stdout.read()
            assert time.monotonic() < deadline, "no epoch was saved in 300 s"
            time.sleep(0.02)
        (stage,) = [
            child
            for child in psutil.Process(repro.pid).children(recursive=True)
            if "imgclf.stages.train" in _cmdline(child)  # python -m ..., not the shell around it
        ]
        stage.send_signal(signal.SIGKILL)
        output, _ = repro.communicate(timeout=120)
    finally:
        if repro.poll() is None:
            repro.kill()
    return repro.returncode, output


@dataclass
class Story:
    """What happened to the shared project, for the tests to check."""

    project: Path
    kill_exit: int = 0
    kill_output: str = ""
    lock_after_kill: dict = field(default_factory=dict)
    killed_run: object = None
    killed_state: list[str] = field(default_factory=list)
    other_params_run: object = None
    killed_state_after_other: list[str] = field(default_factory=list)
    resume_output: str = ""


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    project = make_project(tmp_path_factory.mktemp("reliability"), PARAMS)
    l2 = yaml.safe_load((project / "params.yaml").read_text())["reg"]["l2"]
    told = Story(project)
    told.kill_exit, told.kill_output = _repro_killing_train_after_an_epoch(project)
    told.lock_after_kill = _lock_stages(project)
    (told.killed_run,) = _runs(project)
    told.killed_state = sorted(p.name for p in (project / BACKUPS).glob("*/*"))

    # Other params between the kill and the resume: a fresh run, not the killed one's state.
    _set_params(project, "reg", l2=0.001)
    run(["dvc", "repro", "--single-item", "train"], project)
    (told.other_params_run,) = [
        r for r in _runs(project) if r.info.run_id != told.killed_run.info.run_id
    ]
    told.killed_state_after_other = sorted(p.name for p in (project / BACKUPS).glob("*/*"))

    # The killed run's params again: it resumes.
    _set_params(project, "reg", l2=l2)
    told.resume_output = run(["dvc", "repro"], project).stdout
    yield told
    # A failed test must not leave queue workers training in the background.
    subprocess.run(
        ["dvc", "queue", "stop", "--kill"], cwd=project, env=pipeline_env(), capture_output=True
    )


def test_sigkill_mid_train_leaves_dvc_lock_and_the_next_repro_resumes(story: Story) -> None:
    project, killed = story.project, story.killed_run
    assert story.kill_exit != 0, story.kill_output
    assert {"download", "preprocess", "validate", "augment"} <= set(story.lock_after_kill)
    assert "train" not in story.lock_after_kill and "evaluate" not in story.lock_after_kill
    assert killed.info.status == "RUNNING"  # SIGKILL gives no chance to end it
    assert "run.json" in story.killed_state and any(
        name.startswith("epoch-") for name in story.killed_state
    )

    resumed = _client(project).get_run(killed.info.run_id)
    done = int(resumed.data.tags["resumed_from_epoch"])
    assert 1 <= done < EPOCHS
    assert f"resuming after epoch {done}" in story.resume_output
    assert resumed.info.status == "FINISHED"
    assert _loss_steps(project, killed.info.run_id) == list(range(1, EPOCHS + 1))
    assert "test_accuracy" in resumed.data.metrics  # evaluate logged into the same run
    train_json = json.loads((project / "reports/metrics/train.json").read_text())
    assert train_json["mlflow_run_id"] == killed.info.run_id
    assert train_json["epochs"] == EPOCHS
    assert not list((project / BACKUPS).glob("*/epoch-*"))
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_params_changed_between_kill_and_resume_start_afresh(story: Story) -> None:
    other, killed = story.other_params_run, story.killed_run
    assert other.info.run_id != killed.info.run_id
    assert "resumed_from_epoch" not in other.data.tags
    assert other.data.params["reg.l2"] == "0.001"
    assert other.info.status == "FINISHED"
    assert _loss_steps(story.project, other.info.run_id) == list(range(1, EPOCHS + 1))
    # The killed run's state stayed untouched for its own params, which later resumed it.
    assert story.killed_state_after_other == story.killed_state


def test_hand_edited_or_deleted_outputs_are_detected_and_restored(story: Story) -> None:
    project = story.project
    model, metrics = project / "models/model.keras", project / "reports/metrics/eval.json"
    model_bytes, metrics_text = model.read_bytes(), metrics.read_text()
    model.unlink()
    metrics.write_text(metrics_text.replace('"accuracy"', '"accuracy_edited"'))
    status = run(["dvc", "status"], project).stdout
    assert "models/model.keras" in status and "reports/metrics/eval.json" in status
    run(["dvc", "repro"], project)
    assert model.read_bytes() == model_bytes
    assert metrics.read_text() == metrics_text
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_failed_validation_stops_repro_before_augment_and_train(story: Story) -> None:
    project = story.project
    before_lock, before_runs = _lock_stages(project), len(_runs(project))
    _set_params(project, "validate", min_rows=1_000_000)
    result = subprocess.run(
        ["dvc", "repro"], cwd=project, env=pipeline_env(), capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert _ran_stages(output) == {"validate"}
    assert "data checks failed" in output
    report = json.loads((project / "reports/validation/result.json").read_text())
    assert report["success"] is False
    after = _lock_stages(project)
    assert {name: after[name] for name in ("augment", "train", "evaluate")} == {
        name: before_lock[name] for name in ("augment", "train", "evaluate")
    }
    assert len(_runs(project)) == before_runs
    _set_params(project, "validate", min_rows=100)
    run(["dvc", "repro"], project)  # the passing result comes back (from DVC's run cache)
    assert json.loads((project / "reports/validation/result.json").read_text())["success"]
