"""validate stage: the Great Expectations suite over the manifest; non-zero exit on failure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.arrays import read_classes, write_json
from imgclf.data.manifest import read_manifest
from imgclf.params import Params
from imgclf.stages.common import run_stage, stage_parser

EXIT_VALIDATION_FAILED = 1


def _validate(args: argparse.Namespace, params: Params) -> int:
    from imgclf.validation.suite import validate_manifest

    class_names, image_shape = read_classes(args.classes)
    report = validate_manifest(
        read_manifest(args.manifest),
        class_names,
        min_rows=params.validate_.min_rows,
        max_imbalance_ratio=params.validate_.max_imbalance_ratio,
        image_shape=image_shape,
        docs_dir=args.docs,
    )
    write_json(args.result, report.to_dict())
    print(report.summary())
    if not report.success:
        print(
            f"validate: data checks failed; see {args.result} and {args.docs}/index.html. "
            "Fix the data (or the validate.* bounds in params.yaml) and run `dvc repro` again.",
            file=sys.stderr,
        )
        return EXIT_VALIDATION_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        "validate", "Check the prepared data with Great Expectations before training."
    )
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--classes", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True, help="JSON result to write")
    parser.add_argument("--docs", type=Path, required=True, help="folder for Data Docs HTML")
    return run_stage(parser, _validate, argv)


if __name__ == "__main__":
    sys.exit(main())
