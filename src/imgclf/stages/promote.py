"""promote (run by CI, not DVC): gate the run's model against the champion, then move aliases.

Exit codes: 0 promoted (or would be, with --dry-run), 1 rejected, 2 could not decide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgclf.data.arrays import load_split, read_classes, write_json
from imgclf.params import Params
from imgclf.stages.common import run_stage, stage_parser

EXIT_PROMOTED, EXIT_REJECTED, EXIT_UNDECIDED = 0, 1, 2
# An unreachable tracking server must fail the job in seconds, not after MLflow's default
# seven retries with exponential back-off (minutes).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _correct(model, images: np.ndarray, labels: np.ndarray, batch_size: int) -> np.ndarray:
    """Per test image, whether the model's top class is the label."""
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(labels):
        raise ValueError(f"model output shape {probabilities.shape} does not fit the test split")
    return probabilities.argmax(axis=1) == labels


def _score_champion(client, name: str, version: str, test, num_classes: int, batch_size: int):
    """The champion's per-image correctness on today's test split."""
    from imgclf import registry

    champion = registry.load_version_model(client, name, version)
    if champion.output_shape[-1] != num_classes:
        raise registry.PromotionError(
            f"champion (version {version}) predicts {champion.output_shape[-1]} classes, the "
            f"test split has {num_classes}: the two cannot be compared"
        )
    return _correct(champion, *test, batch_size)


def _promote(args: argparse.Namespace, params: Params) -> int:
    from imgclf import registry, tracking
    from imgclf.model.loading import load_model_file

    args.out.unlink(missing_ok=True)  # a stale report must not outlive an undecided run
    metrics = _read_json(args.eval)
    metrics_check = registry.check_metrics(metrics)
    if not metrics_check.passed:
        raise registry.PromotionError(f"{args.eval}: {metrics_check.detail}")
    run_id = _read_json(args.run_info)["run_id"]
    validation = _read_json(args.validation)
    class_names, _ = read_classes(args.classes)
    test = load_split(args.test)

    project_root = tracking.resolve_project_root(os.environ, Path.cwd())
    tracking_uri = tracking.resolve_tracking_uri(os.environ, project_root)
    tracking.connect(
        tracking_uri,
        params.mlflow.experiment_name,
        tracking.default_artifact_location(os.environ, project_root),
    )
    client = registry.registry_client(tracking_uri)
    run_tags = client.get_run(run_id).data.tags
    name = params.mlflow.registered_model
    old_champion = registry.get_aliases(client, name).get(registry.CHAMPION)

    # Everything the decision needs is read and scored before anything in the registry moves.
    batch_size = params.train.batch_size
    candidate = load_model_file(args.model)
    settings = params.promote
    decision = registry.decide(
        metrics,
        validation.get("success") is True and run_tags.get("data.validation") == "passed",
        min_accuracy=settings.min_accuracy,
        min_gain=settings.min_gain,
        alpha=settings.alpha,
        candidate_correct=_correct(candidate, *test, batch_size),
        champion_correct=None
        if old_champion is None
        else _score_champion(client, name, old_champion, test, len(class_names), batch_size),
        pruned_at_epoch=run_tags.get("tune.pruned_at_epoch"),
    )
    print(decision.table())

    version = None
    if not args.dry_run:
        version = registry.record_decision(
            client,
            name,
            run_id,
            decision,
            tags=registry.reason_tags(decision, metrics, run_tags, old_champion),
            old_champion=old_champion,
        )
    verdict = "promoted" if decision.promote else "rejected"
    write_json(
        args.out,
        {
            "decision": f"would be {verdict} (dry run)" if args.dry_run else verdict,
            "dry_run": args.dry_run,
            **decision.to_dict(),
            "registered_model": name,
            "run_id": run_id,
            "version": version,
            "compared_with": old_champion,
            "aliases": registry.get_aliases(client, name),
            "metrics": {key: metrics[key] for key in registry.REQUIRED_METRICS},
            "num_test_images": int(len(test[1])),
            "data_hash": run_tags.get("data.hash"),
            "git_commit": run_tags.get("git.commit"),
        },
    )
    where = "" if version is None else f" as version {version} of {name!r}"
    print(f"promote: {verdict}{where}{' (dry run: nothing moved)' if args.dry_run else ''}")
    return EXIT_PROMOTED if decision.promote else EXIT_REJECTED


def main(argv: Sequence[str] | None = None) -> int:
    for variable, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(variable, value)
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
