"""The Great Expectations suite that guards the image manifest before training.

What the manifest must satisfy and how the suite runs live here; turning GX's results back into
outcomes a person reads is `report.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgclf.data.manifest import MANIFEST_COLUMNS
from imgclf.validation.report import (
    ExpectationOutcome,
    ValidationReport,
    describe_class_count_row,
    describe_manifest_row,
    summarise_suite_result,
)

SPLITS = ("train", "val", "test")
DOCS_SITE_NAME = "imgclf"
MANIFEST_TABLE = "manifest"
CLASS_COUNTS_TABLE = "train_class_counts"


def validate_manifest(
    manifest: pd.DataFrame,
    class_names: Sequence[str],
    *,
    min_rows: int,
    max_imbalance_ratio: float,
    image_shape: tuple[int, int, int],
    docs_dir: Path | None = None,
) -> ValidationReport:
    """Run the manifest suite with Great Expectations; optionally build Data Docs in docs_dir."""
    gx = import_great_expectations()
    context = create_context(gx)
    class_counts = count_train_classes(manifest, class_names)
    tables = {
        MANIFEST_TABLE: (
            build_manifest_expectations(gx, class_names, min_rows, image_shape),
            manifest.reset_index(drop=True),
            describe_manifest_row,
        ),
        CLASS_COUNTS_TABLE: (
            build_class_count_expectations(gx, max_imbalance_ratio),
            class_counts,
            describe_class_count_row,
        ),
    }
    outcomes: list[ExpectationOutcome] = []
    for table_name, (expectations, frame, describe_row) in tables.items():
        suite_result = run_suite(gx, context, table_name, expectations, frame)
        outcomes.extend(summarise_suite_result(suite_result, expectations, frame, describe_row))
    if docs_dir is not None:
        build_data_docs(context, Path(docs_dir))
    return ValidationReport(
        success=all(outcome.success for outcome in outcomes), outcomes=tuple(outcomes)
    )


def import_great_expectations() -> Any:
    """Import Great Expectations with analytics off (it is slow, so only when needed)."""
    # The pipeline runs offline and in CI; GX reads this before any context exists.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def create_context(gx: Any) -> Any:
    """Return an in-memory GX context without analytics, progress bars or default docs sites."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        # No temporary docs site: Data Docs are written only where the caller asks.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def count_train_classes(manifest: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Return per-class train image counts and each count's ratio to the smallest one."""
    if {"split", "class_name"} <= set(manifest.columns):
        train_names = manifest.loc[manifest["split"] == "train", "class_name"]
    else:
        # Missing columns fail their own expectation; zero counts keep this one honest too.
        train_names = pd.Series([], dtype="str")
    counts = train_names.value_counts().reindex(list(class_names), fill_value=0)
    counts = counts.to_numpy(dtype=np.int64)
    smallest = counts.min() if len(counts) else 0
    # An empty class makes the imbalance unbounded, not undefined.
    ratios = counts / smallest if smallest > 0 else np.full(len(counts), np.inf)
    return pd.DataFrame(
        {
            "class_name": pd.Series(list(class_names), dtype="str"),
            "count": counts,
            "ratio_to_smallest": ratios.astype(np.float64),
        }
    )


def build_manifest_expectations(
    gx: Any, class_names: Sequence[str], min_rows: int, image_shape: tuple[int, int, int]
) -> list[Any]:
    """Return the expectations for the one-row-per-image manifest, in report order."""
    expect = gx.expectations
    return [
        *_label_expectations(expect, class_names, min_rows),
        *_image_expectations(expect, image_shape),
        *_split_expectations(expect),
    ]


