#!/bin/sh
# Install imgclf and its runtime dependencies into a new virtual environment at the versions in
# a lock file, then prove that nothing unlocked slipped in. Run from the project root; the
# Dockerfile's builder stages call it, and tests/unit/test_docker.py runs it outside Docker.
#
#   docker/install.sh VENV            requirements.lock, CPU TensorFlow
#   docker/install.sh VENV gpu        requirements-gpu.lock, TensorFlow with CUDA (Linux x86_64)
#
# Needs uv and python3 on PATH (PYTHON picks another interpreter). The lock holds the dev tools
# too; used as constraints, only what imgclf needs at run time is installed.
set -eu

venv=${1:?usage: docker/install.sh VENV [gpu]}
case "${2:-cpu}" in
  cpu) lock=requirements.lock target=. ;;
  gpu) lock=requirements-gpu.lock target=".[gpu]" ;;
  *) echo "install.sh: unknown variant '$2' (valid: cpu, gpu)" >&2 && exit 2 ;;
esac
[ -f "$lock" ] || { echo "install.sh: $lock not found: run from the project root" >&2 && exit 2; }

uv venv --quiet --python "${PYTHON:-python3}" "$venv"
uv pip install --quiet --compile-bytecode --python "$venv/bin/python" --constraint "$lock" "$target"
"$(dirname "$0")/check-locked.sh" "$venv" "$lock"
