"""The one renderer: every page under docs/results/ from the JSON beside it.

    python bench/render                # every page
    python bench/render performance    # one page: performance, levers, ablation or tuning

The bench scripts measure and write JSON; nothing here measures, and no script imports this.
"""

from __future__ import annotations


def where(session: dict) -> str:
    """The machine, its processor features, the date and the commit a page's numbers came from
    (features and commit only where the run recorded them)."""
    parts = [f"Machine: {session['machine']}."]
    if session.get("features"):
        parts.append(f"Processor features: {session['features']}.")
    parts.append(f"Date: {session['date']}.")
    if session.get("commit"):
        parts.append(f"Code: commit {session['commit']}.")
    return " ".join(parts)
