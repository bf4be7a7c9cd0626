"""The tuning page's earlier measurements: pruners tried before, earlier runs of the page."""

from __future__ import annotations


def within(gap: float, spread: float) -> bool:
    """Whether an accuracy difference is within the seed spread, as the page prints both."""
    return round(abs(gap), 4) <= round(spread, 4)


def earlier_lines(measured: dict, full: dict, spread: float) -> list[str]:
    """One line per pruner measured before the one above, against the same full study."""
    lines = []
    for entry in measured.get("earlier_pruned", []):
        pruner, study = entry["pruner"], entry["study"]
        ratio = study["train_seconds"] / full["train_seconds"]
        gap = full["best_val_accuracy"] - study["best_val_accuracy"]
        lines.append(
            f"- Measured before it, against the same full study: `{pruner['pruner']}` with "
            f"warm-up {pruner['pruner_warmup_epochs']} and factor "
            f"{pruner['pruner_reduction_factor']}: pruned / full = {ratio:.2f}, best val "
            f"accuracy {study['best_val_accuracy']:.4f} (difference {gap:+.4f}, "
            f"{'within' if within(gap, spread) else 'outside'} the seed spread). {entry['why']}"
        )
    return lines


def earlier_runs_table(runs: list[dict]) -> list[str]:
    """The earlier runs of this benchmark (other data, epochs or pruner), as they were measured."""
    if not runs:
        return []
    lines = [
        "",
        "## Earlier runs of this benchmark",
        "",
        "The same search space; each row is one pruned study against the full study of its own "
        "run, with that run's seed spread.",
        "",
        "| images | epochs | trials | pruner (warm-up, factor) | pruned / full train seconds "
        "| best val full | best val pruned | seed spread | within noise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        pruner = run["pruner"]
        gap = run["full_best_val_accuracy"] - run["pruned_best_val_accuracy"]
        lines.append(
            f"| {run['images']:,} | {run['epochs']} | {run['trials']} | {pruner['pruner']} "
            f"({pruner['pruner_warmup_epochs']}, {pruner['pruner_reduction_factor']}) | "
            f"{run['pruned_train_seconds'] / run['full_train_seconds']:.2f} | "
            f"{run['full_best_val_accuracy']:.4f} | {run['pruned_best_val_accuracy']:.4f} | "
            f"{run['seed_spread']:.4f} | {'yes' if within(gap, run['seed_spread']) else 'no'} |"
        )
    return lines
