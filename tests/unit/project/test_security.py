"""Security hygiene: loopback-only servers and the dependency audit `make lint` runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PIP_AUDIT = REPO_ROOT / ".venv" / "bin" / "pip-audit"


def make(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # -o install: use the environment as it is; never re-create .venv from a test.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "install", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_make_ui_binds_the_mlflow_ui_to_loopback() -> None:
    commands = make("-n", "ui").stdout
    (ui,) = [line for line in commands.splitlines() if "mlflow ui" in line]
    assert re.search(r"--host 127\.0\.0\.1(\s|$)", ui), ui


def test_nothing_in_the_project_listens_on_every_interface() -> None:
    sources = [*REPO_ROOT.joinpath("src").rglob("*.py"), REPO_ROOT / "Makefile"]
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in sources
        if re.search(r"0\.0\.0\.0|--host[ =]::|\"::\"", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_make_lint_runs_the_audit_against_the_lock_file() -> None:
    commands = make("-n", "lint").stdout
    assert re.search(r"pip-audit -r requirements\.lock --no-deps --disable-pip", commands)


def fake_pip_audit(folder: Path, output: str, exit_code: int) -> Path:
    """A stand-in for pip-audit: its vulnerability service cannot be reached from here."""
    script = folder / "pip-audit"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {exit_code}\n")
    script.chmod(0o755)
    return script


def requirements(folder: Path, *pins: str) -> Path:
    path = folder / "requirements.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def test_audit_findings_fail_the_target(tmp_path: Path) -> None:
    finding = (
        "Found 1 known vulnerability in 1 package\n"
        "Name     Version ID             Fix Versions\n"
        "-------- ------- -------------- ------------\n"
        "requests 2.31.0  GHSA-9wx4-h78v-vm56 2.32.0"
    )
    stub = fake_pip_audit(tmp_path, finding, 1)
    result = make(
        "audit",
        f"PIP_AUDIT={stub}",
        f"AUDIT_REQUIREMENTS={requirements(tmp_path, 'requests==2.31.0', 'six==1.17.0')}",
    )
    assert result.returncode != 0
    assert (
        "GHSA-9wx4-h78v-vm56" in result.stdout and "FAILED: known vulnerabilities" in result.stdout
    )


def test_a_clean_audit_passes_and_says_how_much_it_checked(tmp_path: Path) -> None:
    stub = fake_pip_audit(tmp_path, "No known vulnerabilities found", 0)
    pins = requirements(tmp_path, "six==1.17.0", "idna==3.20")
    result = make("audit", f"PIP_AUDIT={stub}", f"AUDIT_REQUIREMENTS={pins}", "AUDIT_STRICT=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "no known vulnerabilities" in result.stdout and "(2 of 2 packages checked)" in result.stdout
    )
    assert "could not audit" not in result.stdout


@pytest.mark.skipif(not PIP_AUDIT.exists(), reason="pip-audit is not installed in .venv")
def test_an_unreachable_vulnerability_service_is_a_notice_not_a_pass(tmp_path: Path) -> None:
    # The real pip-audit, its service made unreachable through a proxy nobody listens on (and
    # an empty cache), so the case is the same offline here and online in CI.
    blocked = {
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    pins = f"AUDIT_REQUIREMENTS={requirements(tmp_path, 'six==1.17.0')}"
    lenient = make("audit", pins, env=blocked)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "could not audit offline" in lenient.stdout
    assert "no known vulnerabilities" not in lenient.stdout.lower()
    strict = make("audit", pins, "AUDIT_STRICT=1", env=blocked)
    assert strict.returncode != 0 and "could not audit offline" in strict.stdout
