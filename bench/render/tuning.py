"""tuning.md from tune_pruning.json (bench/tune_pruning.py): what pruning saved, what the
search chose against the shipped defaults, and every trial."""

from __future__ import annotations

import json
from pathlib import Path

from common import REPO, RESULTS

from render import where
from render.earlier import earlier_lines, earlier_runs_table, within

RAW = RESULTS / "tune_pruning.json"
OUT = RESULTS / "tuning.md"


def render(raw: Path = RAW, out: Path = OUT) -> Path:
    write_report(json.loads(raw.read_text(encoding="utf-8")), out)
    return out


def _curve_table(study: dict) -> list[str]:
    """Val accuracy after each epoch, per trial, with the rank of the last epoch's value."""
    rows = [row for row in study["trials"] if row.get("val_accuracy_by_epoch")]
    if not rows:
        return []
    epochs = max(len(row["val_accuracy_by_epoch"]) for row in rows)
    finals = sorted((row["val_accuracy_by_epoch"][-1] for row in rows), reverse=True)
    lines = [
        "| trial | "
        + " | ".join(f"epoch {epoch}" for epoch in range(1, epochs + 1))
        + " | final rank |",
        "|---" * (epochs + 2) + "|",
    ]
    for row in rows:
        curve = row["val_accuracy_by_epoch"]
        cells = [f"{value:.3f}" for value in curve] + [""] * (epochs - len(curve))
        lines.append(
            f"| {row['trial']} | " + " | ".join(cells) + f" | {finals.index(curve[-1]) + 1} |"
        )
    return lines


def _seed_scores(measured: dict) -> list[float]:
    """Best val accuracy of the full study's best setting under train.seed 0 and the others."""
    return [measured["full"]["best_val_accuracy"], *measured["noise_accuracies"]]


def _seed_spread(measured: dict) -> float:
    scores = _seed_scores(measured)
    return max(scores) - min(scores)


def _shipped_values(keys) -> dict:
    from imgclf.params import load_params

    params = load_params(REPO / "params.yaml")
    return {key: getattr(getattr(params, key.split(".")[0]), key.split(".")[1]) for key in keys}


