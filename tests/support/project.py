"""A throw-away git + DVC copy of this repository for end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # Tests and CI scripts are not part of the pipeline a user clones and runs.
    return [name for name in listed if not name.startswith(("tests/", ".ci/", ".github/"))]


def pipeline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user has after `source .venv/bin/activate`, offline, no server."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DVC_", "MLFLOW_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra or {})
    return env


def make_project(destination: Path, params_overrides: dict[str, dict]) -> Path:
    """Copy the pipeline into destination, apply params overrides, git init and commit."""
    for name in _project_files():
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    params_path = destination / "params.yaml"
    params = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    for section, values in params_overrides.items():
        params[section].update(values)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.invalid"],
        ["git", "config", "user.name", "imgclf tests"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "pipeline under test"],
    ):
        subprocess.run(command, cwd=destination, check=True, capture_output=True)
    return destination


def run(
    command: list[str], cwd: Path, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
    """Run a command in the project, failing the test with its output when it fails."""
    result = subprocess.run(
        command, cwd=cwd, env=pipeline_env(env), capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise CommandFailed(command, result)
    return result


class CommandFailed(AssertionError):
    """A command in the project failed: its exit status and the tail of its output."""

    def __init__(self, command: list[str], result: subprocess.CompletedProcess) -> None:
        self.result = result
        super().__init__(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )


def start_queue(project: Path, jobs: int = 1) -> None:
    """`dvc queue start`: its workers are daemons that outlive the command.

    They inherit the command's stdout and stderr, so capturing those into pipes (as `run` does)
    would block until the last worker exits, that is until the queue drains. The command's own
    output is not needed: `wait_for_queue` and `dvc queue logs` tell what happened.
    """
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(jobs)],
        cwd=project,
        env=pipeline_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )


# The bound is CI's own limit (90 min for the whole suite), not a guess at a queue's speed: on
# a slow day the two-worker grid alone needed ~390 s of a fixed 480 s deadline and ran out.
QUEUE_DEADLINE_SECONDS = 1800


# `dvc queue status` reads files that running workers rewrite in place; a poll that lands
# mid-write fails with "unexpected error - Expecting value: line 1 column 1 (char 0)" (seen in
# CI; treeverse/dvc#8014 is a race of the same kind). `dvc exp show` that lands while a worker
# sets up its temporary workspace fails with "failed to show experiments - directory
# '.../.dvc/tmp/exps/tmpXXXX/.dvc' does not exist" (seen in CI). Such a poll says nothing about
# the queue: poll again. Any other failure, or this one several times running, fails the test.
TORN_READ = "unexpected error - Expecting value"
_TORN_READS = re.compile(
    rf"{re.escape(TORN_READ)}|failed to show experiments - directory '[^']*/\.dvc/tmp/exps/"
    r"[^'/]+/\.dvc' does not exist"
)
TORN_READS_IN_A_ROW = 5


def is_torn_read(stderr: str) -> bool:
    """Whether a dvc command failed only because it read a queue worker's files mid-write."""
    return _TORN_READS.search(stderr) is not None


def queue_status(project: Path) -> str | None:
    """`dvc queue status`'s table, or None when the poll read a file a worker was writing."""
    try:
        return run(["dvc", "queue", "status"], project).stdout
    except CommandFailed as failed:
        if is_torn_read(failed.result.stderr):
            return None
        raise


def wait_for_queue(
    project: Path,
    timeout_seconds: float = QUEUE_DEADLINE_SECONDS,
    polls: list[str] | None = None,
) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return the last status.

    `polls`, when given, receives every status read on the way (to see what ran at once).
    """
    deadline = time.monotonic() + timeout_seconds
    torn = 0
    while True:
        status = queue_status(project)
        torn = torn + 1 if status is None else 0
        if status is not None and polls is not None:
            polls.append(status)
        if torn >= TORN_READS_IN_A_ROW:
            raise AssertionError(f"dvc queue status failed {torn} times running: {TORN_READ}")
        if status is not None and not re.search(r"\b(Queued|Running)\b", status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"queue still busy after {timeout_seconds} s:\n{status}")
        time.sleep(5)  # each poll starts dvc, which competes with the training


# Small enough that the whole pipeline runs in well under a minute on two cores.
TINY_PARAMS = {
    "data": {"source": "synthetic", "synthetic_train_size": 600, "synthetic_test_size": 200},
    "model": {"width": 8, "widths": [8, 16, 16]},
    # float32 math: bfloat16 (auto's choice on CPUs with AMX or AVX-512 BF16) is tested on its
    # own, and the numeric assertions downstream are written for float32.
    "train": {"epochs": 1, "batch_size": 32, "mixed_precision": "off"},
    # Adam at a constant rate learns the synthetic shapes within one short epoch.
    "optimizer": {"name": "adam", "lr": 0.002, "schedule": "constant", "warmup_epochs": 0.0},
}

# The tuning tests' evaluate section: trials score without test-time views (~6 of a tiny
# `dvc exp run`'s ~45 s), since those tests are about the study. The saved model with its
# views is tested in test_pipeline.py (the default) and tests/unit/model/test_tta.py.
STUDY_EVALUATE = {"tta": "none"}
