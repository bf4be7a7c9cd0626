#!/bin/sh
# The image's entry point. Mount a checkout at /work (the working folder):
#   docker run ... imgclf                  -> dvc repro
#   docker run ... imgclf dvc exp show     -> dvc, mlflow, python, imgclf, sh or bash as given
#   docker run ... imgclf promote --dry-run -> imgclf promote --dry-run (anything else: imgclf)
set -eu

# Under `docker run --user UID:GID` (so files written to the mount stay the user's) there is no
# home folder to write caches to (Keras, DVC, the CIFAR-10 download): use a fresh one.
if [ ! -d "${HOME:-}" ] || [ ! -w "${HOME:-}" ]; then
  HOME=$(mktemp -d)
  export HOME
fi

# The mounted checkout's code is what DVC hashes (dvc.yaml lists src/ files as deps), so it is
# also what runs; the copy installed in the image serves when no checkout is mounted.
if [ -d "$PWD/src/imgclf" ]; then
  PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONPATH
fi

if [ $# -eq 0 ]; then
  if [ ! -f dvc.yaml ]; then
    echo "imgclf image: no dvc.yaml in $PWD: mount your checkout, e.g." \
      "docker run --rm --user \"\$(id -u):\$(id -g)\" -v \"\$PWD\":/work imgclf" >&2
    exit 2
  fi
  set -- dvc repro
fi

case "$1" in
  dvc | mlflow | imgclf | python | python3 | sh | bash) exec "$@" ;;
  *) exec imgclf "$@" ;;
esac
