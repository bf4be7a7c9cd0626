"""The platform claims hold together: pyproject, the lock, ruff, CI's matrix and README agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_requires_python_is_the_python_the_lock_was_compiled_for() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    oldest = re.fullmatch(r">=(\d+)\.(\d+)", project["project"]["requires-python"]).groups()
    header = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()[1]
    assert f"--python-version {'.'.join(oldest)}" in header
    assert project["tool"]["ruff"]["target-version"] == f"py{''.join(oldest)}"
    dependencies = " ".join(project["project"]["dependencies"])
    assert "filelock" in dependencies


def test_ci_tests_the_platforms_readme_names() -> None:
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/ci.yml").read_text("utf-8"))
    matrix = workflow["jobs"]["lint-and-test"]["strategy"]["matrix"]["include"]
    tested = {(entry["os"], entry["python"]) for entry in matrix}
    assert tested == {
        ("ubuntu-latest", "3.11"),
        ("ubuntu-latest", "3.12"),
        ("macos-latest", "3.11"),
    }
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "Ubuntu with Python 3.11 and 3.12, macOS with Python 3.11" in " ".join(readme.split())


def test_no_posix_only_file_locks() -> None:
    posix_only = re.compile(r"^\s*(import fcntl|from fcntl import)", re.MULTILINE)
    sources = (REPO_ROOT / "src").rglob("*.py")
    assert [path.name for path in sources if posix_only.search(path.read_text("utf-8"))] == []
