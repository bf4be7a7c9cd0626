"""How a lever study's row compares with its baseline: the gain, and which baseline runs."""

from __future__ import annotations

import statistics


def mean_gain(records: list[dict], baseline: list[dict]) -> float | None:
    if not records or not baseline:
        return None
    mean = statistics.mean
    return mean(r["score"] for r in records) - mean(r["score"] for r in baseline)


def baseline_of(records: list[dict], baseline: list[dict], session: dict[str, int]) -> list[dict]:
    """The baseline runs `records` compare with: those a later session ran anew
    (`--baseline-again`) when every record comes from that session, else the first ones."""
    sessions = {session.get(record["experiment"], 0) for record in records}
    again = [b for b in baseline if b["again"] and session.get(b["experiment"], 0) in sessions]
    if len(sessions) == 1 and again:
        return again
    return [b for b in baseline if not b["again"]]
