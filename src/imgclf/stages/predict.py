"""predict (run by users, not DVC): classify image files, folders or archives with a model.

Exit codes: 0 every image classified, 1 some input was not a readable image (listed in the
output with its error), 2 the model, its class names or the arguments are unusable.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from imgclf.errors import ImgclfError

EXIT_ALL_PREDICTED, EXIT_UNREADABLE, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_TOP_K = 3  # or every class, where a model has fewer


def _predict(args: argparse.Namespace, scratch: Path) -> int:
    from imgclf.serving import prediction
    from imgclf.tracking.artifacts import download_model
    from imgclf.tracking.store import resolve_project_root, resolve_tracking_uri

    project_root = resolve_project_root(os.environ, Path.cwd())
    download = functools.partial(
        download_model,
        tracking_uri=resolve_tracking_uri(os.environ, project_root),
        destination=scratch / "model",
    )
    classifier = prediction.load_classifier(args.model, args.classes, download, args.top_k)
    inputs = prediction.collect_inputs(args.inputs, scratch / "inputs")
    top_k = args.top_k or min(DEFAULT_TOP_K, len(classifier.class_names))
    started = time.perf_counter()
    predictions = prediction.predict_images(
        classifier,
        inputs,
        batch_size=args.batch_size,
        top_k=top_k,
        progress=sys.stderr.isatty(),
    )
    seconds = time.perf_counter() - started
    output_format = prediction.choose_format(args.format, args.out)
    table = prediction.format_predictions(predictions, top_k, output_format)
    if args.out is None:
        sys.stdout.write(table)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")
    where = "" if args.out is None else f" -> {args.out}"
    print(
        f"predict: {prediction.summarize(predictions, seconds)} with {args.model}{where}",
        file=sys.stderr,
    )
    failed = any(item.error is not None for item in predictions)
    return EXIT_UNREADABLE if failed else EXIT_ALL_PREDICTED


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="imgclf predict",
        description="Classify images (files, folders searched recursively, .zip/.tar[.gz] "
        "archives) and write one row per image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument(
        "--model",
        default="models/model.keras",
        help="a .keras file, models:/<name>@<alias> (or /<version>) or runs:/<run id>/model",
    )
    parser.add_argument(
        "--classes",
        type=Path,
        default=Path("data/prepared/classes.json"),
        help="class names of a .keras file (MLflow models carry their own)",
    )
    parser.add_argument("--out", type=Path, help="file to write; without it, stdout")
    parser.add_argument(
        "--format",
        choices=("csv", "json", "jsonl"),
        help="without it, --out's suffix picks (.csv, .json, .jsonl), else csv",
    )
    parser.add_argument(
        "--top-k",
        type=_positive,
        help=f"classes listed per image, at most the model's; without it, {DEFAULT_TOP_K} (or "
        "all, when fewer)",
    )
    parser.add_argument("--batch-size", type=_positive, default=64, help="images per batch")
    args = parser.parse_args(argv)
    # TensorFlow's C++ start-up chatter (CPU features, missing CUDA) buries the output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with tempfile.TemporaryDirectory(prefix="imgclf-predict-") as scratch:
            return _predict(args, Path(scratch))
    except (ImgclfError, FileNotFoundError) as error:
        print(f"error (imgclf predict): {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
