"""The Docker image's recipe, checked without a Docker engine.

The Dockerfile is parsed and held to its contract (CPU default and GPU targets, lock-file
install, non-root user, the entry point), hadolint lints it, and the shell steps it runs
(docker/install.sh, docker/check-locked.sh, docker/entrypoint.sh) run here for real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.project import REPO_ROOT, make_project, pipeline_env

DOCKER = REPO_ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages in order, each with its (INSTRUCTION, arguments) after FROM."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), " ".join(arguments.split())
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            stages.append(Stage(name.strip(), base.strip()))
        elif stages:
            stages[-1].instructions.append((keyword, arguments))
    return stages


def chain(stages: list[Stage], target: str) -> list[tuple[str, str]]:
    """Every instruction that builds `target`, its parent stages' first."""
    by_name = {stage.name: stage for stage in stages}
    stage = by_name[target]
    inherited = chain(stages, stage.base) if stage.base in by_name else []
    return inherited + stage.instructions


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(REPO_ROOT / "Dockerfile")


def test_cpu_is_the_default_target_and_gpu_a_named_one(stages: list[Stage]) -> None:
    assert stages[-1].name == "cpu"  # `docker build .` builds the last stage
    assert "gpu" in {stage.name for stage in stages}
    builders = {stage.name: stage for stage in stages}
    runs = {name: [a for k, a in chain(stages, name) if k == "RUN"] for name in builders}
    assert "docker/install.sh /opt/venv cpu" in runs["builder-cpu"]
    assert "docker/install.sh /opt/venv gpu" in runs["builder-gpu"]
    for target, builder in (("cpu", "builder-cpu"), ("gpu", "builder-gpu")):
        copies = [a for k, a in chain(stages, target) if k == "COPY"]
        assert f"--from={builder} /opt/venv /opt/venv" in copies, target


def test_environment_comes_from_the_lock_files(stages: list[Stage]) -> None:
    builder = chain(stages, "builder-cpu")
    copied = " ".join(a for k, a in builder if k == "COPY").split()
    assert {"requirements.lock", "requirements-gpu.lock"} <= set(copied)
    uv = next(a for k, a in builder if k == "RUN" and "uv==" in a)
    assert "requirements.lock" in uv  # uv at the locked version
    install = (DOCKER / "install.sh").read_text(encoding="utf-8")
    assert '--constraint "$lock"' in install and "check-locked.sh" in install


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_runs_as_a_non_root_user_through_the_entry_point(stages: list[Stage], target: str) -> None:
    instructions = chain(stages, target)
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, f"{target}: no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"} and user.isdigit(), users[-1]  # numeric: runAsNonRoot
    entrypoint = [a for k, a in instructions if k == "ENTRYPOINT"][-1]
    assert json.loads(entrypoint) == ["imgclf-entrypoint"]  # exec form: signals reach dvc
    assert ("COPY", "docker/entrypoint.sh /usr/local/bin/imgclf-entrypoint") in instructions


def test_dockerignore_keeps_data_runs_and_environments_out(stages: list[Stage]) -> None:
    ignored = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    kept_out = {"data", "models", "mlruns", "mlflow.db*", "reports", ".venv", ".git", ".dvc/cache"}
    assert kept_out <= ignored
    sources = []
    for stage in stages:
        for keyword, arguments in stage.instructions:
            if keyword == "COPY" and not arguments.startswith("--from"):
                sources += arguments.split()[:-1]
    for source in sources:  # what the recipe copies must not be ignored
        assert source.split("/")[0] not in ignored, source
        assert (REPO_ROOT / source).exists(), source


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=pipeline_env()["PATH"])
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra of pyproject.toml has it)")
    linted = subprocess.run(
        [hadolint, "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def _versions(lock: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock.read_text(), re.MULTILINE)
    return dict(pins)


def test_gpu_lock_pins_cuda_and_agrees_with_the_main_lock() -> None:
    cpu = _versions(REPO_ROOT / "requirements.lock")
    gpu = _versions(REPO_ROOT / "requirements-gpu.lock")
    assert gpu["tensorflow"] == cpu["tensorflow"]
    assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-ml-py"} <= gpu.keys()
    differing = {name: (cpu[name], gpu[name]) for name in cpu.keys() & gpu.keys()}
    assert {n: v for n, v in differing.items() if v[0] != v[1]} == {}


def _entrypoint(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        cwd=tmp_path,
        env=pipeline_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_entrypoint_without_a_checkout_says_how_to_mount_one(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path)
    assert result.returncode == 2
    assert "no dvc.yaml" in result.stderr and '-v "$PWD":/work' in result.stderr


def test_entrypoint_runs_imgclf_or_the_named_tool(tmp_path: Path) -> None:
    version = _entrypoint(tmp_path, "--version")  # not a tool's name: an imgclf command
    assert version.returncode == 0 and version.stdout.startswith("imgclf "), version
    dvc = _entrypoint(tmp_path, "dvc", "--version")
    assert dvc.returncode == 0 and re.match(r"\d+\.\d+", dvc.stdout), dvc


def test_entrypoint_runs_the_mounted_code_with_a_writable_home(tmp_path: Path) -> None:
    (tmp_path / "src" / "imgclf").mkdir(parents=True)
    probe = "import os; print(os.environ['PYTHONPATH']); print(os.environ['HOME'])"
    result = _entrypoint(tmp_path, "python", "-c", probe, HOME=str(tmp_path / "absent"))
    assert result.returncode == 0, result.stderr
    python_path, home = result.stdout.splitlines()
    assert python_path.split(":")[0] == str(tmp_path / "src")
    assert home != str(tmp_path / "absent") and Path(home).is_dir()


@pytest.mark.slow
def test_install_script_builds_a_runtime_environment_from_the_lock(tmp_path: Path) -> None:
    """docker/install.sh as the builder stage runs it, offline from uv's cache."""
    project = make_project(tmp_path / "project", {})
    venv = tmp_path / "venv"
    env = pipeline_env({"UV_OFFLINE": "1", "PYTHON": sys.executable})
    try:
        installed = subprocess.run(
            ["docker/install.sh", str(venv)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode != 0 and "network" in installed.stderr:
            pytest.skip(f"uv's cache lacks a locked wheel and the test runs offline: {installed}")
        assert installed.returncode == 0, installed.stderr
        assert "match requirements.lock" in installed.stdout
        assert (venv / "bin" / "imgclf").exists() and (venv / "bin" / "dvc").exists()
        assert not (venv / "bin" / "pytest").exists()  # run-time packages only, no dev tools
        version = subprocess.run(
            [str(venv / "bin" / "imgclf"), "--version"], capture_output=True, text=True
        )
        assert version.stdout.startswith("imgclf "), version

        # A package the lock does not pin at its installed version fails the check.
        lock = (project / "requirements.lock").read_text()
        bad_lock = tmp_path / "bad.lock"
        bad_lock.write_text(re.sub(r"(?m)^tqdm==.*$", "tqdm==0.0.1", lock))
        checked = subprocess.run(
            ["docker/check-locked.sh", str(venv), str(bad_lock)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 1 and "tqdm==" in checked.stderr, checked
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # gigabytes, when uv had to copy
