"""End to end: `imgclf promote` against a real MLflow registry (SQLite store and a server)."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image

from imgclf.checksums import hash_files
from imgclf.cli import main as cli_main
from imgclf.data.arrays import save_split, write_classes, write_json
from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic
from imgclf.data.user_files import decode_image
from imgclf.evaluation.metrics import classification_metrics
from imgclf.model.architectures import ModelSpec, build_model
from imgclf.params import flatten_params, parse_params
from imgclf.promotion import model_registry
from imgclf.stages import promote
from imgclf.tracking.artifacts import log_model
from imgclf.tracking.provenance import run_tags
from imgclf.tracking.runs import start_run
from imgclf.tracking.store import HTTP_DEFAULTS, connect
from imgclf.training.classifier import channel_statistics
from imgclf.training.fit import fit_model
from imgclf.training.inputs import make_dataset
from support.mlflow_server import free_port, serve, sqlite_mlflow_server
from support.project import pipeline_env

pytestmark = pytest.mark.slow

MODEL_NAME = "imgclf-under-test"
# Low enough that the one-epoch model passes on any CPU; the untrained one (~0.1) does not.
PARAMS = {
    "mlflow": {"registered_model": MODEL_NAME},
    "promote": {"min_accuracy": 0.3, "min_gain": 0.02, "alpha": 0.05},
    "train": {"batch_size": 64},
}


@dataclass
class Trained:
    """Test split and three models of clearly different skill, trained once per module."""

    test_images: np.ndarray
    test_labels: np.ndarray
    models: dict[str, keras.Model]


@pytest.fixture(scope="module")
def trained() -> Trained:
    train_images, train_labels = draw_synthetic(600, seed=0)
    test_images, test_labels = draw_synthetic(300, seed=1)
    mean, std = channel_statistics(train_images)
    spec = ModelSpec((32, 32, 3), len(SYNTHETIC_CLASSES), mean, std)
    keras.utils.set_random_seed(0)
    untrained = build_model("seed_cnn", spec)
    model = build_model("seed_cnn", spec)
    data = make_dataset(train_images, train_labels, len(SYNTHETIC_CLASSES), 32, shuffle_seed=0)
    # fit wants a val split; model selection plays no part here, so a slice of train does.
    val = make_dataset(
        train_images[:64], train_labels[:64], len(SYNTHETIC_CLASSES), 32, shuffle_seed=None
    )
    models = {"untrained": untrained}
    for name, epochs in (("weak", 1), ("strong", 3)):
        fit_model(
            model,
            data,
            val,
            loss=keras.losses.CategoricalCrossentropy(),
            optimizer=keras.optimizers.Adam(0.002),
            epochs=epochs,
            callbacks=[],
            verbose=0,
        )
        models[name] = keras.models.clone_model(model)  # training goes on in `model`
        models[name].set_weights(model.get_weights())
    return Trained(test_images, test_labels, models)


def _accuracy(model: keras.Model, trained: Trained) -> float:
    predicted = model.predict(trained.test_images, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == trained.test_labels))


def record_run(
    workdir: Path, store_uri: str, artifacts: str | None, trained: Trained, which: str
) -> Path:
    """What train + evaluate leave behind: an MLflow run with its model, and the report files."""
    model = trained.models[which]
    params = parse_params(PARAMS)
    experiment_id = connect(store_uri, params.mlflow.experiment_name, artifacts)
    save_split(workdir / "data/prepared/test.npz", trained.test_images, trained.test_labels)
    data_hash = hash_files([workdir / "data/prepared/test.npz"])
    tags = {
        **run_tags({}, workdir, data_hash),
        "data.validation": "passed",
        "git.commit": f"{which}-commit",
    }
    (workdir / "models").mkdir(parents=True, exist_ok=True)
    model.save(workdir / "models/model.keras")
    with start_run(experiment_id, which, tags, flatten_params(params)) as run:
        log_model(model, workdir / "models/model.keras", trained.test_images[:4], SYNTHETIC_CLASSES)
    write_classes(workdir / "data/prepared/classes.json", list(SYNTHETIC_CLASSES), (32, 32, 3))
    probabilities = model.predict(trained.test_images, verbose=0)
    metrics = classification_metrics(trained.test_labels, probabilities, SYNTHETIC_CLASSES)
    write_json(workdir / "reports/metrics/eval.json", {**metrics, "mlflow_run_id": run.info.run_id})
    write_json(workdir / "reports/mlflow_run.json", {"run_id": run.info.run_id})
    write_json(workdir / "reports/validation/result.json", {"success": True})
    (workdir / "params.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    return workdir


def promote_args(workdir: Path, *extra: str) -> list[str]:
    return [
        "--params", str(workdir / "params.yaml"),
        "--eval", str(workdir / "reports/metrics/eval.json"),
        "--run-info", str(workdir / "reports/mlflow_run.json"),
        "--model", str(workdir / "models/model.keras"),
        "--test", str(workdir / "data/prepared/test.npz"),
        "--classes", str(workdir / "data/prepared/classes.json"),
        "--validation", str(workdir / "reports/validation/result.json"),
        "--out", str(workdir / "reports/promotion.json"),
        # Explicit: the default is relative to the cwd, the checkout these tests run in.
        "--source-info", str(workdir / "data/raw/source.json"),
        *extra,
    ]  # fmt: skip


def use_store(monkeypatch: pytest.MonkeyPatch, store_uri: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    # open_store sets its fast-fail HTTP defaults in os.environ; monkeypatch undoes them after.
    for variable in HTTP_DEFAULTS:
        if variable not in os.environ:
            monkeypatch.setenv(variable, "unset")
            monkeypatch.delenv(variable)


def run_promote(monkeypatch: pytest.MonkeyPatch, store_uri: str, workdir: Path, *extra) -> int:
    use_store(monkeypatch, store_uri)
    return promote.main(promote_args(workdir, *extra))


def registry_state(store_uri: str) -> tuple[dict[str, str], list[str]]:
    """Aliases and the registered versions, to prove what moved and what did not."""
    client = MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)
    aliases = client.get_registered_model(MODEL_NAME).aliases
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    return (
        {alias: str(version) for alias, version in aliases.items()},
        sorted(str(v.version) for v in versions),
    )


def version_tags(store_uri: str, version: str) -> dict[str, str]:
    client = MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)
    return client.get_model_version(MODEL_NAME, version).tags


def description(store_uri: str, version: str) -> str:
    """The registered version's description: its model card."""
    client = MlflowClient(tracking_uri=store_uri, registry_uri=store_uri)
    return client.get_model_version(MODEL_NAME, version).description


