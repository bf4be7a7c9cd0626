"""promote (run by CI, not DVC): gate the run's model against the champion, then move aliases.

Every version it registers carries its model card as the registry's description.

Exit codes: 0 promoted (or would be, with --dry-run), 1 rejected, 2 could not decide.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.arrays import load_split, read_classes, read_json, write_json
from imgclf.params import Params
from imgclf.stages.common import run_stage, stage_parser

EXIT_PROMOTED, EXIT_REJECTED, EXIT_UNDECIDED = 0, 1, 2


def _promote(args: argparse.Namespace, params: Params) -> int:
    from imgclf.model.loading import load_model_file
    from imgclf.promotion import contest, gate, model_registry
    from imgclf.tracking.store import open_store

    args.out.unlink(missing_ok=True)  # a stale report must not outlive an undecided run
    metrics = read_json(args.eval)
    metrics_check = gate.check_metrics(metrics)
    if not metrics_check.passed:
        raise gate.PromotionError(f"{args.eval}: {metrics_check.detail}")
    run_id = read_json(args.run_info)["run_id"]
    validation = read_json(args.validation)
    class_names, _ = read_classes(args.classes)
    test = load_split(args.test)
    store = open_store(os.environ, Path.cwd(), params.mlflow.experiment_name)
    client = model_registry.registry_client(store.tracking_uri)
    name = params.mlflow.registered_model
    # Everything the decision needs is read and scored before anything in the registry moves.
    verdict = contest.judge(
        client, name, run_id, metrics, validation, load_model_file(args.model), test,
        len(class_names), params.promote, params.train.batch_size,
    )  # fmt: skip
    print(verdict.decision.table())
    card = contest.card_inputs(verdict, class_names, _optional_json(args.source_info))
    version = None if args.dry_run else contest.record(client, verdict, card)
    aliases = model_registry.get_aliases(client, name)
    write_json(args.out, contest.report(verdict, version, aliases, args.dry_run, len(test[1])))
    outcome = "promoted" if verdict.decision.promote else "rejected"
    where = "" if version is None else f" as version {version} of {name!r}"
    print(f"promote: {outcome}{where}{' (dry run: nothing moved)' if args.dry_run else ''}")
    return EXIT_PROMOTED if verdict.decision.promote else EXIT_REJECTED


def _optional_json(path: Path) -> dict | None:
    """source.json feeds only the model card: unreadable, the card says it is missing."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("promote", "Gate the run's model against the champion (run by CI).")
    # Not a DVC stage: the defaults are the paths dvc.yaml gives the stages that write them.
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for option, default, meaning in (
        ("--eval", "reports/metrics/eval.json", "evaluate's test metrics"),
        ("--run-info", "reports/mlflow_run.json", "train's MLflow run id"),
        ("--model", "models/model.keras", "the candidate model"),
        ("--test", "data/prepared/test.npz", "test split both models are scored on"),
        ("--classes", "data/prepared/classes.json", "ordered class names"),
        ("--validation", "reports/validation/result.json", "validate's result"),
        ("--source-info", "data/raw/source.json", "where the data came from (model card only)"),
        ("--out", "reports/promotion.json", "decision report to write"),
    ):
        parser.add_argument(option, type=Path, default=Path(default), help=meaning)
    parser.add_argument(
        "--dry-run", action="store_true", help="decide and report, but register and move nothing"
    )
    try:
        code = run_stage(parser, _promote, argv)
    except Exception as error:  # fail closed: any surprise is "could not decide", never "rejected"
        print(f"error (imgclf promote): {type(error).__name__}: {error}", file=sys.stderr)
        code = EXIT_UNDECIDED
    if code not in (EXIT_PROMOTED, EXIT_REJECTED):
        print("promote: could not decide; the champion stays where it was", file=sys.stderr)
        code = EXIT_UNDECIDED
    return code


if __name__ == "__main__":
    sys.exit(main())
