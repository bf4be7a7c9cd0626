"""The `imgclf` command: each pipeline stage as a sub-command (`imgclf train --help`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from imgclf import __version__

# One line per command for `imgclf --help`: the stages in dvc.yaml's order, then the commands
# that run outside `dvc repro`. Kept here so the overview imports no stage module.
COMMANDS = {
    "download": "fetch the configured image source (data.source) into data/raw",
    "preprocess": "split data/raw into train/val/test arrays, classes.json and the manifest",
    "validate": "check the prepared data with Great Expectations (exit 1 on a failed check)",
    "augment": "write the training split plus augmented copies and a preview figure",
    "train": "train the configured model; record the run, model and plots in MLflow",
    "evaluate": "score the model on the test split: metrics, confusion, reliability, figures",
    "promote": "gate the run's model against the registry's champion (run by CI)",
    "tune": "search params with Optuna, one DVC experiment per trial (--report: what mattered)",
    "predict": "classify image files, folders or archives with a model or a registry alias",
    "server": "start the team's MLflow tracking server on PostgreSQL",
}
STAGES = tuple(COMMANDS)


def overview() -> str:
    """`imgclf --help`: usage, then what each command does."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: imgclf COMMAND [--help] [options]",
        "",
        "Runs one pipeline stage or tool; `dvc repro` runs the stages in order and passes each",
        "its paths from dvc.yaml. `imgclf COMMAND --help` lists a command's options.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()),
        "",
        "  --version   print the version",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
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
