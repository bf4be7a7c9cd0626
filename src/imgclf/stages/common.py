"""What every stage's main() shares: argument parsing, params loading and error reporting."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.params import Params, ParamsError, load_params

# Exit codes: 1 for a data check that failed (validate), 2 for bad input or configuration.
EXIT_BAD_INPUT = 2


# The stages dvc.yaml runs (tests/unit/stages/test_stages.py keeps this in step with it).
DVC_STAGES = ("download", "preprocess", "validate", "augment", "train", "evaluate")
DVC_EPILOG = (
    "`dvc repro` (and `dvc exp run`) runs this stage and passes these paths from its cmd in "
    "dvc.yaml; type them yourself only to run the stage by hand, with the same paths."
)


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """A parser with the --params option every stage takes; DVC stages say who passes paths."""
    parser = argparse.ArgumentParser(
        prog=f"imgclf {stage}",
        description=description,
        epilog=DVC_EPILOG if stage in DVC_STAGES else None,
    )
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    return parser


def add_path_arguments(parser: argparse.ArgumentParser, paths: dict[str, str | None]) -> None:
    """Required path options (dvc.yaml's cmd passes them): option -> help text (or None)."""
    for option, meaning in paths.items():
        parser.add_argument(option, type=Path, required=True, help=meaning)


def run_stage(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, Params], int | None],
    argv: Sequence[str] | None,
) -> int:
    """Parse argv, load params (failing before any data is read), run body, map errors."""
    args = parser.parse_args(argv)
    # TensorFlow's C++ start-up chatter (CPU features, missing CUDA) buries the stage's output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        params = load_params(args.params)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return body(args, params) or 0
    except (ImgclfError, FileNotFoundError) as error:
        print(f"error ({parser.prog}): {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
