"""End to end: the real dvc and mlflow on tiny synthetic data in a throw-away git repository."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

from imgclf.stages import predict
from support.project import (
    TINY_PARAMS,
    CommandFailed,
    is_torn_read,
    make_project,
    pipeline_env,
    run,
    start_queue,
    wait_for_queue,
)

pytestmark = pytest.mark.slow

STAGES = ("download", "preprocess", "validate", "augment", "train", "evaluate")


def _declared_outputs(project: Path) -> list[Path]:
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.append(project / (entry if isinstance(entry, str) else next(iter(entry))))
    return paths


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


def _runs(project: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["imgclf"], output_format="list")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_project(tmp_path_factory.mktemp("project"), TINY_PARAMS)
    result = run(["dvc", "repro"], path)
    assert _ran_stages(result.stdout) == set(STAGES), result.stdout
    return path


def test_repro_creates_every_declared_output(project: Path) -> None:
    outputs = _declared_outputs(project)
    assert len(outputs) >= 12
    missing = [str(path.relative_to(project)) for path in outputs if not path.exists()]
    assert missing == []
    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    assert {"accuracy", "macro_f1", "loss", "per_class_accuracy"} <= evaluation.keys()
    # Ten balanced synthetic classes: one tiny epoch must still clearly beat chance (0.1).
    assert evaluation["accuracy"] > 0.2
    training = json.loads((project / "reports/metrics/train.json").read_text())
    assert training["epochs"] == 1 and training["train_seconds"] > 0
    assert training["mlflow_run_id"] == evaluation["mlflow_run_id"]


def test_repro_run_is_recorded_in_the_project_store(project: Path) -> None:
    runs = _runs(project)
    assert len(runs) == 1
    recorded = runs[0]
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params["data.source"] == "synthetic"
    assert recorded.data.tags["data.validation"] == "passed"
    assert recorded.data.tags["device"] == "CPU"
    assert "test_accuracy" in recorded.data.metrics and "val_accuracy" in recorded.data.metrics
    history = mlflow.MlflowClient().get_metric_history(recorded.info.run_id, "val_accuracy")
    assert [point.step for point in history] == [1]
    # One epoch, too few for progressive resizing: it trained at the images' own side.
    shape = json.loads((project / "data/prepared/classes.json").read_text())["image_shape"]
    sides = mlflow.MlflowClient().get_metric_history(recorded.info.run_id, "image_side")
    assert [(point.step, point.value) for point in sides] == [(1, min(shape[:2]))]
    side_file = project / "dvclive/plots/metrics/image_side.tsv"  # DVCLive's: step = epoch
    with open(side_file, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(int(row["step"]), float(row["image_side"])) for row in rows] == [(1, min(shape[:2]))]


def test_run_records_its_data_and_a_model_that_names_its_classes(project: Path) -> None:
    (recorded,) = _runs(project)
    contexts = {
        next(tag.value for tag in item.tags if tag.key == "mlflow.data.context")
        for item in recorded.inputs.dataset_inputs
    }
    assert contexts == {"training", "validation", "testing"}
    client = mlflow.MlflowClient()
    (output,) = recorded.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    classes = json.loads((project / "data/prepared/classes.json").read_text())["classes"]
    description = mlflow.models.Model.load(logged.model_uri)
    assert description.metadata["class_names"] == classes
    assert description.saved_input_example_info is not None
    # Evaluate's test metrics belong to the LoggedModel, as well as to the run.
    linked = {metric.key: metric.value for metric in logged.metrics}
    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    assert linked["test_accuracy"] == pytest.approx(evaluation["accuracy"])


def test_evaluate_writes_the_model_card_and_logs_it(project: Path, tmp_path: Path) -> None:
    (recorded,) = _runs(project)
    card = (project / "reports/model_card.md").read_text(encoding="utf-8")
    assert card.startswith(f"# Model card: imgclf (run {recorded.info.run_id})")
    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    accuracy = f"- Accuracy: {evaluation['accuracy']:.4f} on {evaluation['num_test_images']}"
    assert accuracy in card and "## Per class" in card and "## Corruption robustness" in card
    # A real run records everything the card reads: nothing is missing.
    assert "## Missing" not in card and "- Source: synthetic" in card
    assert re.search(r"- Wall time of fit: \d+\.\d s", card) and "- Device: CPU" in card
    client = mlflow.MlflowClient()
    logged = client.download_artifacts(recorded.info.run_id, "eval/model_card.md", str(tmp_path))
    assert Path(logged).read_text(encoding="utf-8") == card


def _evaluated_labels(project: Path) -> list[str]:
    """Evaluate's prediction per test image, in test order (its confusion.csv rows)."""
    with open(project / "reports/plots/confusion.csv", encoding="utf-8", newline="") as handle:
        return [row["predicted"] for row in csv.DictReader(handle)]


