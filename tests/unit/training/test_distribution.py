"""train.distribution: params validation, TF_CONFIG checks before compute, the scaling rule."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from imgclf.params import ParamsError, parse_params
from imgclf.training.distribution import (
    WORKER_WAIT_SECONDS,
    ClusterRole,
    Distribution,
    DistributionError,
    cluster_role,
    lost_worker_error,
    parse_tf_config,
    start,
    wait_seconds,
)

TWO_WORKERS = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}


@pytest.mark.parametrize("distribution", ["mirrored", "multi_worker"])
def test_jax_refuses_tf_distribute_strategies(distribution: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params({"train": {"backend": "jax", "distribution": distribution}})
    message = str(caught.value)
    assert "train" in message and distribution in message
    assert "set train.distribution to auto or none" in message


@pytest.mark.parametrize("distribution", ["auto", "none"])
def test_jax_accepts_auto_and_none(distribution: str) -> None:
    params = parse_params({"train": {"backend": "jax", "distribution": distribution}})
    assert params.train.distribution == distribution


@pytest.mark.parametrize(
    ("train", "key"),
    [
        ({"distribution": "horovod"}, "train.distribution"),
        ({"lr_scaling": "log"}, "train.lr_scaling"),
    ],
)
def test_unknown_choices_name_their_key(train: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        parse_params({"train": train})


def test_defaults_change_nothing_on_one_device() -> None:
    settings = parse_params({}).train
    assert (settings.distribution, settings.lr_scaling) == ("auto", "linear")
    assert cluster_role(settings.distribution, {"TF_CONFIG": json.dumps({})}) is None
    # Under JAX no strategy is ever created, whatever the choice allows.
    single = Distribution("none", None)
    assert single.global_batch_size(64) == 64
    assert single.learning_rate(0.003, "linear") == pytest.approx(0.003)
    assert single.is_chief and single.num_workers == 1


@pytest.mark.parametrize(("rule", "factor"), [("linear", 8.0), ("sqrt", 8**0.5), ("none", 1.0)])
def test_scaling_rule(rule: str, factor: float) -> None:
    eight = Distribution("mirrored", object(), num_replicas=8)
    assert eight.global_batch_size(32) == 256
    assert eight.learning_rate(0.001, rule) == pytest.approx(0.001 * factor)
    tags = eight.tags(32, eight.learning_rate(0.001, rule))
    assert tags["distribution.global_batch_size"] == "256"
    assert tags["distribution.num_replicas"] == "8"


def test_tf_config_gives_the_role_and_the_chief() -> None:
    role = parse_tf_config(
        json.dumps({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 1}})
    )
    assert (role.name, role.num_workers, role.is_chief) == ("worker:1", 2, False)
    assert role.address("worker", 1) == "10.0.0.2:2222"
    first = parse_tf_config(
        json.dumps({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 0}})
    )
    assert first.is_chief
    with_chief = {"chief": ["10.0.0.9:2222"], **TWO_WORKERS}
    worker0 = parse_tf_config(
        json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})
    )
    assert not worker0.is_chief and worker0.num_workers == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "TF_CONFIG is not set"),
        ("", "TF_CONFIG is not set"),
        ("{not json", "TF_CONFIG is not valid"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG is not valid"),
        (
            json.dumps({"cluster": TWO_WORKERS, "task": {"type": "worker", "index": 2}}),
            "worker:2 is not in",
        ),
        (
            json.dumps({"cluster": TWO_WORKERS, "task": {"type": "chief", "index": 0}}),
            "chief:0 is not in",
        ),
        (
            json.dumps(
                {"cluster": {"ps": ["h:1"], **TWO_WORKERS}, "task": {"type": "worker", "index": 0}}
            ),
            "only 'chief' and 'worker'",
        ),
    ],
)
def test_bad_tf_config_is_named(raw: str | None, expected: str) -> None:
    with pytest.raises(DistributionError, match=expected):
        parse_tf_config(raw)


def test_lost_worker_error_names_the_peer_and_what_to_do() -> None:
    role = ClusterRole("worker", 0, {"worker": ("127.0.0.1:1", "127.0.0.1:2")})
    tf_message = (
        "Collective ops is aborted by: The following tasks are unhealthy (stopped sending "
        "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed."
    )
    error = lost_worker_error(RuntimeError(tf_message), role)
    assert "lost worker:1 (127.0.0.1:2) during training" in str(error)
    assert "restart every worker" in str(error)
    late = lost_worker_error(
        RuntimeError("Barrier timed out /job:worker/replica:0/task:1"), role, True
    )
    assert "worker:1 (127.0.0.1:2) did not join the cluster in time" in str(late)


def test_none_creates_no_strategy() -> None:
    assert start("none", None).strategy is None


def test_multi_worker_without_tf_config_stops_the_stage_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from imgclf.stages import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    Path("params.yaml").write_text(
        yaml.safe_dump({"train": {"distribution": "multi_worker"}}), encoding="utf-8"
    )
    argv = ["--train", "a/train.npz", "--val", "a/val.npz", "--classes", "a/c.json"]
    argv += ["--validation", "r.json", "--source-info", "s.json", "--model", "m.keras"]
    argv += ["--metrics", "t.json", "--live", "live", "--run-info", "run.json"]
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert train.main(argv) == 2
    finally:
        signal.signal(signal.SIGTERM, handler)  # train installs its own SIGTERM handler
    stderr = capsys.readouterr().err
    assert "TF_CONFIG is not set" in stderr and "docs/guide/distributed.md" in stderr
    # Stopped before the store or any data: nothing was created or looked for.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]
    assert "a/train.npz" not in stderr


@pytest.mark.integration
def test_mirrored_trains_in_process_and_records_its_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The train stage's own reliability helpers: tiny synthetic splits and an isolated process.
    from support.train_stage import isolated_stage, make_workspace, only_run, run_train

    workspace = make_workspace(tmp_path, train={"epochs": 1, "distribution": "mirrored"})
    for patch in isolated_stage(monkeypatch):
        assert run_train(workspace, patch) == 0
    recorded = only_run(workspace)
    assert recorded.info.status == "FINISHED"
    tags = recorded.data.tags
    # This machine's CPU (or its one GPU) is the only replica: nothing is scaled.
    assert tags["distribution.strategy"] == "mirrored"
    assert tags["distribution.num_replicas"] == tags["distribution.num_workers"] == "1"
    assert tags["distribution.task"] == "local"
    assert tags["distribution.global_batch_size"] == "32"
    assert float(tags["distribution.learning_rate"]) == pytest.approx(0.003)
    assert (workspace / "models/model.keras").is_file()


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "nan"])
def test_a_bad_wait_is_named(raw: str) -> None:
    with pytest.raises(DistributionError, match="IMGCLF_WORKER_WAIT_SECONDS"):
        wait_seconds({"IMGCLF_WORKER_WAIT_SECONDS": raw})
    assert wait_seconds({}) == WORKER_WAIT_SECONDS
    assert wait_seconds({"IMGCLF_WORKER_WAIT_SECONDS": "7.5"}) == 7.5