def _label_expectations(expect: Any, class_names: Sequence[str], min_rows: int) -> list[Any]:
    """Rows and columns exist, and every label and class name is one of the known classes."""
    from great_expectations.expectations.row_conditions import Column

    names = list(class_names)
    return [
        named(expect.ExpectTableRowCountToBeBetween(min_value=min_rows), f">= {min_rows} rows"),
        named(
            expect.ExpectTableColumnsToMatchSet(
                column_set=list(MANIFEST_COLUMNS), exact_match=False
            ),
            "required columns exist",
        ),
        named(
            expect.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(len(names)))),
            f"labels in 0..{len(names) - 1}",
        ),
        named(
            expect.ExpectColumnValuesToBeInSet(column="class_name", value_set=names),
            "class names are known",
        ),
        named(
            expect.ExpectColumnDistinctValuesToEqualSet(
                column="class_name", value_set=names, row_condition=Column("split") == "train"
            ),
            "every class present in train",
        ),
    ]


def _image_expectations(expect: Any, image_shape: tuple[int, int, int]) -> list[Any]:
    """Every image has the expected shape and dtype, and pixel statistics in range."""
    height, width, channels = image_shape
    return [
        *[
            named(expect.ExpectColumnValuesToBeInSet(column=column, value_set=[value]), name)
            for column, value, name in (
                ("height", height, f"height == {height}"),
                ("width", width, f"width == {width}"),
                ("channels", channels, f"channels == {channels}"),
                ("dtype", "uint8", "dtype == uint8"),
            )
        ],
        named(
            expect.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0), "pixel_min >= 0"
        ),
        named(
            expect.ExpectColumnValuesToBeBetween(column="pixel_max", max_value=255),
            "pixel_max <= 255",
        ),
        named(
            expect.ExpectColumnValuesToBeBetween(column="pixel_mean", min_value=0, max_value=255),
            "pixel_mean in [0, 255]",
        ),
        # Between-expectations skip nulls, so NaN means need their own check.
        named(expect.ExpectColumnValuesToNotBeNull(column="pixel_mean"), "pixel_mean not null"),
    ]


def _split_expectations(expect: Any) -> list[Any]:
    """The three splits exist, are named as expected and share no image."""
    return [
        named(
            expect.ExpectColumnValuesToBeBetween(column="hash_split_count", max_value=1),
            "train/val/test share no image",
        ),
        named(
            expect.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            "split names are train/val/test",
        ),
        named(
            expect.ExpectColumnDistinctValuesToContainSet(column="split", value_set=list(SPLITS)),
            "train, val and test all present",
        ),
    ]


def build_class_count_expectations(gx: Any, max_imbalance_ratio: float) -> list[Any]:
    """Return the expectations for the per-class train count table."""
    expect = gx.expectations
    return [
        named(
            expect.ExpectColumnValuesToBeBetween(column="count", min_value=1),
            "every class has train images",
        ),
        named(
            expect.ExpectColumnValuesToBeBetween(
                column="ratio_to_smallest", max_value=max_imbalance_ratio
            ),
            f"largest/smallest train class <= {max_imbalance_ratio:g}",
        ),
    ]


def named(expectation: Any, name: str) -> Any:
    """Attach a readable name to an expectation; it travels in the expectation's meta."""
    expectation.meta = {**(expectation.meta or {}), "name": name}
    return expectation


def run_suite(
    gx: Any, context: Any, table_name: str, expectations: list[Any], frame: pd.DataFrame
) -> Any:
    """Validate one DataFrame against its own suite and return the suite result."""
    data_source = context.data_sources.add_pandas(name=table_name)
    asset = data_source.add_dataframe_asset(name=table_name)
    batch_definition = asset.add_batch_definition_whole_dataframe(name="whole")
    suite = context.suites.add(gx.ExpectationSuite(name=table_name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=table_name, data=batch_definition, suite=suite)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")


def build_data_docs(context: Any, docs_dir: Path) -> Path:
    """Write GX Data Docs for this context's results into docs_dir and return its index."""
    docs_dir = docs_dir.resolve()
    context.add_data_docs_site(
        site_name=DOCS_SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    context.build_data_docs(site_names=[DOCS_SITE_NAME])
    return docs_dir / "index.html"
