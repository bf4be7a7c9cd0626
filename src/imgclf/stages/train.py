"""train stage: build, fit and save the model, recording the run in MLflow."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from imgclf.params import Params, lever_warnings
from imgclf.stages.common import run_stage, stage_parser


def _train(args: argparse.Namespace, params: Params) -> None:
    from imgclf.training.runtime import select_backend

    select_backend(params.train.backend)  # before anything below imports Keras
    for message in lever_warnings(params).values():
        print(f"train: warning: {message}", file=sys.stderr)
    from imgclf.training import session
    from imgclf.training.prepare import TrainFiles

    files = TrainFiles(
        train=args.train,
        val=args.val,
        classes=args.classes,
        validation=args.validation,
        source_info=args.source_info,
        model=args.model,
        metrics=args.metrics,
        live=args.live,
        run_info=args.run_info,
        params=Path(args.params),
    )
    session.train(files, params, os.environ, Path.cwd())


def _interrupt_on_sigterm() -> None:
    """`dvc queue kill` and schedulers send SIGTERM: end the MLflow run KILLED, not RUNNING."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    _interrupt_on_sigterm()
    parser = stage_parser("train", "Train the configured model and record the run in MLflow.")
    parser.add_argument("--train", type=Path, required=True, help="augmented train split")
    parser.add_argument("--val", type=Path, required=True, help="prepared val split")
    parser.add_argument("--classes", type=Path, required=True)
    parser.add_argument("--validation", type=Path, required=True, help="validate result.json")
    parser.add_argument("--source-info", type=Path, required=True, help="download source.json")
    parser.add_argument("--model", type=Path, required=True, help="model.keras to write")
    parser.add_argument("--metrics", type=Path, required=True, help="train.json to write")
    parser.add_argument(
        "--live", type=Path, required=True, help="DVCLive folder to write (after every epoch)"
    )
    parser.add_argument("--run-info", type=Path, required=True, help="mlflow_run.json to write")
    return run_stage(parser, _train, argv)


if __name__ == "__main__":
    sys.exit(main())
