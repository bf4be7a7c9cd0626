"""What `make install` and `make test` run (dry runs: nothing is installed or tested here)."""

from __future__ import annotations

import subprocess

from support.project import REPO_ROOT


def dry_run(*arguments: str) -> list[str]:
    """The commands make would run (-n: printed, not run)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def test_install_compiles_the_locked_packages_to_bytecode() -> None:
    # -B: as on a fresh clone, where the stamp is missing.
    (sync,) = [line for line in dry_run("-B", "install") if "uv pip sync" in line]
    assert "--compile-bytecode" in sync.split() and "requirements.lock" in sync.split()


def test_the_image_compiles_its_packages_to_bytecode_too() -> None:
    script = (REPO_ROOT / "docker" / "install.sh").read_text(encoding="utf-8")
    (install,) = [line for line in script.splitlines() if line.startswith("uv pip install")]
    assert "--compile-bytecode" in install.split()


def test_make_test_runs_two_workers_by_whole_files_unless_told_otherwise() -> None:
    (default,) = [line for line in dry_run("-o", "install", "test") if "pytest" in line]
    assert default.split()[-4:] == ["-n", "2", "--dist", "loadfile"]
    (serial,) = [
        line for line in dry_run("-o", "install", "test", "TEST_WORKERS=0") if "pytest" in line
    ]
    assert serial.split()[-4:] == ["-n", "0", "--dist", "loadfile"]
