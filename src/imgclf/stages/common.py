"""What every stage's main() shares: argument parsing, params loading and error reporting."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from imgclf.errors import ImgclfError
from imgclf.params import Params, ParamsError, load_params

# Exit codes: 1 for a data check that failed (validate), 2 for bad input or configuration.
EXIT_BAD_INPUT = 2


def stage_parser(stage: str, description: str) -> argparse.ArgumentParser:
    """A parser with the --params option every stage takes."""
    parser = argparse.ArgumentParser(prog=f"imgclf {stage}", description=description)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    return parser


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