def test_predict_on_the_exported_test_split_agrees_with_evaluate(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with np.load(project / "data/prepared/test.npz") as split:
        images = split["images"]
    folder = tmp_path / "test"
    folder.mkdir()
    for index, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    for variable in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(project)  # the defaults: models/model.keras, data/prepared/classes.json
    assert predict.main([str(folder), "--out", str(tmp_path / "local.csv")]) == 0
    (recorded,) = _runs(project)
    from_run = ["--model", f"runs:/{recorded.info.run_id}/model"]
    assert predict.main([str(folder), *from_run, "--out", str(tmp_path / "run.csv")]) == 0

    evaluated = _evaluated_labels(project)
    for name in ("local.csv", "run.csv"):
        with open(tmp_path / name, encoding="utf-8", newline="") as handle:
            assert [row["class"] for row in csv.DictReader(handle)] == evaluated, name
    with open(project / "reports/plots/confusion.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    accuracy = np.mean([row["actual"] == row["predicted"] for row in rows])
    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    assert accuracy == pytest.approx(evaluation["accuracy"])


PLAIN_KERAS = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    model = keras.saving.load_model("models/model.keras")
    images = np.load("data/prepared/test.npz")["images"]
    assert images.dtype == np.uint8  # raw pixels: the model normalises inside
    names = json.load(open("data/prepared/classes.json"))["classes"]
    labels = [names[i] for i in model.predict(images, verbose=0).argmax(axis=1)]
    assert not [name for name in sys.modules if name.split(".")[0] == "imgclf"]
    print(json.dumps(labels))
    """
)


def test_model_file_loads_in_plain_keras_and_predicts_what_evaluate_scored(
    project: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS],
        cwd=project,
        env=pipeline_env({"PYTHONPATH": ""}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == _evaluated_labels(project)


def test_second_repro_runs_no_stage(project: Path) -> None:
    result = run(["dvc", "repro"], project)
    assert _ran_stages(result.stdout) == set()
    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout


# The model file and the metrics are what a teammate pulls instead of training again.
PULLED = ("models/model.keras", "reports/metrics/eval.json", "reports/metrics/train.json")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_then_fresh_clone_pulls_everything_and_has_nothing_to_run(
    project: Path, tmp_path: Path
) -> None:
    """A DVC remote carries the outputs to a fresh clone (a folder remote; S3 or GCS differ in URL).

    After `dvc push`, `git clone` + `dvc pull` elsewhere gives the same model and metrics, and
    the image's entry point (docker/entrypoint.sh, which runs `dvc repro`) finds nothing to do.
    """
    remote = tmp_path / "dvc-remote"
    run(["dvc", "remote", "add", "--default", "storage", str(remote)], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline outputs, remote"], project)
    pushed = run(["dvc", "push"], project)
    assert "pushed" in pushed.stdout, pushed.stdout
    assert any(path.is_file() for path in remote.rglob("*")), "the remote holds no files"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "models/model.keras").exists()  # git alone does not carry outputs
    run(["dvc", "pull"], clone)
    for name in PULLED:
        assert _digest(clone / name) == _digest(project / name), name
    metrics = json.loads((clone / "reports/metrics/eval.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0

    status = run(["dvc", "status"], clone)
    assert "up to date" in status.stdout, status.stdout
    repro = run([str(clone / "docker" / "entrypoint.sh")], clone)  # no arguments: dvc repro
    assert "Running stage" not in repro.stdout, repro.stdout
    assert "up to date" in repro.stdout, repro.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""  # dvc.lock unchanged


def _shown_experiments(project: Path) -> list[dict] | None:
    """Every experiment in `dvc exp show --json`, or None when it read a file a queue worker
    was writing (support.project.is_torn_read)."""
    try:
        shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    except CommandFailed as failed:
        if is_torn_read(failed.result.stderr):
            return None
        raise
    return [found for row in shown for found in row.get("experiments") or []]


def _experiment_metrics(project: Path, name: str) -> dict:
    """The metrics files of experiment `name` as `dvc exp show --json` has them."""
    for found in _shown_experiments(project) or []:
        for revision in found["revs"]:
            if revision["name"] == name:
                return revision["data"]["metrics"]
    raise AssertionError(f"{name} is not in dvc exp show")


def _step_while_running(project: Path, name: str, timeout_seconds: float = 600) -> int:
    """DVCLive's step that `dvc exp show` gives the queued experiment `name` while it runs.

    Its window is wide (from the first epoch's end until evaluate ends), so polls, each a few
    seconds of dvc, cannot miss it unless the experiment fails or never shows a step.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        for found in _shown_experiments(project) or []:
            if found.get("name") != name:
                continue
            state = (found.get("executor") or {}).get("state", "finished")
            metrics = (found["revs"][0].get("data") or {}).get("metrics") or {}
            step = metrics.get("dvclive/metrics.json", {}).get("data", {}).get("step")
            if state == "running" and step is not None:
                return step
            assert state in ("queued", "running"), f"{name} is {state} before a step was seen"
        time.sleep(1)
    raise AssertionError(f"dvc exp show gave {name} no running step in {timeout_seconds} s")


def test_exp_run_reruns_train_and_evaluate_only(project: Path) -> None:
    before = {run_.info.run_id for run_ in _runs(project)}
    # With the shipped 1-epoch warm-up, the first thing users type (-S train.epochs=1) must run:
    # the warm-up is clipped to half an epoch, with a note.
    overrides = ["reg.l2=1e-4", "train.epochs=1", "optimizer.warmup_epochs=1.0"]
    result = run(["dvc", "exp", "run", *(arg for key in overrides for arg in ("-S", key))], project)
    assert _ran_stages(result.stdout) == {"train", "evaluate"}
    assert "warming up for 0.5 epochs instead" in result.stdout + result.stderr
    name = re.search(r"Ran experiment\(s\): ([\w-]+)", result.stdout).group(1)
    new = [run_ for run_ in _runs(project) if run_.info.run_id not in before]
    assert len(new) == 1
    assert new[0].info.run_name == name
    assert new[0].data.params["reg.l2"] == "0.0001"
    assert new[0].data.tags["dvc.exp_name"] == name
    assert "train.epochs (1)" in new[0].data.tags["warning.warmup_clipped"]
    assert new[0].info.status == "FINISHED"
    # DVCLive's summary of the last epoch is one of the experiment's metrics files.
    shown = _experiment_metrics(project, name)
    live = shown["dvclive/metrics.json"]["data"]
    assert live["step"] == 1
    assert live["val_accuracy"] == shown["reports/metrics/train.json"]["data"]["best_val_accuracy"]
    assert {"loss", "accuracy", "learning_rate", "epoch_seconds", "image_side"} <= live.keys()


def test_queued_experiment_lands_in_the_project_store(project: Path) -> None:
    before = {run_.info.run_id for run_ in _runs(project)}
    # Two epochs: after the first, `dvc exp show` shows the running experiment's epoch.
    settings = ["-S", "reg.l2=0.001", "-S", "train.epochs=2"]
    run(["dvc", "exp", "run", "--queue", *settings, "--name", "queued-l2"], project)
    start_queue(project)
    assert _step_while_running(project, "queued-l2") >= 1
    status = wait_for_queue(project)
    assert "Success" in status and "Failed" not in status, status
    new = [run_ for run_ in _runs(project) if run_.info.run_id not in before]
    assert [run_.info.run_name for run_ in new] == ["queued-l2"]
    assert new[0].data.params["reg.l2"] == "0.001"
    assert new[0].info.status == "FINISHED"
    # Nothing may have been written to a store inside the temporary workspace.
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))


def test_exp_show_lists_the_experiments(project: Path) -> None:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert "queued-l2" in text
    assert text.count('"reg.l2"') >= 1 or "reg" in text
    eval_accuracies = re.findall(r'"accuracy": ([0-9.]+)', text)
    assert len(eval_accuracies) >= 3
