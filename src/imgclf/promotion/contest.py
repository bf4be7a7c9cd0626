"""The promote command's core: score the candidate and the champion on one test split, decide
with the gate in `gate`, record the decision in the model registry and describe it for the
report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgclf.params import PromoteParams
from imgclf.promotion import gate, model_registry


@dataclass(frozen=True)
class Verdict:
    """The gate's decision and what it was taken on: the run, its tags, the old champion."""

    decision: gate.Decision
    name: str  # the registered model
    run_id: str
    metrics: Mapping[str, Any]
    run_tags: Mapping[str, str]
    old_champion: str | None


def correct_predictions(
    model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int
) -> np.ndarray:
    """Per test image, whether the model's top class is the label."""
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(labels):
        raise ValueError(f"model output shape {probabilities.shape} does not fit the test split")
    return probabilities.argmax(axis=1) == labels


def score_champion(
    client: Any, name: str, version: str, test: tuple, num_classes: int, batch_size: int
) -> np.ndarray:
    """The champion's per-image correctness on today's test split."""
    champion = model_registry.load_version_model(client, name, version)
    if champion.output_shape[-1] != num_classes:
        raise gate.PromotionError(
            f"champion (version {version}) predicts {champion.output_shape[-1]} classes, the "
            f"test split has {num_classes}: the two cannot be compared"
        )
    return correct_predictions(champion, *test, batch_size)


def judge(
    client: Any,
    name: str,
    run_id: str,
    metrics: Mapping[str, Any],
    validation: Mapping[str, Any],
    candidate: Any,
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    settings: PromoteParams,
    batch_size: int,
) -> Verdict:
    """Read and score everything the decision needs, then decide; nothing in the registry moves.

    validation is validate's result.json; candidate is the run's model.
    """
    run_tags = client.get_run(run_id).data.tags
    old_champion = model_registry.get_aliases(client, name).get(model_registry.CHAMPION)
    decision = gate.decide(
        metrics,
        validation.get("success") is True and run_tags.get("data.validation") == "passed",
        min_accuracy=settings.min_accuracy,
        min_gain=settings.min_gain,
        alpha=settings.alpha,
        candidate_correct=correct_predictions(candidate, *test, batch_size),
        champion_correct=None
        if old_champion is None
        else score_champion(client, name, old_champion, test, num_classes, batch_size),
        pruned_at_epoch=run_tags.get("tune.pruned_at_epoch"),
    )
    return Verdict(decision, name, run_id, metrics, run_tags, old_champion)


def record(client: Any, verdict: Verdict) -> str:
    """Register the run's model (alias challenger), tag the reasons and, on a pass, crown it;
    return its version."""
    tags = gate.reason_tags(
        verdict.decision, verdict.metrics, verdict.run_tags, verdict.old_champion
    )
    version = model_registry.register_run_model(client, verdict.name, verdict.run_id)
    model_registry.tag_version(client, verdict.name, version, tags)
    if verdict.decision.promote:
        model_registry.crown(client, verdict.name, version, verdict.old_champion)
    return version


def report(
    verdict: Verdict,
    version: str | None,
    aliases: Mapping[str, str],
    dry_run: bool,
    num_test_images: int,
) -> dict[str, Any]:
    """promotion.json: the decision, its reasons, what moved and what it was compared with."""
    verdict_word = "promoted" if verdict.decision.promote else "rejected"
    return {
        "decision": f"would be {verdict_word} (dry run)" if dry_run else verdict_word,
        "dry_run": dry_run,
        **verdict.decision.to_dict(),
        "registered_model": verdict.name,
        "run_id": verdict.run_id,
        "version": version,
        "compared_with": verdict.old_champion,
        "aliases": dict(aliases),
        "metrics": {key: verdict.metrics[key] for key in gate.REQUIRED_METRICS},
        "num_test_images": num_test_images,
        "data_hash": verdict.run_tags.get("data.hash"),
        "git_commit": verdict.run_tags.get("git.commit"),
    }
