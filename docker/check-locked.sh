#!/bin/sh
# Fail unless every package in VENV (imgclf itself aside) is pinned, at its version, in LOCK.
#   docker/check-locked.sh VENV LOCK
set -eu

venv=${1:?usage: docker/check-locked.sh VENV LOCK}
lock=${2:?usage: docker/check-locked.sh VENV LOCK}
# Package names compare in their normalised form: lower case, runs of - _ . as one -.
normalise() { awk -F'==' '{ name = tolower($1); gsub(/[-_.]+/, "-", name); print name "==" $2 }'; }

pinned=$(grep -E '^[A-Za-z0-9]' "$lock" | sed 's/ .*//' | normalise)
unlocked=$(uv pip freeze --quiet --python "$venv/bin/python" | grep -v '^imgclf[ =@]' | normalise |
  while read -r requirement; do
    printf '%s\n' "$pinned" | grep -qxF "$requirement" || echo "$requirement"
  done)
if [ -n "$unlocked" ]; then
  echo "check-locked: installed but not pinned at this version in $lock:" $unlocked >&2
  exit 1
fi
echo "check-locked: all $(uv pip freeze --quiet --python "$venv/bin/python" | grep -vc '^imgclf[ =@]') packages in $venv match $lock"
