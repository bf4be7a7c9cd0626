#!/usr/bin/env bash
# The DVC remote in CI (promote.yml, pr-report.yml): configured from the DVC_REMOTE_URL secret,
# with the plugin its scheme needs; without it every command here is a notice, not a failure.
#
#   scripts/ci-dvc-remote.sh pull   the workspace's outputs (what is missing, dvc repro rebuilds)
#   scripts/ci-dvc-remote.sh fetch  the metrics and plots of every commit into the cache, so
#                                   `dvc metrics diff` and `dvc plots diff` have a base
#   scripts/ci-dvc-remote.sh push   the outputs, so the next run's diff and pull find them
set -euo pipefail

verb=${1:-}
case "$verb" in
  pull | fetch | push) ;;
  *) echo "usage: $0 pull|fetch|push" >&2; exit 2 ;;
esac

if [ -n "${DVC_REMOTE_URL:-}" ]; then
  dvc remote add --local --default --force ci "$DVC_REMOTE_URL"
  case "$DVC_REMOTE_URL" in
    s3://*) plugin=dvc-s3 ;;
    gs://*) plugin=dvc-gs ;;
    azure://*) plugin=dvc-azure ;;
    gdrive://*) plugin=dvc-gdrive ;;
    *) plugin="" ;;
  esac
  if [ -n "$plugin" ]; then
    .venv/bin/uv pip install --quiet --python .venv/bin/python "$plugin"
  fi
fi
if [ -z "$(dvc remote list)" ]; then
  echo "::notice::No DVC remote configured (set the DVC_REMOTE_URL secret): nothing to $verb;" \
    "dvc repro rebuilds every output and diffs see only what git holds."
  exit 0
fi
case "$verb" in
  pull) dvc pull --allow-missing ;;
  fetch) dvc fetch --all-commits --type metrics --type plots ||
    echo "::notice::Some commits' metrics or plots are not on the remote; their diffs are partial." ;;
  push) dvc push ;;
esac