def report(workdir: Path) -> dict:
    return json.loads((workdir / "reports/promotion.json").read_text(encoding="utf-8"))


def sqlite_store(folder: Path) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def test_models_differ_as_the_flow_needs(trained: Trained) -> None:
    accuracy = {name: _accuracy(model, trained) for name, model in trained.models.items()}
    assert accuracy["untrained"] < 0.3 <= accuracy["weak"], accuracy
    assert accuracy["strong"] >= accuracy["weak"] + 0.1, accuracy


def test_first_is_champion_worse_is_rejected_better_is_promoted(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    uri, artifacts = sqlite_store(tmp_path / "store")
    runs = {
        name: record_run(tmp_path / name, uri, artifacts, trained, name)
        for name in ("weak", "untrained", "strong")
    }
    write_json(runs["strong"] / "data/raw/source.json", {"source": "synthetic", "seed": 0})

    assert run_promote(monkeypatch, uri, runs["weak"]) == 0
    assert registry_state(uri) == ({"champion": "1", "challenger": "1"}, ["1"])
    first = report(runs["weak"])
    assert first["decision"] == "promoted" and first["version"] == "1"
    assert first["compared_with"] is None and first["p_value"] is None
    assert first["git_commit"] == "weak-commit" and len(first["data_hash"]) == 32
    tags = version_tags(uri, "1")
    assert tags["promotion.decision"] == "promoted"
    assert tags["git.commit"] == "weak-commit" and tags["data.hash"] == first["data_hash"]
    assert float(tags["promotion.accuracy"]) == first["metrics"]["accuracy"]
    card = description(uri, "1")
    assert card.startswith(f"# Model card: {MODEL_NAME} (version 1)")
    assert f"- Accuracy: {first['metrics']['accuracy']:.4f} on 300 test images" in card
    assert "## Per class" in card and "No champion before this model" in card
    # record_run leaves no source.json, train time or corruption block: named, not fatal.
    missing = card.split("## Missing", 1)[1]
    assert "data/raw/source.json" in missing and "corruption block" in missing
    capsys.readouterr()

    assert run_promote(monkeypatch, uri, runs["untrained"]) == 1
    assert registry_state(uri) == ({"champion": "1", "challenger": "2"}, ["1", "2"])
    printed = capsys.readouterr().out
    assert "Promotion decision: REJECT" in printed and "FAIL" in printed
    rejected = report(runs["untrained"])
    failed = {check["name"] for check in rejected["checks"] if not check["passed"]}
    assert {"min_accuracy", "gain", "significance"} <= failed
    assert rejected["decision"] == "rejected" and rejected["compared_with"] == "1"
    assert version_tags(uri, "2")["promotion.decision"] == "rejected"
    failed_in_order = [check["name"] for check in rejected["checks"] if not check["passed"]]
    assert f"- Decision: rejected (failed checks: {', '.join(failed_in_order)})" in (
        description(uri, "2")
    )

    assert run_promote(monkeypatch, uri, runs["strong"]) == 0
    aliases, versions = registry_state(uri)
    assert aliases == {"champion": "3", "previous": "1", "challenger": "3"}
    assert versions == ["1", "2", "3"]
    promoted = report(runs["strong"])
    assert promoted["gain"] >= 0.1 and promoted["p_value"] < 0.05
    assert promoted["compared_with"] == "1" and promoted["aliases"] == aliases
    assert float(version_tags(uri, "3")["promotion.p_value"]) == pytest.approx(promoted["p_value"])
    # The registered version is the run's own logged model.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = json.loads((runs["strong"] / "reports/mlflow_run.json").read_text())["run_id"]
    version = client.get_model_version(MODEL_NAME, "3")
    assert version.run_id == run_id and version.source.startswith("models:/m-")
    # Its description is the card, with the comparison the gate made; the run keeps a copy.
    card = version.description
    assert "- Source: synthetic (seed 0)" in card and "## Per class" in card
    assert f"- Accuracy: {promoted['metrics']['accuracy']:.4f} on 300 test images" in card
    gain = next(check["detail"] for check in promoted["checks"] if check["name"] == "gain")
    ours, theirs = gain.split(" on ")[0].split(" vs champion ")  # the gate's own re-scores
    assert f"accuracy {ours} vs {theirs} (gain {promoted['gain']:+.4f})" in card
    assert f"exact McNemar p = {promoted['p_value']:.3g}" in card
    assert "Against version 1, the champion then" in card and "- Decision: promoted" in card
    kept = Path(client.download_artifacts(run_id, "model_card.md", str(tmp_path)))
    assert kept.read_text(encoding="utf-8") == card


@pytest.fixture(scope="module")
def seeded(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A store whose champion is the weak model, with a strong run waiting to be promoted."""
    root = tmp_path_factory.mktemp("seeded")
    uri, artifacts = sqlite_store(root / "store")
    weak = record_run(root / "weak", uri, artifacts, trained, "weak")
    strong = record_run(root / "strong", uri, artifacts, trained, "strong")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_promote(monkeypatch, uri, weak) == 0
    yield uri, strong


def _copy_run(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    (destination / "reports/promotion.json").unlink(missing_ok=True)
    return destination


@pytest.mark.parametrize(
    "breakage",
    ["nan_accuracy", "null_accuracy", "missing_eval", "missing_test_split", "bad_run_id"],
)
def test_undecidable_inputs_exit_2_and_move_nothing(
    seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, breakage: str
) -> None:
    uri, strong = seeded
    workdir = _copy_run(strong, tmp_path / "run")
    eval_path = workdir / "reports/metrics/eval.json"
    metrics = json.loads(eval_path.read_text())
    if breakage == "nan_accuracy":
        eval_path.write_text(json.dumps({**metrics, "accuracy": math.nan}))
    elif breakage == "null_accuracy":
        eval_path.write_text(json.dumps({**metrics, "accuracy": None}))
    elif breakage == "missing_eval":
        eval_path.unlink()
    elif breakage == "missing_test_split":
        (workdir / "data/prepared/test.npz").unlink()
    else:
        write_json(workdir / "reports/mlflow_run.json", {"run_id": "0" * 32})
    before = registry_state(uri)
    assert run_promote(monkeypatch, uri, workdir) == 2
    assert registry_state(uri) == before
    assert not (workdir / "reports/promotion.json").exists()


def test_unreachable_registry_exits_2_quickly(
    seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, strong = seeded
    workdir = _copy_run(strong, tmp_path / "run")
    before = registry_state(uri)
    started = time.monotonic()
    assert run_promote(monkeypatch, f"http://127.0.0.1:{free_port()}", workdir) == 2
    assert time.monotonic() - started < 30
    assert registry_state(uri) == before
    assert not (workdir / "reports/promotion.json").exists()


def test_dry_run_decides_but_moves_nothing(
    seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    uri, strong = seeded
    workdir = _copy_run(strong, tmp_path / "run")
    before = registry_state(uri)
    use_store(monkeypatch, uri)
    assert cli_main(["promote", *promote_args(workdir, "--dry-run")]) == 0
    assert registry_state(uri) == before
    assert "Promotion decision: PROMOTE" in capsys.readouterr().out
    dry = report(workdir)
    assert dry["dry_run"] is True and dry["version"] is None
    assert dry["decision"] == "would be promoted (dry run)"
    assert dry["compared_with"] == before[0]["champion"]


def test_failed_data_validation_is_rejected(
    seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, strong = seeded
    workdir = _copy_run(strong, tmp_path / "run")
    write_json(workdir / "reports/validation/result.json", {"success": False})
    champion = registry_state(uri)[0]["champion"]
    assert run_promote(monkeypatch, uri, workdir) == 1
    assert registry_state(uri)[0]["champion"] == champion
    failed = [check["name"] for check in report(workdir)["checks"] if not check["passed"]]
    assert failed == ["validation"]


def test_the_champion_answers_with_class_names(
    seeded, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """imgclf predict, pyfunc and `mlflow models serve` give the .keras file's labels."""
    import mlflow

    uri, _ = seeded
    champion = f"models:/{MODEL_NAME}@champion"
    images = trained.test_images[:24]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = model_registry.get_aliases(client, MODEL_NAME)["champion"]
    keras_file = model_registry.load_version_model(client, MODEL_NAME, version)
    expected = [SYNTHETIC_CLASSES[i] for i in keras_file.predict(images, verbose=0).argmax(axis=1)]

    folder = tmp_path / "images"
    folder.mkdir()
    for index, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    out = tmp_path / "predictions.json"
    use_store(monkeypatch, uri)
    # No classes.json where this runs: the registered model carries its class names.
    arguments = ["predict", str(folder), "--model", champion, "--out", str(out)]
    assert cli_main([*arguments, "--classes", str(tmp_path / "absent.json")]) == 0
    predicted = [row["class"] for row in json.loads(out.read_text(encoding="utf-8"))]
    assert predicted == expected

    pyfunc = mlflow.pyfunc.load_model(champion)
    assert pyfunc.metadata.metadata["class_names"] == list(SYNTHETIC_CLASSES)
    assert pyfunc.metadata.saved_input_example_info is not None
    answer = pyfunc.predict(images)
    assert list(answer["label"]) == expected
    assert set(answer["probabilities"][0]) == set(SYNTHETIC_CLASSES)

    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", champion,
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = pipeline_env({"MLFLOW_TRACKING_URI": uri})
    with serve(command, port, tmp_path / "serve.log", env=env) as server:
        request = urllib.request.Request(
            f"{server.url}/invocations",
            data=json.dumps({"inputs": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            served = json.load(response)["predictions"]
        # A photo as a client has it: a JPEG file, base64 in JSON, bigger than the model's input.
        jpeg = tmp_path / "photo.jpg"
        Image.fromarray(images[0]).resize((96, 96), Image.Resampling.BICUBIC).save(jpeg)
        encoded = base64.b64encode(jpeg.read_bytes()).decode("ascii")
        from_file = invoke(server.url, {"inputs": {"image": [encoded]}})
        scaled = invoke(server.url, {"inputs": (images[:2] / 255).tolist()})
    assert [row["label"] for row in served] == expected
    assert served[0]["confidence"] == pytest.approx(max(served[0]["probabilities"].values()))
    decoded = decode_image(jpeg, (32, 32))[np.newaxis]
    label = SYNTHETIC_CLASSES[int(keras_file.predict(decoded, verbose=0).argmax())]
    assert from_file[0] == 200
    assert [row["label"] for row in from_file[1]["predictions"]] == [label]
    # Pixels scaled to [0, 1] reach the model as sent and are refused, not cast to black.
    assert scaled[0] == 400 and scaled[1]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "whole numbers in 0-255" in scaled[1]["message"]


def invoke(url: str, body: dict) -> tuple[int, dict]:
    """POST a JSON body to a served model's /invocations: the status and the JSON answer."""
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on loopback, proxying artifacts to a local folder."""
    with sqlite_mlflow_server(tmp_path_factory.mktemp("server")) as running:
        yield running.url


def test_promotion_against_a_real_tracking_server(
    server: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weak = record_run(tmp_path / "weak", server, None, trained, "weak")
    strong = record_run(tmp_path / "strong", server, None, trained, "strong")

    assert run_promote(monkeypatch, server, weak) == 0
    assert registry_state(server) == ({"champion": "1", "challenger": "1"}, ["1"])

    assert run_promote(monkeypatch, server, strong, "--dry-run") == 0
    assert registry_state(server) == ({"champion": "1", "challenger": "1"}, ["1"])

    assert run_promote(monkeypatch, server, strong) == 0
    assert registry_state(server) == (
        {"champion": "2", "previous": "1", "challenger": "2"},
        ["1", "2"],
    )
    assert version_tags(server, "2")["promotion.decision"] == "promoted"
    assert "## Per class" in description(server, "2")  # set over the server's REST API
    assert report(strong)["compared_with"] == "1"
