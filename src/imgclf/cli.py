"""The `imgclf` command: each pipeline stage as a sub-command (`imgclf train --help`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from imgclf import __version__

STAGES = ("download", "preprocess", "validate", "augment", "train", "evaluate", "promote", "tune")
# Commands beside the stages: classifying images with a model, the team tracking server.
STAGES += ("predict", "server")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: imgclf {{{','.join(STAGES)}}} [--help] [options]")
        print("Runs one pipeline stage; `dvc repro` runs them all in order (see dvc.yaml).")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"imgclf {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in STAGES:
        print(f"imgclf: unknown command {command!r}; valid: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    stage = importlib.import_module(f"imgclf.stages.{command}")
    return stage.main(rest)


if __name__ == "__main__":
    sys.exit(main())
