"""Tests for imgclf.evaluation.scoring: everything evaluate reports, from a predict
function on arrays."""

from __future__ import annotations

import io
import sys

import keras
import numpy as np
import pytest

from imgclf.data.synthetic import draw_synthetic
from imgclf.evaluation.corruptions import CORRUPTIONS
from imgclf.evaluation.metrics import (
    calibration_error,
    expected_calibration_error,
    reliability_bins,
)
from imgclf.evaluation.scoring import (
    PASSES,
    logged_test_metrics,
    metric_safe,
    score_model,
    summary_line,
)
from imgclf.model.architectures import ModelSpec, build_model
from imgclf.params import EvaluateParams

CLASSES = [f"class {index}" for index in range(10)]
SIDE = 32


@pytest.fixture(scope="module")
def model():
    """An untrained model (what matters is one fixed function of the pixels)."""
    keras.utils.set_random_seed(0)
    spec = ModelSpec((SIDE, SIDE, 3), len(CLASSES), [120.0] * 3, [60.0] * 3, width=4)
    return build_model("seed_cnn", spec)


@pytest.fixture(scope="module")
def scored(model):
    images, labels = draw_synthetic(30, seed=4, image_size=SIDE)
    settings = EvaluateParams(corruption_images=12, mistakes_shown=3, seed=2)
    return (
        images,
        labels,
        score_model(_predictor(model), images, labels, CLASSES, settings, "r1"),
    )


def test_eval_json_keys_keep_their_order_and_names(scored) -> None:
    _, labels, score = scored
    keys = list(score.metrics)
    # eval.json: the classification metrics first, then the run, then the corruption block.
    assert keys[-3:] == ["mlflow_run_id", "corruption_accuracy", "corruption"]
    for name in ("accuracy", "macro_f1", "loss", "per_class_accuracy", "ece", "top5_accuracy"):
        assert name in keys
    assert score.metrics["mlflow_run_id"] == "r1"
    corruption = score.metrics["corruption"]
    assert corruption["num_images"] == 12 and corruption["seed"] == 2
    assert set(CORRUPTIONS) <= set(corruption) and "mean_accuracy" not in corruption


def _predictor(model):
    return lambda batch: model.predict(batch, batch_size=16, verbose=0)


def test_tables_and_mistakes_describe_the_same_predictions(scored, model) -> None:
    images, labels, score = scored
    predicted = _predictor(model)(images).argmax(axis=1)
    assert len(score.confusion_rows) == len(labels)
    assert score.confusion_rows[0] == {
        "actual": CLASSES[labels[0]],
        "predicted": CLASSES[predicted[0]],
    }
    assert score.confusion.sum() == len(labels)
    assert np.trace(score.confusion) == int((predicted == labels).sum())
    assert len(score.mistakes) == len(score.mistake_titles) <= 3
    assert all(predicted[index] != labels[index] for index in score.mistakes)
    assert [row["severity"] for row in score.corruption] == [0, 1, 2, 3]


def test_logged_metrics_name_every_class_and_corruption_level(scored) -> None:
    _, _, score = scored
    logged = logged_test_metrics(score.metrics)
    assert logged["test_accuracy"] == score.metrics["accuracy"]
    assert logged["test_corruption/clean"] == score.metrics["corruption"]["clean_accuracy"]
    assert f"test_class_accuracy/{CLASSES[0]}" in logged
    assert "test_corruption/jpeg/severity_3" in logged
    assert "evaluate: test accuracy" in summary_line(score.metrics)


def test_metric_safe_keeps_what_mlflow_allows() -> None:
    assert metric_safe("sea lion/2.0-x_y") == "sea lion/2.0-x_y"
    assert metric_safe("a:b(c)") == "a_b_c_"


def test_calibration_error_from_bins_is_the_ece() -> None:
    labels = np.array([0, 1, 1, 2, 0, 2])
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6],
         [0.05, 0.05, 0.9]]
    )  # fmt: skip
    ece = expected_calibration_error(labels, probabilities)
    assert calibration_error(reliability_bins(labels, probabilities)) == pytest.approx(ece)
    assert calibration_error([]) == 0.0


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as an interactive shell's is."""

    def isatty(self) -> bool:
        return True


def _cheap_score(progress: bool | None) -> int:
    """Score with a numpy predict function (no model); the number of passes it made."""
    images, labels = draw_synthetic(20, seed=4, image_size=8)
    calls = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        means = batch.reshape(len(batch), -1).mean(axis=1)
        return np.eye(len(CLASSES))[means.astype(int) % len(CLASSES)] * 0.9 + 0.01

    settings = EvaluateParams(corruption_images=10, mistakes_shown=2, seed=0)
    score_model(predict, images, labels, CLASSES, settings, "r1", progress=progress)
    return len(calls)


def test_the_pass_bar_is_silent_off_a_terminal_and_counts_every_pass_when_on(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _cheap_score(progress=None) == PASSES == 16  # all, then 5 x 3 corruptions
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal: DVC's logs are quiet
    _cheap_score(progress=True)
    assert f"{PASSES}/{PASSES}" in capsys.readouterr().err
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _cheap_score(progress=None)
    assert f"{PASSES}/{PASSES}" in terminal.getvalue() and "evaluate" in terminal.getvalue()
