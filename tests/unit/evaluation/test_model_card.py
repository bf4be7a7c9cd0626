"""Tests for imgclf.evaluation.model_card: the card's numbers worked out by hand, its sections,
and what it says when an input is missing."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunTag,
)

from imgclf.evaluation.model_card import (
    CardInputs,
    Comparison,
    RunRecord,
    describe_run,
    registry_description,
    render_model_card,
    wilson_interval,
)

CLASSES = ["cat", "dog", "eel"]
# Rows: true class; columns: predicted. 100 test images, 85 right.
CONFUSION = np.array([[30, 5, 0], [10, 40, 0], [0, 0, 15]])
METRICS = {
    "accuracy": 0.85,
    "num_test_images": 100,
    "macro_f1": 0.8512,
    "loss": 0.4,
    "top5_accuracy": 1.0,
    "top_k": 3,
    "ece": 0.0375,
    "corruption_accuracy": 0.61,
    "corruption": {
        "num_images": 50,
        "seed": 7,
        "clean_accuracy": 0.86,
        "gaussian_noise": {"severity_1": 0.8, "severity_2": 0.7, "severity_3": 0.5, "mean": 0.66},
    },
}
RUN = RunRecord(
    "run-1",
    params={
        "model.arch": "fast_cnn",
        "model.widths": "[32, 64, 192]",
        "model.width": "16",
        "reg.l2": "0.00066",
        "train.epochs": "8",
        "augment.copies": "0",
        "augment.online_flip": "alternating",
        "augment.mixup_alpha": "0.0",
        "augment.online_crop_flip": "True",
    },
    tags={
        "data.hash": "ab" * 16,
        "device": "GPU",
        "accelerator": "NVIDIA H100",
        "precision.policy": "mixed_float16",
        "tensorflow.version": "2.20.0",
        "git.commit": "c0ffee",
    },
    metrics={"train_seconds": 42.25},
    split_sizes={"train": 900, "validation": 100},
)
SOURCE = {"source": "cifar10", "url": "https://example.invalid/c.tar.gz", "md5": "c58f"}


def full_card(**changes) -> str:
    inputs = {
        "model_name": "imgclf",
        "class_names": CLASSES,
        "metrics": METRICS,
        "run": RUN,
        "source": SOURCE,
        "confusion": CONFUSION,
        **changes,
    }
    return render_model_card(CardInputs(**inputs))


def test_wilson_interval_by_hand() -> None:
    # 85/100, z = 1.96: centre (0.85 + z^2/200) / (1 + z^2/100) = 0.83705, half-width
    # z * sqrt(0.85 * 0.15 / 100 + z^2 / 40000) / (1 + z^2/100) = 0.06989.
    low, high = wilson_interval(85, 100)
    assert (low, high) == pytest.approx((0.76716, 0.90694), abs=1e-5)
    # None right: the interval starts at 0 and ends at z^2 / (n + z^2).
    z_squared = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z_squared / (10 + z_squared)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z_squared), 1.0))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_card_states_accuracy_with_its_interval_and_calibration() -> None:
    card = full_card()
    interval = "(95% Wilson score interval 0.7672 to 0.9069)"
    assert f"- Accuracy: 0.8500 on 100 test images {interval}" in card
    assert "(ECE, 15 equal-width confidence bins) 0.0375" in card
    assert "macro F1 0.8512, cross-entropy loss 0.4000, top-5 1.0000" in card


def test_per_class_rows_are_precision_recall_f1_and_support() -> None:
    card = full_card()
    # cat: precision 30/40, recall 30/35, F1 2pr/(p+r) = 60/75; dog: 40/45, 40/50, 80/95.
    assert "| cat | 0.750 | 0.857 | 0.800 | 35 |" in card
    assert "| dog | 0.889 | 0.800 | 0.842 | 50 |" in card
    assert "| eel | 1.000 | 1.000 | 1.000 | 15 |" in card
    never_predicted = render_model_card(
        CardInputs("m", ["a", "b"], METRICS, RUN, SOURCE, np.array([[3, 0], [2, 0]]))
    )
    assert "| b | 0.000 | 0.000 | 0.000 | 2 |" in never_predicted


def test_data_recipe_robustness_and_training_sections() -> None:
    card = full_card()
    assert "- Source: cifar10 (url https://example.invalid/c.tar.gz; md5 c58f)" in card
    assert f"`{'ab' * 16}`" in card
    assert "- Images: train 900, validation 100, test 100" in card
    # fast_cnn reads model.widths: model.width would only mislead.
    assert "| `model.widths` | [32, 64, 192] |" in card and "`model.width`" not in card
    assert "| augmentation | online_crop_flip=True, online_flip=alternating |" in card
    assert "| gaussian_noise | 0.800 | 0.700 | 0.500 | 0.660 |" in card
    assert "clean 0.8600" in card and "Mean under corruptions: 0.6100" in card
    assert "- Wall time of fit: 42.2 s" in card
    assert "- Device: GPU (NVIDIA H100), precision mixed_float16" in card
    assert "## Missing" not in card


def test_comparison_section_only_with_a_verdict() -> None:
    assert "## Promotion" not in full_card()
    beaten = Comparison(True, (), "1", candidate_accuracy=0.85, champion_accuracy=0.7, p_value=1e-3)
    card = full_card(comparison=beaten, version="3")
    section = card.split("## Promotion", 1)[1].split("##", 1)[0]
    assert "- Decision: promoted" in section
    assert "version 1, the champion then" in section
    assert "accuracy 0.8500 vs 0.7000 (gain +0.1500), exact McNemar p = 0.001" in section
    first = full_card(comparison=Comparison(True, (), None), version="1")
    assert "No champion before this model: the thresholds alone decided." in first
    rejected = full_card(comparison=Comparison(False, ("gain", "significance"), "2"), version="4")
    assert "- Decision: rejected (failed checks: gain, significance)" in rejected


def test_loading_names_the_version_once_registered() -> None:
    registered = full_card(version="3")
    assert registered.startswith("# Model card: imgclf (version 3)")
    assert 'mlflow.pyfunc.load_model("models:/imgclf/3")' in registered
    assert "`imgclf predict IMAGES --model models:/imgclf/3`" in registered
    assert "`models:/imgclf@champion` loads whichever version is champion now" in registered
    evaluated = full_card()
    assert evaluated.startswith("# Model card: imgclf (run run-1)")
    assert 'mlflow.pyfunc.load_model("models:/imgclf@champion")' in evaluated
    assert 'keras.saving.load_model("model.keras")' in evaluated


def test_missing_inputs_are_named_not_fatal() -> None:
    card = render_model_card(CardInputs("imgclf", CLASSES, {"accuracy": 0.5}, RunRecord("r")))
    missing = card.split("## Missing", 1)[1]
    for what in (
        "data/raw/source.json",
        "data.hash tag",
        "train and validation data set inputs",
        "the run's params",
        "num_test_images",
        "ece",
        "confusion matrix",
        "corruption block",
        "train_seconds",
        "device tags",
    ):
        assert what in missing, what
    assert "- Accuracy: not recorded" in card
    assert "- Wall time of fit: not recorded" in card


def test_description_fits_the_registry_column() -> None:
    card = full_card()
    assert registry_description(card, "run-1") == card
    long = card + "".join(f"| class {index} | 0.5 |\n" for index in range(400))
    cut = registry_description(long, "run-1", limit=5000)
    assert len(cut) <= 5000 and long.startswith(cut.rsplit("\n\n(Cut", 1)[0])
    assert cut.endswith("the whole card is `model_card.md` of run run-1.)\n")
    assert "| class 4" in cut and "| class 399" not in cut


def test_describe_run_reads_what_training_recorded() -> None:
    def split(name: str, size: int, context: str) -> DatasetInput:
        data = mlflow.data.from_numpy(np.zeros((size, 2, 2, 3), np.uint8), targets=np.zeros(size))
        dataset = Dataset(**{**data.to_dict(), "name": name})
        return DatasetInput(dataset, [InputTag("mlflow.data.context", context)])

    run = Run(
        RunInfo("r9", "0", "user", "FINISHED", 0, 1, "active"),
        RunData([Metric("train_seconds", 3.5, 0, 0)], [Param("reg.l2", "0.001")],
                [RunTag("device", "CPU")]),
        RunInputs([split("train.npz", 12, "training"), split("val.npz", 4, "validation"),
                   split("test.npz", 5, "testing")]),
    )  # fmt: skip
    record = describe_run(run)
    assert record.run_id == "r9" and record.split_sizes == {"train": 12, "validation": 4}
    assert record.params == {"reg.l2": "0.001"} and record.tags == {"device": "CPU"}
    assert math.isclose(record.metrics["train_seconds"], 3.5)
