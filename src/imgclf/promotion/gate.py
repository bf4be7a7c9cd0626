"""The promotion gate: a pure decision over metrics and paired predictions.

The registry it guards is read and written by `imgclf.promotion.model_registry`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imgclf.errors import ImgclfError

REQUIRED_METRICS = ("accuracy", "macro_f1", "loss")
# eval.json and the gate's own re-evaluation of the same model may differ by an argmax near-tie
# flipped by float round-off on other hardware, never by more than a handful of images.
ACCURACY_TOLERANCE = 0.005


class PromotionError(ImgclfError, RuntimeError):
    """The gate cannot reach a decision (missing or unusable inputs, or registry state)."""


@dataclass(frozen=True)
class Check:
    """One reason in the promotion decision."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and every reason behind it."""

    promote: bool
    checks: tuple[Check, ...]
    p_value: float | None
    gain: float | None

    def table(self) -> str:
        """A readable table of the reasons, failed checks marked FAIL."""
        verdict = "PROMOTE" if self.promote else "REJECT"
        width = max((len(check.name) for check in self.checks), default=5)
        lines = [f"Promotion decision: {verdict}", f"{'check':<{width}}  result  detail"]
        for check in self.checks:
            result = "pass" if check.passed else "FAIL"
            lines.append(f"{check.name:<{width}}  {result:<6}  {check.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "p_value": self.p_value,
            "gain": self.gain,
            "checks": [asdict(check) for check in self.checks],
        }


def mcnemar_exact_p(candidate_correct: np.ndarray, champion_correct: np.ndarray) -> float:
    """Two-sided exact McNemar test: a binomial(b + c, 1/2) test on the discordant pairs.

    b counts images only the candidate gets right, c images only the champion gets right.
    """
    candidate = np.asarray(candidate_correct, dtype=bool)
    champion = np.asarray(champion_correct, dtype=bool)
    if candidate.ndim != 1 or candidate.shape != champion.shape:
        raise ValueError(
            f"paired predictions must be two 1-D arrays of one length, got shapes "
            f"{candidate.shape} and {champion.shape}"
        )
    only_candidate = int(np.sum(candidate & ~champion))
    only_champion = int(np.sum(~candidate & champion))
    discordant = only_candidate + only_champion
    if discordant == 0:
        return 1.0
    # Exact integers: with thousands of discordant pairs 0.5**n underflows a float.
    term, tail = 1, 1
    for k in range(min(only_candidate, only_champion)):
        term = term * (discordant - k) // (k + 1)
        tail += term
    return min(1.0, 2 * tail / 2**discordant)


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def check_metrics(metrics: Mapping[str, Any]) -> Check:
    """The required metrics are present, finite, and accuracy lies in [0, 1]."""
    problems = []
    for name in REQUIRED_METRICS:
        if name not in metrics:
            problems.append(f"{name} missing")
        elif _finite_number(metrics[name]) is None:
            problems.append(f"{name} is {metrics[name]!r}, not a finite number")
    accuracy = _finite_number(metrics.get("accuracy"))
    if accuracy is not None and not 0.0 <= accuracy <= 1.0:
        problems.append(f"accuracy {accuracy} outside [0, 1]")
    if problems:
        return Check("metrics", False, "; ".join(problems))
    return Check("metrics", True, f"{', '.join(REQUIRED_METRICS)} present and finite")


def check_training_complete(pruned_at_epoch: str | None) -> Check:
    """A tuning trial that its pruner stopped early is never a candidate."""
    if pruned_at_epoch is None:
        return Check("complete_training", True, "trained every epoch (not a pruned trial)")
    return Check(
        "complete_training",
        False,
        f"a pruned tuning trial (stopped after epoch {pruned_at_epoch}) is never a candidate; "
        "promote a full run, such as the study's best trial (`imgclf tune --report STUDY`)",
    )


def _paired_checks(
    candidate: np.ndarray, champion: np.ndarray, *, min_gain: float, alpha: float
) -> tuple[list[Check], float, float]:
    candidate, champion = candidate.astype(bool), champion.astype(bool)
    gain = float(candidate.mean() - champion.mean())
    p_value = mcnemar_exact_p(candidate, champion)
    only_candidate = int(np.sum(candidate & ~champion))
    only_champion = int(np.sum(~candidate & champion))
    checks = [
        Check(
            "gain",
            gain > 0 and gain >= min_gain,
            f"{candidate.mean():.4f} vs champion {champion.mean():.4f} on {len(candidate)} "
            f"test images: gain {gain:+.4f} (needs > 0 and >= {min_gain})",
        ),
        Check(
            "significance",
            p_value < alpha and gain > 0,
            f"exact McNemar p = {p_value:.3g} (needs < {alpha}, in the candidate's favour); "
            f"only candidate right "
            f"{only_candidate}, only champion right {only_champion}",
        ),
    ]
    return checks, gain, p_value


