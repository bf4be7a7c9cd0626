"""What a validation run found, in a person's words: Great Expectations' results as outcomes.

Apart from `suite.py`, which says what the manifest must satisfy and runs the suite: reading
GX's result objects back (errors, unexpected rows, observed values) into one line per expectation
is its own idea, and needs no GX import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

EXAMPLE_ROWS = 3


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
