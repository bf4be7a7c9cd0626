"""The promote command's core: score the candidate and the champion on one test split, decide
with the gate in `gate`, record the decision and the model card in the model registry and
describe it for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from imgclf.evaluation.metrics import confusion_matrix
from imgclf.evaluation.model_card import (
    CardInputs,
    Comparison,
    RunRecord,
    describe_run,
    registry_description,
    render_model_card,
)
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
    # What the model card adds: the run's record, both models' per-image correctness and the
    # candidate's confusion matrix on the test split.
    run: RunRecord | None = None
    candidate_correct: np.ndarray | None = None
    champion_correct: np.ndarray | None = None
    confusion: np.ndarray | None = None


def predicted_classes(
    model: Any, images: np.ndarray, num_labels: int, batch_size: int
) -> np.ndarray:
    """The model's top class for each test image."""
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    if probabilities.ndim != 2 or probabilities.shape[0] != num_labels:
        raise ValueError(f"model output shape {probabilities.shape} does not fit the test split")
    return probabilities.argmax(axis=1)


def correct_predictions(
    model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int
) -> np.ndarray:
    """Per test image, whether the model's top class is the label."""
    return predicted_classes(model, images, len(labels), batch_size) == labels


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
    run = describe_run(client.get_run(run_id))
    old_champion = model_registry.get_aliases(client, name).get(model_registry.CHAMPION)
    predicted = predicted_classes(candidate, test[0], len(test[1]), batch_size)
    candidate_correct = predicted == test[1]
    champion_correct = (
        None
        if old_champion is None
        else score_champion(client, name, old_champion, test, num_classes, batch_size)
    )
    decision = gate.decide(
        metrics,
        validation.get("success") is True and run.tags.get("data.validation") == "passed",
        min_accuracy=settings.min_accuracy,
        min_gain=settings.min_gain,
        alpha=settings.alpha,
        candidate_correct=candidate_correct,
        champion_correct=champion_correct,
        pruned_at_epoch=run.tags.get("tune.pruned_at_epoch"),
    )
    # A candidate with more outputs than classes.json names gets no per-class table, not a crash.
    fits = predicted.max(initial=0) < num_classes
    confusion = confusion_matrix(test[1], predicted, num_classes) if fits else None
    return Verdict(
        decision, name, run_id, metrics, run.tags, old_champion,
        run, candidate_correct, champion_correct, confusion,
    )  # fmt: skip


def card_inputs(
    verdict: Verdict, class_names: Sequence[str], source: Mapping[str, Any] | None
) -> CardInputs:
    """What the model card of the run's version says, the gate's comparison included.

    source is data/raw/source.json, or None when it cannot be read (the card says so).
    """
    decision = verdict.decision
    comparison = Comparison(
        promoted=decision.promote,
        failed_checks=tuple(check.name for check in decision.checks if not check.passed),
        champion_version=verdict.old_champion,
        candidate_accuracy=_share(verdict.candidate_correct),
        champion_accuracy=_share(verdict.champion_correct),
        p_value=decision.p_value,
    )
    run = verdict.run or RunRecord(verdict.run_id, tags=verdict.run_tags)
    return CardInputs(
        verdict.name, class_names, verdict.metrics, run, source, verdict.confusion, comparison
    )


def _share(correct: np.ndarray | None) -> float | None:
    return None if correct is None or len(correct) == 0 else float(np.mean(correct))


def model_card(card: CardInputs, version: str) -> str:
    """The card of a registered version; a fact it cannot format leaves a shorter card, never
    a failed promotion."""
    try:
        return render_model_card(replace(card, version=version))
    except (TypeError, ValueError, KeyError) as error:
        return (
            f"# Model card: {card.model_name} (version {version})\n\nTraining run "
            f"`{card.run.run_id}`. The card could not be built: {type(error).__name__}: {error}\n"
        )


def record(client: Any, verdict: Verdict, card: CardInputs) -> str:
    """Register the run's model (alias challenger), tag the reasons, describe it with its model
    card and, on a pass, crown it; return its version."""
    tags = gate.reason_tags(
        verdict.decision, verdict.metrics, verdict.run_tags, verdict.old_champion
    )
    version = model_registry.register_run_model(client, verdict.name, verdict.run_id)
    model_registry.tag_version(client, verdict.name, version, tags)
    text = model_card(card, version)
    # Before crowning: a champion is never left without its card.
    model_registry.describe_version(
        client, verdict.name, version, registry_description(text, verdict.run_id)
    )
    model_registry.log_run_card(client, verdict.run_id, text)
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