def _trial_table(study: dict, keys: list[str]) -> list[str]:
    lines = [
        "| trial | state | epochs | train s | best val accuracy | " + " | ".join(keys) + " |",
        "|---" * (5 + len(keys)) + "|",
    ]
    for row in study["trials"]:
        cells = [str(row["values"][key]) for key in keys]
        lines.append(
            f"| {row['trial']} | {row['state'].lower()} | {row['epochs']} | "
            f"{row['train_seconds']:.1f} | {row['best_val_accuracy']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def _sameness(full: dict, pruned: dict) -> str:
    """Whether both studies tried the same settings, trial by trial (measured, not assumed)."""
    same = [
        a["values"] == b["values"] for a, b in zip(full["trials"], pruned["trials"], strict=True)
    ]
    if all(same):
        return (
            "Both studies proposed the same settings, trial by trial (Optuna's TPE draws its "
            "first 10 trials at random, each from `tune.seed` plus the trial number), so the "
            "pruned study differs only in stopping the trials that lag."
        )
    return (
        f"The studies proposed the same settings in {sum(same)} of {len(same)} trials; the "
        "others differ because the sampler had seen different (pruned) results."
    )


def _rungs_text(pruner: dict, epochs: int) -> str:
    """Where successive halving compares trials: min_resource x factor^k epochs, before the end."""
    factor = pruner["pruner_reduction_factor"]
    rungs, epoch = [], pruner["pruner_warmup_epochs"]
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= factor
    where = " and again after epoch ".join(str(rung) for rung in rungs)
    share = {2: "half", 3: "third", 4: "quarter"}.get(factor, f"1/{factor}")
    return (
        f"after epoch {where}, a trial goes on only when it is in the top {share} of the trials "
        "that reached that epoch"
    )


def _what_pruning_stopped(full: dict, pruned: dict) -> str:
    """Where the trials the pruner stopped would have ranked in the full study (settings both
    studies tried), and where the pruned study's best ranks there."""
    scores = sorted((row["best_val_accuracy"] for row in full["trials"]), reverse=True)
    rank = {row["trial"]: scores.index(row["best_val_accuracy"]) + 1 for row in full["trials"]}
    both = [
        (ours, theirs)
        for ours, theirs in zip(full["trials"], pruned["trials"], strict=True)
        if ours["values"] == theirs["values"]
    ]
    stopped = sorted(rank[ours["trial"]] for ours, theirs in both if theirs["state"] == "PRUNED")
    best = [rank[ours["trial"]] for ours, theirs in both if theirs["trial"] == pruned["best_trial"]]
    text = (
        f"- What the pruner stopped: of the {len(both)} settings both studies tried, it stopped "
        f"{len(stopped)}, which ranked {', '.join(map(str, stopped)) or '-'} of "
        f"{len(full['trials'])} in the full study"
    )
    if best:
        text += f"; the pruned study's best setting ranked {best[0]} there"
    return text + "."


def _header(measured: dict) -> list[str]:
    full, pruned, pruner = measured["full"], measured["pruned"], measured["pruner"]
    session = measured.get("session")  # runs before 2026-12-04 did not record it
    return [
        "# Tuning: what pruning saves, and what the search chose",
        "",
        "Generated by `nice -n 10 python bench/tune_pruning.py ../shared/datasets/"
        "cifar10-train-jpg.tar.gz` (do not edit by hand; `python bench/render tuning` rebuilds "
        "it from [tune_pruning.json](tune_pruning.json)).",
        "",
        f"Data: {measured['images']:,} CIFAR-10 training JPEGs ({measured['images'] // 10:,} per "
        "class, the first in the archive), split by the pipeline into train, val and a carved "
        f"test split. Every trial trains the shipped fast recipe for {measured['epochs']} epochs "
        f"with the {len(measured['space'])} searched keys below changed; the score is "
        "`best_val_accuracy` (val, never test). "
        f"Both studies: the same space, `tune.seed: {measured['seed']}`, {measured['trials']} "
        "trials, one worker, DVC's run cache emptied first so every trial trains. "
        + _sameness(full, pruned)
        + (f" {where(session)}" if session else ""),
        "",
        f"Pruner: `tune.pruner: {pruner['pruner']}`, `pruner_warmup_epochs: "
        f"{pruner['pruner_warmup_epochs']}`, `pruner_reduction_factor: "
        f"{pruner['pruner_reduction_factor']}` (Optuna's asynchronous successive halving: "
        f"{_rungs_text(pruner, measured['epochs'])}).",
        "",
        "## Pruned against full",
        "",
        "| study | best val accuracy | best trial | summed train seconds | trials pruned | "
        "wall seconds (whole study) |",
        "|---|---|---|---|---|---|",
    ]


def _against_full(measured: dict) -> list[str]:
    full, pruned = measured["full"], measured["pruned"]
    lines = []
    for name, study in (("no pruner", full), (measured["pruner"]["pruner"], pruned)):
        count = sum(row["state"] == "PRUNED" for row in study["trials"])
        lines.append(
            f"| {name} | {study['best_val_accuracy']:.4f} | {study['best_trial']} | "
            f"{study['train_seconds']:.1f} | {count} of {len(study['trials'])} | "
            f"{study['wall_seconds']:.0f} |"
        )
    ratio = pruned["train_seconds"] / full["train_seconds"]
    spread = _seed_spread(measured)
    gap = full["best_val_accuracy"] - pruned["best_val_accuracy"]
    noise_text = ", ".join(f"{value:.4f}" for value in _seed_scores(measured))
    other_seeds = ", ".join(str(seed) for seed in measured["noise_seeds"])
    return [
        *lines,
        "",
        f"- Summed training seconds (train.json `train_seconds`, the wall time of `fit` plus the "
        f"whitening set-up): pruned / full = **{ratio:.2f}** (target: at most 0.50: "
        f"{'met' if ratio <= 0.5 else 'not met'}).",
        f"- Best val accuracy: full {full['best_val_accuracy']:.4f}, pruned "
        f"{pruned['best_val_accuracy']:.4f} (difference {gap:+.4f}). Seed noise: the full "
        f"study's best setting trained with `train.seed` 0, {other_seeds} scores "
        f"{noise_text} (spread {spread:.4f}); the difference is "
        f"{'within' if within(gap, spread) else 'outside'} that spread.",
        _what_pruning_stopped(full, pruned),
        *earlier_lines(measured, full, spread),
        f"- Wall time of the {'first ' if measured.get('earlier_pruned') else ''}benchmark run "
        "(baseline, the full and the first pruned study, seed runs): "
        f"{measured['total_seconds'] / 60:.1f} min on this machine's 2 shared cores; trials "
        "also pay for process start-up and the evaluate stage, which pruning does not shorten.",
        "",
    ]


def _chosen(measured: dict, keys: list[str]) -> list[str]:
    """What the search chose against the shipped defaults, and how to reproduce it."""
    full, pruned, defaults = measured["full"], measured["pruned"], measured["defaults"]
    shipped = _shipped_values(keys)
    return [
        "## What the search chose, against the shipped defaults",
        "",
        "| key | shipped default | best of the full study | best of the pruned study |",
        "|---|---|---|---|",
        *(
            f"| `{key}` | {shipped[key]} | {full['best_values'][key]} | "
            f"{pruned['best_values'][key]} |"
            for key in keys
        ),
        f"| best val accuracy | {defaults['best_val_accuracy']:.4f} (`dvc repro`, "
        f"{defaults['train_seconds']:.1f} s) | {full['best_val_accuracy']:.4f} | "
        f"{pruned['best_val_accuracy']:.4f} |",
        "",
        "Optimiser: TPE (`optuna.samplers.TPESampler`, seeded by `tune.seed`), the only sampler "
        "`imgclf tune` uses. The optimiser itself (`optimizer.name: sgd`) was not searched: "
        "the fast recipe's BatchNorm-shift multiplier and learning rate are SGD's.",
        "",
        "Reproduce the best trial of each study:",
        "",
        "```bash",
        full["best_line"],
        pruned["best_line"],
        "```",
        "",
    ]


def _importances(measured: dict, keys: list[str]) -> list[str]:
    full, pruned = measured["full"], measured["pruned"]
    lines = [
        "## What mattered (fANOVA importances)",
        "",
        "Over the finished (not pruned) trials of each study, seeded, summing to 1; "
        f"{measured['trials']} trials are few for a random forest, so read them as a ranking, "
        "not as exact shares.",
        "",
        "| key | full study | pruned study |",
        "|---|---|---|",
    ]
    for key in keys:
        cells = [
            f"{study['importances'][key]:.3f}" if key in study["importances"] else "-"
            for study in (full, pruned)
        ]
        lines.append(f"| `{key}` | {cells[0]} | {cells[1]} |")
    for study_name, study in (("full", full), ("pruned", pruned)):
        if study["importances_missing"]:
            lines.append(f"\n{study_name} study: {study['importances_missing']}.")
    curves = _curve_table(full)
    if curves:
        lines += [
            "",
            "## Val accuracy by epoch, full study",
            "",
            "Each trial's val accuracy after every epoch (its MLflow run) and its rank at the "
            "end. A pruner compares trials at its rungs: where the early columns rank the "
            "trials otherwise than the last one, pruning there stops eventual winners.",
            "",
            *curves,
        ]
    return lines


def write_report(measured: dict, out: Path) -> None:
    keys = list(measured["space"])
    full, pruned, pruner = measured["full"], measured["pruned"], measured["pruner"]
    lines = _header(measured) + _against_full(measured) + _chosen(measured, keys)
    lines += _importances(measured, keys)
    lines += earlier_runs_table(measured.get("earlier_runs", []))
    lines += ["", "## Every trial", "", "No pruner:", "", *_trial_table(full, keys), ""]
    lines += [f"{pruner['pruner']}:", "", *_trial_table(pruned, keys), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
