"""Reliability of the train stage, driven in-process on tiny data with a real SQLite MLflow store.

Each case runs `imgclf.stages.train.main` as DVC would, minus the process start-up: faults are
real (a closed port, a crash inside fit, a SIGTERM, a diverging optimizer), nothing is mocked.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imgclf.data.arrays import save_split
from imgclf.data.synthetic import draw_synthetic
from imgclf.model.loading import load_model_file
from imgclf.params import flatten_params, load_params
from imgclf.training.checkpoint import WEIGHTS_FILE, ResumePoint, TrainingBackup, claim_backup
from imgclf.training.plan import backup_key
from support.http import closed_port_url
from support.train_stage import (
    PARAMS,
    REPO_ROOT,
    SECRETS,
    SIDE,
    backup_root,
    history_rows,
    isolated_stage,
    make_workspace,
    only_run,
    run_train,
    state_folder,
    store,
    when,
)


def test_unreachable_store_fails_before_any_data_is_read(tmp_path: Path, isolate, capsys) -> None:
    # No data at all: the stage must stop on the store before it looks for any.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    uri = closed_port_url("").rstrip("/")
    isolate.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    assert run_train(tmp_path, isolate) == 2
    assert time.monotonic() - started < 15
    stderr = capsys.readouterr().err
    assert uri in stderr and "MLFLOW_TRACKING_URI" in stderr
    assert "train.npz" not in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.integration
def test_crash_inside_fit_ends_the_run_failed(tmp_path: Path, isolate) -> None:
    workspace = make_workspace(tmp_path)
    # Validation images of another size: the model accepts train but fit fails at validation.
    images, labels = draw_synthetic(20, seed=3, image_size=SIDE // 2)
    save_split(workspace / "data/prepared/val.npz", images, labels)
    with pytest.raises(ValueError):
        run_train(workspace, isolate)
    run = only_run(workspace)
    assert run.info.status == "FAILED"
    assert not (workspace / "models/model.keras").exists()


@pytest.mark.integration
def test_sigterm_ends_the_run_killed_and_a_rerun_resumes_it(tmp_path: Path, isolate) -> None:
    workspace = make_workspace(tmp_path, train={"epochs": 40})
    folder = state_folder(workspace)
    when(
        lambda: (folder / "epoch-00002").is_dir(),
        lambda: os.kill(os.getpid(), signal.SIGTERM),  # what `dvc queue kill` sends
    )
    with pytest.raises(KeyboardInterrupt):
        run_train(workspace, isolate)
    killed = only_run(workspace)
    assert killed.info.status == "KILLED"
    assert not (workspace / "models/model.keras").exists()
    # The newest whole epoch is the one to resume (the one before may await its deletion).
    kept = sorted(path.name for path in folder.glob("epoch-*"))
    done = int(kept[-1].removeprefix("epoch-"))
    assert 2 <= done < 40

    assert run_train(workspace, isolate) == 0
    resumed = only_run(workspace)  # the same run, reopened: no second run
    assert resumed.info.run_id == killed.info.run_id
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_epoch"] == str(done)
    steps = [m.step for m in store(workspace).get_metric_history(resumed.info.run_id, "loss")]
    assert sorted(steps) == list(range(1, 41))
    assert [int(row["epoch"]) for row in history_rows(workspace)] == list(range(1, 41))
    summary = json.loads((workspace / "reports/metrics/train.json").read_text())
    assert summary["epochs"] == 40
    assert 0.0 <= summary["serving_val_accuracy"] <= 1.0  # the saved model's own val score
    assert (workspace / "models/model.keras").is_file()
    assert not folder.exists()


@pytest.mark.integration
def test_divergence_fails_the_run_and_writes_no_model(tmp_path: Path, isolate, capsys) -> None:
    workspace = make_workspace(
        tmp_path,
        optimizer={"name": "sgd", "lr": 10.0, "momentum": 0.99},
        # With the penalty, each step multiplies the kernels by about 1 - 2 x lr x l2 = -19, so
        # the loss overflows whatever the hardware; without it, BatchNorm kept the loss huge but
        # finite in float32 on one machine and not on another.
        reg={"l2": 1.0},
        train={"epochs": 3},
        mlflow={"log_model": True},
    )
    assert run_train(workspace, isolate) == 2
    assert "training diverged" in capsys.readouterr().err
    run = only_run(workspace)
    assert run.info.status == "FAILED"
    assert not (workspace / "models/model.keras").exists()
    assert not run.outputs or not run.outputs.model_outputs  # nothing a promotion could pick up
    assert not list(backup_root(workspace).glob("*/epoch-*"))  # nothing left to resume from


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, object]]:
    """Seed 0 twice (the first with credentials in the environment), then seed 1."""
    results = []
    with pytest.MonkeyPatch.context() as patch:
        for number, (seed, secrets) in enumerate(((0, SECRETS), (0, {}), (1, {}))):
            workspace = make_workspace(tmp_path_factory.mktemp(f"run{number}"),
                                       train={"seed": seed})  # fmt: skip
            for isolated in isolated_stage(patch):
                for variable, value in secrets.items():
                    isolated.setenv(variable, value)
                assert run_train(workspace, isolated) == 0
            results.append((workspace, only_run(workspace)))
    return results


def _metrics(workspace: Path) -> list[dict[str, str]]:
    return [
        {key: value for key, value in row.items() if key != "epoch_seconds"}
        for row in history_rows(workspace)
    ]


@pytest.mark.integration
def test_same_seed_same_metrics_and_another_seed_differs(three_runs) -> None:
    (first, run_a), (second, run_b), (third, _) = three_runs
    assert run_a.data.params["train.deterministic"] == "True"
    assert _metrics(first) == _metrics(second)
    assert _metrics(first) != _metrics(third)
    # One result, all the way down to the saved weights.
    models = [load_model_file(ws / "models/model.keras") for ws in (first, second)]
    for a, b in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.integration
def test_no_secret_reaches_a_param_or_tag(three_runs) -> None:
    _, run = three_runs[0]
    recorded = [*run.data.params.items(), *run.data.tags.items()]
    assert len(run.data.params) > 40 and recorded
    for secret in SECRETS.values():
        leaks = [key for key, value in recorded if secret in key or secret in value]
        assert leaks == [], f"{secret} leaked into {leaks}"


@pytest.mark.integration
def test_history_holds_the_diagnostics_per_epoch(three_runs) -> None:
    workspace, run = three_runs[1]
    rows = history_rows(workspace)
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for row in rows:
        values = {key: float(value) for key, value in row.items()}
        # reg.l2 is 0 here: the penalty term is nothing but float32 rounding.
        assert values["reg_loss"] == pytest.approx(0.0, abs=1e-5)
        assert values["data_loss"] == pytest.approx(values["loss"], abs=1e-5)
        assert values["val_data_loss"] > 0 and values["learning_rate"] == pytest.approx(0.003)
        assert values["weight_norm"] > 0 and values["probe_grad_norm"] > 0
    client = store(workspace)
    for name in ("data_loss", "reg_loss", "weight_norm", "probe_grad_norm", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2]


@pytest.mark.integration
def test_evaluate_writes_every_report_into_the_training_run(
    three_runs, isolate: pytest.MonkeyPatch
) -> None:
    from imgclf.stages import evaluate

    workspace, run = three_runs[2]
    images, labels = draw_synthetic(40, seed=5, image_size=SIDE)
    save_split(workspace / "data/prepared/test.npz", images, labels)
    params = yaml.safe_load((workspace / "params.yaml").read_text(encoding="utf-8"))
    params["evaluate"] = {"corruption_images": 25, "mistakes_shown": 4, "seed": 1}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    argv = shlex.split(stages["evaluate"]["cmd"])[3:]  # after `python -m module`: as DVC runs it
    isolate.chdir(workspace)
    assert evaluate.main(argv) == 0

    metrics = json.loads((workspace / "reports/metrics/eval.json").read_text(encoding="utf-8"))
    assert metrics["top_k"] == 5 and metrics["accuracy"] <= metrics["top5_accuracy"] <= 1
    corruption = metrics["corruption"]
    assert corruption["num_images"] == 25 and corruption["seed"] == 1
    names = ("gaussian_noise", "gaussian_blur", "brightness", "contrast", "jpeg")
    for name in names:
        assert set(corruption[name]) == {"severity_1", "severity_2", "severity_3", "mean"}
    means = [corruption[name]["mean"] for name in names]
    assert metrics["corruption_accuracy"] == pytest.approx(np.mean(means))
    with open(workspace / "reports/plots/reliability.csv", encoding="utf-8") as handle:
        bins = list(csv.DictReader(handle))
    assert sum(int(row["count"]) for row in bins) == 40
    with open(workspace / "reports/plots/corruption.csv", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [row["severity"] for row in table] == ["0", "1", "2", "3"]
    assert float(table[0]["jpeg"]) == pytest.approx(corruption["clean_accuracy"])
    figures = ("confusion_matrix", "reliability_diagram", "confident_mistakes")
    for figure in figures:
        with Image.open(workspace / f"reports/figures/{figure}.png") as png:
            assert png.format == "PNG" and min(png.size) > 100

    logged = store(workspace).get_run(run.info.run_id)
    for name in ("test_top5_accuracy", "test_ece", "test_corruption_accuracy"):
        assert logged.data.metrics[name] == pytest.approx(metrics[name.removeprefix("test_")])
    assert (
        logged.data.metrics["test_corruption/jpeg/severity_3"] == corruption["jpeg"]["severity_3"]
    )
    artifacts = {item.path for item in store(workspace).list_artifacts(run.info.run_id, "eval")}
    assert {f"eval/{figure}.png" for figure in figures} <= artifacts
    assert {"eval/reliability.csv", "eval/corruption.csv", "eval/eval.json"} <= artifacts


# --- The resumable state itself -------------------------------------------------------------


def compiled_dense(seed: int) -> object:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def test_backup_restores_weights_optimizer_state_history_and_run(tmp_path: Path) -> None:
    trained = compiled_dense(seed=1)
    features = np.ones((8, 3), "float32")
    trained.fit(features, np.zeros((8, 2), "float32"), epochs=3, batch_size=4, verbose=0)
    backup = TrainingBackup(tmp_path / "state")
    backup.remember_run("run-123")
    backup.save(trained, 3, [{"epoch": 1, "loss": 0.5}])
    # A kill while epoch 4 was being written leaves only its staging folder: it is ignored.
    (tmp_path / "state" / ".epoch-00004.partial").mkdir()

    fresh = compiled_dense(seed=2)
    point = backup.restore(fresh)
    assert point == ResumePoint(3, [{"epoch": 1, "loss": 0.5}], "run-123")
    assert int(fresh.optimizer.iterations.numpy()) == 6  # 3 epochs of 2 steps: Adam goes on
    for restored, saved in zip(fresh.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, saved)


def test_an_unreadable_backup_is_dropped_and_the_model_keeps_fresh_weights(
    tmp_path: Path, capsys
) -> None:
    backup = TrainingBackup(tmp_path / "state")
    backup.remember_run("run-123")
    backup.save(compiled_dense(seed=1), 1, [])
    (tmp_path / "state" / "epoch-00001" / WEIGHTS_FILE).write_bytes(b"torn")
    fresh = compiled_dense(seed=2)
    before = fresh.get_weights()
    assert backup.restore(fresh) is None
    assert "starting afresh" in capsys.readouterr().err
    for now, then in zip(fresh.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)
    assert not (tmp_path / "state").exists()


def test_a_held_backup_is_not_shared(tmp_path: Path, capsys) -> None:
    with claim_backup(tmp_path / "key") as first, claim_backup(tmp_path / "key") as second:
        assert first.folder == tmp_path / "key" and second.folder is None
        second.save(compiled_dense(seed=1), 1, [])  # a no-op: nothing is written
    assert "training without a resumable backup" in capsys.readouterr().err
    assert not (tmp_path / "key").exists()


def test_the_backup_key_follows_every_param_and_the_data() -> None:
    flat = flatten_params(load_params(Path(__file__).resolve().parents[3] / "params.yaml"))
    key = backup_key(flat, "data-a")
    assert key == backup_key(dict(flat), "data-a")
    assert key != backup_key({**flat, "reg.l2": 0.123}, "data-a")
    assert key != backup_key({**flat, "augment.online_crop_pixels": 1}, "data-a")
    assert key != backup_key(flat, "data-b")
