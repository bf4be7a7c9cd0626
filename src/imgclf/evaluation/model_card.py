"""The model card: what a model was trained on, how it scores, and how to load it, in markdown.

Values evaluate and promote already hold in (eval.json, the training run's params, tags and
metrics, source.json, the confusion matrix, the gate's comparison), text out; no file or store
is touched. A missing input is a line in the card, never an error: promotion must not fail
for want of an optional fact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgclf.evaluation.metrics import per_class_scores

# The two-sided 95% normal quantile (the 0.975 point of N(0, 1)).
WILSON_Z_95 = 1.959963984540054
# MLflow keeps a model version's description in a VARCHAR(5000); PostgreSQL enforces the limit.
DESCRIPTION_LIMIT = 5000
# The params that define the recipe; every other one is in the run's params in MLflow.
RECIPE_KEYS = (
    "model.arch", "model.widths", "model.width", "loss.name", "loss.label_smoothing",
    "reg.l1", "reg.l2", "reg.dropout", "optimizer.name", "optimizer.lr", "optimizer.momentum",
    "optimizer.weight_decay", "optimizer.schedule", "train.epochs", "train.batch_size",
    "train.seed", "evaluate.tta",
)  # fmt: skip
# Augmentation levers, shown only when on (a value other than off, 0, false or empty).
AUGMENT_KEYS = (
    "augment.copies", "augment.online_crop_flip", "augment.online_flip",
    "augment.online_color_jitter", "augment.online_cutout_fraction", "augment.mixup_alpha",
    "augment.cutmix_alpha", "augment.progressive_side",
)  # fmt: skip
OFF_VALUES = {"", "0", "0.0", "false", "none", "off"}
SPLIT_CONTEXTS = {"training": "train", "validation": "validation"}
VERSION_TAGS = ("tensorflow.version", "keras.version")
SEVERITY_KEYS = ("severity_1", "severity_2", "severity_3", "mean")  # eval.json's corruption block


@dataclass(frozen=True)
class RunRecord:
    """What the training run recorded: params (dotted keys), tags, metrics and split sizes."""

    run_id: str
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    split_sizes: Mapping[str, int] = field(default_factory=dict)  # train, validation -> images


@dataclass(frozen=True)
class Comparison:
    """The promotion gate's verdict: this model against the champion it would replace."""

    promoted: bool
    failed_checks: tuple[str, ...]
    champion_version: str | None  # None: there was no champion to beat
    candidate_accuracy: float | None = None  # both re-scored on the same test images
    champion_accuracy: float | None = None
    p_value: float | None = None  # exact McNemar


@dataclass(frozen=True)
class CardInputs:
    """Everything a card says; each optional input that is None is reported as missing."""

    model_name: str  # the registered model
    class_names: Sequence[str]
    metrics: Mapping[str, Any]  # eval.json
    run: RunRecord
    source: Mapping[str, Any] | None = None  # data/raw/source.json
    confusion: np.ndarray | None = None  # [true class, predicted class] counts
    comparison: Comparison | None = None  # only at promotion
    version: str | None = None  # the registered version, once there is one