def decide(
    metrics: Mapping[str, Any],
    validation_passed: bool,
    *,
    min_accuracy: float,
    min_gain: float,
    alpha: float,
    candidate_correct: np.ndarray | None,
    champion_correct: np.ndarray | None,
    pruned_at_epoch: str | None = None,
) -> Decision:
    """Fail-closed gate: every check must pass, and anything missing or unusable fails.

    candidate_correct and champion_correct mark, per test image, whether each model was right;
    champion_correct is None when there is no champion yet, and the thresholds alone decide.
    pruned_at_epoch is set when the run is a tuning trial its pruner stopped early.
    """
    checks = [
        check_validation(validation_passed),
        check_metrics(metrics),
        check_training_complete(pruned_at_epoch),
        *_accuracy_checks(metrics, min_accuracy, candidate_correct),
    ]
    paired, gain, p_value = _champion_checks(
        candidate_correct, champion_correct, min_gain=min_gain, alpha=alpha
    )
    checks.extend(paired)
    return Decision(all(check.passed for check in checks), tuple(checks), p_value, gain)


def check_validation(validation_passed: bool) -> Check:
    """Only a run on data that passed validation may be promoted; unknown counts as failed."""
    if validation_passed is True:
        return Check("validation", True, "data validation passed")
    return Check("validation", False, "data validation failed or its result is unknown")


def _accuracy_checks(
    metrics: Mapping[str, Any], min_accuracy: float, candidate_correct: np.ndarray | None
) -> list[Check]:
    """eval.json's accuracy reaches the bar and, when re-scored, matches the model's own."""
    accuracy = _finite_number(metrics.get("accuracy"))
    checks = [
        Check(
            "min_accuracy",
            accuracy is not None and accuracy >= min_accuracy,
            f"accuracy {accuracy if accuracy is None else round(accuracy, 4)} "
            f"(needs >= {min_accuracy})",
        )
    ]
    if candidate_correct is not None:
        recomputed = float(np.mean(candidate_correct)) if len(candidate_correct) else math.nan
        checks.append(
            Check(
                "eval_matches_model",
                accuracy is not None and abs(recomputed - accuracy) <= ACCURACY_TOLERANCE,
                f"re-evaluated accuracy {recomputed:.4f} vs eval.json {accuracy}",
            )
        )
    return checks


def _champion_checks(
    candidate_correct: np.ndarray | None,
    champion_correct: np.ndarray | None,
    *,
    min_gain: float,
    alpha: float,
) -> tuple[list[Check], float | None, float | None]:
    """The candidate against the champion on the same images; no champion: nothing to beat."""
    if champion_correct is None:
        return [Check("champion", True, "no champion yet: the thresholds alone decide")], None, None
    if candidate_correct is None or np.shape(candidate_correct) != np.shape(champion_correct):
        checks = [
            Check("champion", False, "no paired predictions of both models on one test split")
        ]
        return checks, None, None
    return _paired_checks(
        np.asarray(candidate_correct), np.asarray(champion_correct), min_gain=min_gain, alpha=alpha
    )


def reason_tags(
    decision: Decision,
    metrics: Mapping[str, Any],
    run_tags: Mapping[str, str],
    compared_with: str | None,
) -> dict[str, str]:
    """Model-version tags that record why the gate decided as it did."""
    tags = {
        "promotion.decision": "promoted" if decision.promote else "rejected",
        "promotion.compared_with": compared_with or "none",
        "promotion.p_value": str(decision.p_value),
        "promotion.gain": str(decision.gain),
        "promotion.failed_checks": ",".join(c.name for c in decision.checks if not c.passed)
        or "none",
    }
    for name in REQUIRED_METRICS:
        tags[f"promotion.{name}"] = str(metrics.get(name))
    for key in ("data.hash", "git.commit"):
        tags[key] = run_tags.get(key, "unknown")
    return tags
