"""End to end: a DVC remote carries the pipeline's outputs to a fresh clone.

`dvc repro` and `dvc push` to a local folder remote (what `dvc remote add -d` writes for S3 or
GCS too, with another URL), then `git clone` + `dvc pull` elsewhere: the clone has the same
model and metrics, and the image's entry point (docker/entrypoint.sh, which runs `dvc repro`)
finds nothing to do.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from support.project import TINY_PARAMS, make_project, run

pytestmark = pytest.mark.slow

# The model file and the metrics are what a teammate pulls instead of training again.
PULLED = ("models/model.keras", "reports/metrics/eval.json", "reports/metrics/train.json")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_then_fresh_clone_pulls_everything_and_has_nothing_to_run(tmp_path: Path) -> None:
    remote = tmp_path / "dvc-remote"
    project = make_project(tmp_path / "project", {**TINY_PARAMS, "mlflow": {"log_model": False}})
    run(["dvc", "remote", "add", "--default", "storage", str(remote)], project)
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "pipeline outputs, remote"], project)
    pushed = run(["dvc", "push"], project)
    assert "pushed" in pushed.stdout, pushed.stdout
    assert any(path.is_file() for path in remote.rglob("*")), "the remote holds no files"

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
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