def describe_run(run: Any) -> RunRecord:
    """The parts of an MLflow Run (as MlflowClient.get_run returns it) that a card reads."""
    sizes = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = next((tag.value for tag in item.tags if tag.key == "mlflow.data.context"), "")
        shape = json.loads(item.dataset.profile or "{}").get("targets_shape")
        if context in SPLIT_CONTEXTS and shape:
            sizes[SPLIT_CONTEXTS[context]] = int(shape[0])
    data = run.data
    return RunRecord(run.info.run_id, data.params, data.tags, data.metrics, sizes)


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (good near 0 and 1, unlike the normal one)."""
    if trials <= 0:
        return 0.0, 1.0
    share = successes / trials
    scale = 1 + z**2 / trials
    centre = (share + z**2 / (2 * trials)) / scale
    half = z * math.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def render_model_card(inputs: CardInputs) -> str:
    """The card as markdown: data, recipe, scores, robustness, training, promotion, loading."""
    missing: list[str] = []
    which = f"version {inputs.version}" if inputs.version else f"run {inputs.run.run_id}"
    lines = [
        f"# Model card: {inputs.model_name} ({which})",
        "",
        f"Training run `{inputs.run.run_id}`. Classes ({len(inputs.class_names)}): "
        f"{', '.join(inputs.class_names)}.",
    ]
    for section in (
        _data_section(inputs, missing),
        _recipe_section(inputs.run.params, missing),
        _performance_section(inputs.metrics, missing),
        _per_class_section(inputs, missing),
        _robustness_section(inputs.metrics, missing),
        _training_section(inputs.run, missing),
        _comparison_section(inputs.comparison) if inputs.comparison else [],
        _loading_section(inputs),
    ):
        lines.extend(section)
    if missing:
        lines.extend(["", "## Missing", "", *(f"- {item}" for item in missing)])
    return "\n".join(lines) + "\n"


def _data_section(inputs: CardInputs, missing: list[str]) -> list[str]:
    tags, sizes = inputs.run.tags, inputs.run.split_sizes
    lines = ["", "## Data", ""]
    if inputs.source:
        details = [
            f"{key} {f'({len(value)} files)' if isinstance(value, Mapping) else value}"
            for key, value in inputs.source.items()
            if key != "source" and value is not None
        ]
        where = f" ({'; '.join(details)})" if details else ""
        lines.append(f"- Source: {inputs.source.get('source', 'not recorded')}{where}")
    else:
        lines.append(f"- Source: {tags.get('data.source', 'not recorded')}")
        missing.append("data/raw/source.json (where the images came from)")
    lines.append(f"- Data hash (`data.hash` tag of the run): `{tags.get('data.hash', 'none')}`")
    missing += [] if "data.hash" in tags else ["the run's data.hash tag"]
    test = inputs.metrics.get("num_test_images")
    counts = [f"{name} {sizes.get(name, 'not recorded')}" for name in ("train", "validation")]
    lines.append(f"- Images: {', '.join(counts)}, test {test if test is not None else '?'}")
    missing += [] if len(sizes) == 2 else ["the run's train and validation data set inputs"]
    return lines


def _recipe_section(params: Mapping[str, str], missing: list[str]) -> list[str]:
    shown = [key for key in RECIPE_KEYS if key in params]
    if not shown:
        missing.append("the run's params (the recipe)")
        return ["", "## Recipe", "", "Not recorded: the training run logged no params."]
    arch = params.get("model.arch", "")
    # Each architecture reads one of the width settings; the other would only mislead.
    skip = {"model.width"} if arch == "fast_cnn" else {"model.widths"}
    rows = [f"| `{key}` | {params[key]} |" for key in shown if key not in skip]
    on = [
        f"{key.split('.', 1)[1]}={params[key]}"
        for key in AUGMENT_KEYS
        if str(params.get(key, "")).strip().lower() not in OFF_VALUES
    ]
    return [
        "", "## Recipe", "", "| param | value |", "|---|---|", *rows,
        f"| augmentation | {', '.join(on) or 'none'} |",
        "", "Every param is in the training run's params in MLflow.",
    ]  # fmt: skip


def _performance_section(metrics: Mapping[str, Any], missing: list[str]) -> list[str]:
    accuracy, count = metrics.get("accuracy"), metrics.get("num_test_images")
    lines = ["", "## Test performance", ""]
    if accuracy is None or count is None:
        missing.append("eval.json's accuracy and num_test_images")
        lines.append("- Accuracy: not recorded")
    else:
        low, high = wilson_interval(round(accuracy * count), count)
        lines.append(
            f"- Accuracy: {accuracy:.4f} on {count} test images "
            f"(95% Wilson score interval {low:.4f} to {high:.4f})"
        )
    labels = {"macro_f1": "macro F1", "loss": "cross-entropy loss", "top5_accuracy": "top-5"}
    others = [f"{label} {metrics[key]:.4f}" for key, label in labels.items() if key in metrics]
    lines += [f"- Also: {', '.join(others)}"] if others else []
    if "ece" in metrics:
        lines.append(
            f"- Calibration: expected calibration error (ECE, 15 equal-width confidence bins) "
            f"{metrics['ece']:.4f}"
        )
    else:
        missing.append("eval.json's ece (calibration)")
    return lines


def _per_class_section(inputs: CardInputs, missing: list[str]) -> list[str]:
    lines = ["", "## Per class", ""]
    if inputs.confusion is None:
        missing.append("the confusion matrix (per-class precision, recall and F1)")
        return [*lines, "Not recorded: no confusion matrix was given."]
    precision, recall, f1 = per_class_scores(inputs.confusion)
    support = inputs.confusion.sum(axis=1)
    lines += ["| class | precision | recall | F1 | test images |", "|---|---|---|---|---|"]
    for index, name in enumerate(inputs.class_names):
        scores = (precision[index], recall[index], f1[index])
        lines.append(f"| {name} | {' | '.join(f'{x:.3f}' for x in scores)} | {support[index]} |")
    return lines


def _robustness_section(metrics: Mapping[str, Any], missing: list[str]) -> list[str]:
    block = metrics.get("corruption")
    lines = ["", "## Corruption robustness", ""]
    if not isinstance(block, Mapping):
        missing.append("eval.json's corruption block (accuracy under corruptions)")
        return [*lines, "Not recorded: eval.json has no corruption block."]
    names = [name for name, value in block.items() if isinstance(value, Mapping)]
    lines.append(
        f"Accuracy on {block.get('num_images')} test images (seed {block.get('seed')}), clean "
        f"{block.get('clean_accuracy', math.nan):.4f}, under each corruption at severities 1-3:"
    )
    lines += ["", "| corruption | 1 | 2 | 3 | mean |", "|---|---|---|---|---|"]
    for name in names:
        scores = [block[name].get(key, math.nan) for key in SEVERITY_KEYS]
        lines.append(f"| {name} | {' | '.join(f'{score:.3f}' for score in scores)} |")
    if "corruption_accuracy" in metrics:
        lines += ["", f"Mean under corruptions: {metrics['corruption_accuracy']:.4f}"]
    return lines


def _training_section(run: RunRecord, missing: list[str]) -> list[str]:
    lines, seconds, tags = ["", "## Training", ""], run.metrics.get("train_seconds"), run.tags
    missing += [] if seconds is not None else ["the run's train_seconds metric"]
    lines.append(f"- Wall time of fit: {'not recorded' if seconds is None else f'{seconds:.1f} s'}")
    if "device" not in tags:
        missing.append("the run's device tags")
        lines.append("- Device: not recorded")
    else:
        lines.append(
            f"- Device: {tags['device']} ({tags.get('accelerator', 'unnamed')}), precision "
            f"{tags.get('precision.policy', 'not recorded')}"
        )
    versions = [f"{key.split('.')[0]} {tags[key]}" for key in VERSION_TAGS if key in tags]
    code = tags.get("git.commit", "not recorded")
    return [*lines, f"- Software: {', '.join(versions) or 'not recorded'}; code {code}"]


def _comparison_section(comparison: Comparison) -> list[str]:
    decision = "promoted" if comparison.promoted else "rejected"
    if comparison.failed_checks:
        decision += f" (failed checks: {', '.join(comparison.failed_checks)})"
    lines = ["", "## Promotion", "", f"- Decision: {decision}"]
    champion, ours, theirs = (
        comparison.champion_version,
        comparison.candidate_accuracy,
        comparison.champion_accuracy,
    )
    if champion is None:
        return [*lines, "- No champion before this model: the thresholds alone decided."]
    if ours is None or theirs is None:
        return [*lines, f"- Champion then: version {champion}; no paired predictions were made."]
    p_value = "not computed" if comparison.p_value is None else f"{comparison.p_value:.3g}"
    return [
        *lines,
        f"- Against version {champion}, the champion then, on the same test images: accuracy "
        f"{ours:.4f} vs {theirs:.4f} (gain {ours - theirs:+.4f}), exact McNemar p = {p_value}",
    ]


def _loading_section(inputs: CardInputs) -> list[str]:
    name = inputs.model_name
    uri = f"models:/{name}/{inputs.version}" if inputs.version else f"models:/{name}@champion"
    note = (
        f"`models:/{name}@champion` loads whichever version is champion now."
        if inputs.version
        else "Not registered yet: `imgclf promote` registers it and may make it the champion."
    )
    return [
        "", "## How to load it", "",
        f"The pyfunc answers class names and probabilities. {note}", "",
        "```python",
        "import keras  # raw uint8 pixels in, probabilities out; needs no imgclf",
        'model = keras.saving.load_model("model.keras")  # models/model.keras, or the artifact',
        "import mlflow",
        f'model = mlflow.pyfunc.load_model("{uri}")',
        "```", "",
        f"`imgclf predict IMAGES --model {uri}`",
    ]  # fmt: skip


def registry_description(card: str, run_id: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """The card cut to what the registry stores, at a line end, saying where the rest is."""
    if len(card) <= limit:
        return card
    note = f"\n\n(Cut to {limit} characters: the whole card is `model_card.md` of run {run_id}.)\n"
    kept = card[: limit - len(note)]
    return kept[: kept.rfind("\n")] + note
