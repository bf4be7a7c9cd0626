"""evaluate stage: test-set metrics, confusion data, figures and the model card, logged into
the training run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.data.arrays import load_split, read_classes, read_json, write_csv, write_json
from imgclf.errors import ImgclfError, first_line
from imgclf.params import Params
from imgclf.stages.common import add_path_arguments, run_stage, stage_parser

if TYPE_CHECKING:
    import numpy as np

    from imgclf.evaluation.model_card import RunRecord
    from imgclf.evaluation.scoring import ModelScore


def _evaluate(args: argparse.Namespace, params: Params) -> None:
    from imgclf.evaluation.model_card import CardInputs, render_model_card
    from imgclf.evaluation.scoring import logged_test_metrics, score_model, summary_line
    from imgclf.model.loading import load_model_file
    from imgclf.tracking.artifacts import log_evaluation
    from imgclf.tracking.store import open_store

    run_id = read_json(args.run_info)["run_id"]
    store = open_store(os.environ, Path.cwd(), params.mlflow.experiment_name)
    run = _training_run(store.tracking_uri, run_id, args.run_info)  # before any scoring
    source = read_json(args.source_info)
    class_names, _ = read_classes(args.classes)
    images, labels = load_split(args.test)
    model = load_model_file(args.model)

    def predict(batch):
        return model.predict(batch, batch_size=params.train.batch_size, verbose=0)

    score = score_model(predict, images, labels, class_names, params.evaluate, run_id)
    _write_reports(args, score, images, class_names)
    card = CardInputs(
        params.mlflow.registered_model, class_names, score.metrics, run, source, score.confusion
    )
    args.card.write_text(render_model_card(card), encoding="utf-8")
    files = [args.metrics, args.confusion, args.figure, args.reliability, args.corruption]
    figures = [args.reliability_figure, args.mistakes_figure]
    log_evaluation(
        run_id,
        (args.test, images, labels),
        logged_test_metrics(score.metrics),
        [*files, *figures, args.card],
    )
    print(summary_line(score.metrics))


def _training_run(tracking_uri: str, run_id: str, run_info: Path) -> RunRecord:
    """What the training run recorded (params, tags, train_seconds, split sizes) for the card."""
    import mlflow

    from imgclf.evaluation.model_card import describe_run
    from imgclf.tracking.store import masked

    try:
        return describe_run(mlflow.MlflowClient(tracking_uri).get_run(run_id))
    except mlflow.exceptions.MlflowException as error:
        raise ImgclfError(
            f"{run_info} names run {run_id}, which the MLflow store at {masked(tracking_uri)} "
            f"cannot give ({first_line(error)}); run train again (dvc repro -f train) or set "
            "MLFLOW_TRACKING_URI to the store that holds the run"
        ) from error


def _write_reports(
    args: argparse.Namespace, score: ModelScore, images: np.ndarray, class_names: list[str]
) -> None:
    """eval.json, the plot tables and the figures, at the paths dvc.yaml gives."""
    from imgclf.evaluation.figures import (
        plot_confusion_matrix,
        plot_image_gallery,
        plot_reliability_diagram,
    )

    write_csv(args.reliability, score.reliability)
    plot_reliability_diagram(score.reliability, args.reliability_figure)
    write_csv(args.corruption, score.corruption)
    plot_image_gallery(images[score.mistakes], score.mistake_titles, args.mistakes_figure)
    write_json(args.metrics, score.metrics)
    write_csv(args.confusion, score.confusion_rows)
    plot_confusion_matrix(score.confusion, class_names, args.figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("evaluate", "Evaluate the trained model on the held-out test split.")
    add_path_arguments(
        parser,
        {
            "--model": None,
            "--test": None,
            "--classes": None,
            "--run-info": "train's mlflow_run.json",
            "--metrics": "eval.json to write",
            "--confusion": "confusion.csv to write",
            "--figure": "confusion matrix PNG",
            "--reliability": "reliability.csv",
            "--reliability-figure": "reliability diagram PNG",
            "--corruption": "corruption.csv",
            "--mistakes-figure": "confident mistakes PNG",
            "--source-info": "download's source.json (for the model card)",
            "--card": "model_card.md to write",
        },
    )
    return run_stage(parser, _evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
