"""The Great Expectations suite that guards the image manifest before training."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgclf.data.manifest import MANIFEST_COLUMNS

SPLITS = ("train", "val", "test")
DOCS_SITE_NAME = "imgclf"
EXAMPLE_ROWS = 3
MANIFEST_TABLE = "manifest"
CLASS_COUNTS_TABLE = "train_class_counts"


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, reduced to what a person needs to act on it."""

    name: str
    expectation: str
    success: bool
    details: str


@dataclass(frozen=True)
class ValidationReport:
    """All expectation outcomes of one validation run."""

    success: bool
    outcomes: tuple[ExpectationOutcome, ...]

    def to_dict(self) -> dict:
        """Return a JSON-serialisable view of the report."""
        failed = [outcome for outcome in self.outcomes if not outcome.success]
        return {
            "success": self.success,
            "evaluated_expectations": len(self.outcomes),
            "failed_expectations": len(failed),
            "outcomes": [asdict(outcome) for outcome in self.outcomes],
        }

    def summary(self) -> str:
        """Return a short readable table, failed expectations first."""
        ordered = sorted(self.outcomes, key=lambda outcome: outcome.success)
        failed = sum(not outcome.success for outcome in self.outcomes)
        verdict = "PASSED" if self.success else "FAILED"
        name_width = max((len(outcome.name) for outcome in ordered), default=4)
        lines = [
            f"Data validation {verdict}: {failed} of {len(ordered)} expectations failed",
            f"{'status':<6}  {'expectation':<{name_width}}  details",
        ]
        for outcome in ordered:
            status = "ok" if outcome.success else "FAIL"
            lines.append(f"{status:<6}  {outcome.name:<{name_width}}  {outcome.details}")
        return "\n".join(lines)


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
    """Return the expectations for the one-row-per-image manifest."""
    from great_expectations.expectations.row_conditions import Column

    expect = gx.expectations
    names = list(class_names)
    height, width, channels = image_shape
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


def summarise_suite_result(
    suite_result: Any,
    expectations: list[Any],
    frame: pd.DataFrame,
    describe_row: Callable[[pd.DataFrame, Any], str],
) -> list[ExpectationOutcome]:
    """Turn a GX suite result into outcomes, in the order the suite declares them."""
    order = {
        expectation.meta["name"]: position for position, expectation in enumerate(expectations)
    }
    outcomes = [summarise_result(result, frame, describe_row) for result in suite_result.results]
    return sorted(outcomes, key=lambda outcome: order.get(outcome.name, len(order)))


def summarise_result(
    result: Any, frame: pd.DataFrame, describe_row: Callable[[pd.DataFrame, Any], str]
) -> ExpectationOutcome:
    """Reduce one expectation result to an outcome; an errored expectation is a failure."""
    config = result.expectation_config
    error = find_exception_message(result.exception_info)
    if error is not None:
        success, details = False, f"error: {error}"
    else:
        success = bool(result.success)
        details = describe_result(result.result or {}, config.kwargs, frame, describe_row)
    name = (config.meta or {}).get("name", config.type)
    return ExpectationOutcome(name=name, expectation=config.type, success=success, details=details)


def find_exception_message(exception_info: dict | None) -> str | None:
    """Return the message of any exception GX caught while evaluating an expectation."""
    if not exception_info:
        return None
    # GX reports either one flat record or one record per failing metric.
    records = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    messages = [
        str(record.get("exception_message") or "unknown error")
        for record in records
        if isinstance(record, dict) and record.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


def describe_result(
    info: dict,
    kwargs: dict,
    frame: pd.DataFrame,
    describe_row: Callable[[pd.DataFrame, Any], str],
) -> str:
    """Return the observed values of one expectation result in a few words."""
    if "unexpected_count" in info and "element_count" in info:
        return describe_unexpected_rows(info, kwargs.get("column", "?"), frame, describe_row)
    missing_columns = info.get("details", {}).get("mismatched", {}).get("missing")
    if missing_columns:
        return f"missing columns: {', '.join(map(str, missing_columns))}"
    parts = []
    if info.get("partial_missing_list"):
        parts.append(
            f"missing values: {format_values(sorted_values(info['partial_missing_list']))}"
        )
    if info.get("partial_unexpected_list"):
        unexpected = sorted_values(info["partial_unexpected_list"])
        parts.append(f"unexpected values: {format_values(unexpected)}")
    observed = info.get("observed_value")
    if not parts and isinstance(observed, (int, float, str)):
        parts.append(f"observed {observed}")
    return "; ".join(parts) or "as expected"


def describe_unexpected_rows(
    info: dict, column: str, frame: pd.DataFrame, describe_row: Callable[[pd.DataFrame, Any], str]
) -> str:
    """Describe a column-map result: how many rows failed, with which values, e.g. where."""
    unexpected, total = info["unexpected_count"], info["element_count"]
    if not unexpected:
        return f"all {total} rows ok"
    values = [entry["value"] for entry in info.get("partial_unexpected_counts", [])]
    if not values:
        values = list(dict.fromkeys(info.get("partial_unexpected_list", [])))
    examples = [
        describe_row(frame, index) for index in info.get("partial_unexpected_index_list", [])
    ]
    text = f"{unexpected} of {total} rows with unexpected {column} ({format_values(values)})"
    if examples:
        text += f", e.g. {', '.join(examples[:EXAMPLE_ROWS])}"
    return text


def describe_manifest_row(frame: pd.DataFrame, index: Any) -> str:
    """Name a manifest row by its split and position in that split."""
    if {"split", "index"} <= set(frame.columns):
        row = frame.loc[index]
        return f"{row['split']} index {row['index']}"
    return f"row {index}"


def describe_class_count_row(frame: pd.DataFrame, index: Any) -> str:
    """Name a class-count row by its class and train image count."""
    row = frame.loc[index]
    return f"class {row['class_name']!r} with {row['count']} images"


def format_values(values: Sequence[Any]) -> str:
    """Join a short list of observed values for a details string."""
    return ", ".join(format_value(value) for value in values)


def sorted_values(values: Sequence[Any]) -> list[Any]:
    """Return distinct values in a stable order (GX reports sets in arbitrary order)."""
    return sorted(dict.fromkeys(values), key=str)


def format_value(value: Any) -> str:
    """Render one observed value; strings quoted so blanks stay visible."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return str(value)


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
