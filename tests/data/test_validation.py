"""Data tests: the real Great Expectations suite over synthetic manifests."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgclf.data.manifest import build_manifest
from imgclf.validation.report import ExpectationOutcome, ValidationReport
from imgclf.validation.suite import validate_manifest

CLASS_NAMES = [f"class_{number}" for number in range(10)]
IMAGE_SHAPE = (8, 8, 3)
SPLIT_SIZES = {"train": 20, "val": 5, "test": 5}  # images per class
MAX_IMBALANCE_RATIO = 2.0
MIN_ROWS = 100


def make_split(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return distinct random images, per_class of each class."""
    labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int64), per_class)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), *IMAGE_SHAPE), dtype=np.uint8)
    return images, labels


def make_clean_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return train/val/test arrays that satisfy every expectation."""
    return {split: make_split(size, seed) for seed, (split, size) in enumerate(SPLIT_SIZES.items())}


def validate(manifest: pd.DataFrame, docs_dir: Path | None = None) -> ValidationReport:
    """Run the suite with the test bounds."""
    return validate_manifest(
        manifest,
        CLASS_NAMES,
        min_rows=MIN_ROWS,
        max_imbalance_ratio=MAX_IMBALANCE_RATIO,
        image_shape=IMAGE_SHAPE,
        docs_dir=docs_dir,
    )


def outcome_named(report: ValidationReport, fragment: str) -> ExpectationOutcome:
    """Return the single outcome whose name contains fragment."""
    matches = [outcome for outcome in report.outcomes if fragment in outcome.name]
    assert len(matches) == 1, [outcome.name for outcome in report.outcomes]
    return matches[0]


def failed_names(report: ValidationReport) -> set[str]:
    """Return the names of the failed outcomes."""
    return {outcome.name for outcome in report.outcomes if not outcome.success}


@pytest.fixture(scope="module")
def clean_manifest() -> pd.DataFrame:
    return build_manifest(make_clean_splits(), CLASS_NAMES)


@pytest.fixture(scope="module")
def clean_run(clean_manifest, tmp_path_factory) -> tuple[ValidationReport, Path]:
    """Validate the clean manifest once, from an empty working directory, with Data Docs."""
    workdir = tmp_path_factory.mktemp("clean_run")
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        report = validate(clean_manifest, docs_dir=Path("docs"))
    finally:
        os.chdir(previous)
    return report, workdir


@pytest.fixture(scope="module")
def leakage_report(clean_manifest) -> ValidationReport:
    """Validate a manifest where test image 4 is a copy of train image 7."""
    splits = make_clean_splits()
    train_images, _ = splits["train"]
    splits["test"][0][4] = train_images[7]
    return validate(build_manifest(splits, CLASS_NAMES))


def test_clean_manifest_passes_every_expectation(clean_run) -> None:
    report, _ = clean_run
    assert report.success, report.summary()
    assert all(outcome.success for outcome in report.outcomes)
    assert len(report.outcomes) >= 15


def test_outcomes_are_named_and_typed(clean_run) -> None:
    report, _ = clean_run
    names = [outcome.name for outcome in report.outcomes]
    assert len(names) == len(set(names))
    assert all(outcome.expectation.startswith("expect_") for outcome in report.outcomes)
    assert outcome_named(report, "share no image").expectation == (
        "expect_column_values_to_be_between"
    )


def test_data_docs_index_is_written_and_nothing_else(clean_run) -> None:
    _, workdir = clean_run
    index = workdir / "docs" / "index.html"
    assert index.is_file()
    assert "manifest" in index.read_text()
    assert sorted(path.name for path in workdir.iterdir()) == ["docs"]


def test_report_to_dict_is_json_serialisable(clean_run, leakage_report) -> None:
    for report in (clean_run[0], leakage_report):
        payload = json.loads(json.dumps(report.to_dict()))
        assert payload["success"] is report.success
        assert len(payload["outcomes"]) == len(report.outcomes)
        assert {"name", "expectation", "success", "details"} <= set(payload["outcomes"][0])


def test_train_test_duplicate_fails_leakage_check(leakage_report) -> None:
    assert not leakage_report.success
    leakage = outcome_named(leakage_report, "share no image")
    assert not leakage.success
    assert "2 of 300 rows" in leakage.details
    assert "test index 4" in leakage.details
    assert "train index 7" in leakage.details
    assert failed_names(leakage_report) == {leakage.name}


def test_summary_lists_failed_expectation_first(leakage_report) -> None:
    lines = leakage_report.summary().splitlines()
    assert "FAILED" in lines[0]
    assert lines[2].startswith("FAIL")
    assert "share no image" in lines[2]
    assert "test index 4" in lines[2]
    assert all(not line.startswith("FAIL") for line in lines[3:])


def test_out_of_set_label_fails_and_names_the_value() -> None:
    splits = make_clean_splits()
    splits["train"][1][3] = 10
    report = validate(build_manifest(splits, CLASS_NAMES))
    assert not report.success
    label_outcome = outcome_named(report, "labels in 0..9")
    assert not label_outcome.success
    assert "(10)" in label_outcome.details
    class_outcome = outcome_named(report, "class names are known")
    assert "<unknown:10>" in class_outcome.details


def test_class_imbalance_past_the_bound_fails(clean_manifest) -> None:
    # Keep 5 of class_0's 20 train images: ratio 20 / 5 = 4 > 2.
    dropped = (
        (clean_manifest["split"] == "train")
        & (clean_manifest["label"] == 0)
        & (clean_manifest["index"] >= 5)
    )
    report = validate(clean_manifest[~dropped])
    assert not report.success
    ratio = outcome_named(report, "largest/smallest")
    assert not ratio.success
    assert "4.0" in ratio.details
    assert failed_names(report) == {ratio.name}


def test_class_missing_from_train_fails(clean_manifest) -> None:
    missing = (clean_manifest["split"] == "train") & (clean_manifest["class_name"] == "class_3")
    report = validate(clean_manifest[~missing])
    assert not outcome_named(report, "every class present in train").success
    counts = outcome_named(report, "every class has train images")
    assert not counts.success
    assert "class_3" in counts.details


def test_nan_pixel_mean_fails(clean_manifest) -> None:
    manifest = clean_manifest.copy()
    manifest.loc[3, "pixel_mean"] = np.nan
    report = validate(manifest)
    assert not report.success
    not_null = outcome_named(report, "pixel_mean not null")
    assert not not_null.success
    assert "train index 3" in not_null.details


def test_out_of_range_pixel_max_fails(clean_manifest) -> None:
    manifest = clean_manifest.copy()
    manifest.loc[250, "pixel_max"] = 300
    report = validate(manifest)
    assert not report.success
    pixel_max = outcome_named(report, "pixel_max <= 255")
    assert not pixel_max.success
    assert "300" in pixel_max.details
    assert "test index 0" in pixel_max.details


@pytest.mark.parametrize("column", ["dtype", "split"])
def test_missing_column_fails_without_raising(clean_manifest, column) -> None:
    report = validate(clean_manifest.drop(columns=[column]))
    assert not report.success
    columns = outcome_named(report, "required columns exist")
    assert not columns.success
    assert column in columns.details
    errored = [outcome for outcome in report.outcomes if outcome.details.startswith("error:")]
    assert errored, report.summary()
    assert all(not outcome.success for outcome in errored)
    assert any(column in outcome.details for outcome in errored)
