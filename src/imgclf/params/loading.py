"""The whole params.yaml: the Params model, its cross-section rules, and the one reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from imgclf.params.base import LOSSES_WITHOUT_SMOOTHING, FieldError, ParamsError, Section
from imgclf.params.data import AugmentParams, DataParams, PreprocessParams, ValidateParams
from imgclf.params.recipe import (
    LossParams,
    ModelParams,
    OptimizerParams,
    RegParams,
    TrainParams,
)
from imgclf.params.reporting import EvaluateParams, MlflowParams, PromoteParams
from imgclf.params.schedule import RESIZABLE_ARCHS, check_schedule, schedule_notes
from imgclf.params.tuning import TuneParams


class Params(Section):
    data: DataParams = DataParams()
    preprocess: PreprocessParams = PreprocessParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    augment: AugmentParams = AugmentParams()
    model: ModelParams = ModelParams()
    loss: LossParams = LossParams()
    reg: RegParams = RegParams()
    optimizer: OptimizerParams = OptimizerParams()
    train: TrainParams = TrainParams()
    mlflow: MlflowParams = MlflowParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    tune: TuneParams = Field(default_factory=TuneParams)

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, protected_namespaces=()
    )

    @model_validator(mode="after")
    def _levers_fit(self) -> Params:
        _check_loss(self.loss)
        check_schedule(self.optimizer, self.train.epochs)
        return self


# Rules across keys live here, not in their sections: `tune` checks each tuned value against
# its section alone, and a rule there would judge it against the other keys' defaults.


def _check_loss(loss: LossParams) -> None:
    if loss.name in LOSSES_WITHOUT_SMOOTHING and loss.label_smoothing > 0:
        why = {
            "symmetric_crossentropy": "its reverse term takes the log of the labels, and it "
            "is itself the remedy for noisy labels",
            "squared_hinge": "a margin loss has no probability targets to smooth",
        }[loss.name]
        raise FieldError(
            "loss.label_smoothing",
            f"loss.label_smoothing ({loss.label_smoothing}) does not combine with loss.name "
            f"{loss.name!r} ({why}): set loss.label_smoothing to 0",
        )
    if loss.name == "symmetric_crossentropy" and loss.sce_alpha == loss.sce_beta == 0:
        raise FieldError(
            "loss.sce_alpha",
            "loss.sce_alpha and loss.sce_beta are both 0, so the loss is 0: make one positive",
        )


def _format_error(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    location = location.replace("validate_", "validate")
    # A rule across keys has no location of its own (pydantic's is the section or nothing):
    # name the key its FieldError says to change.
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        location = cause.field
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see params.yaml for the valid keys)"
    value = error.get("input")
    # A cross-field error carries the whole section as input; its message already names values.
    got = "" if error["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    return f"  {location or 'params'}: {message}{got}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping, raising ParamsError that names every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        lines = [_format_error(item) for item in error.errors()]
        raise ParamsError(f"{source} is invalid:\n" + "\n".join(lines)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; the only reader of that file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the project root or pass --params") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return parse_params(raw, str(path))


def flatten_params(params: Params) -> dict[str, Any]:
    """All params as dotted keys (reg.l2), the way DVC and MLflow name them.

    The `tune` section is left out: it configures searches, not the run it would be logged to.
    """
    flat: dict[str, Any] = {}
    for section, values in params.model_dump(by_alias=True, exclude={"tune"}).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


# Optimizers with an SGD momentum step (muon's for everything but conv kernels), which read
# optimizer.nesterov and optimizer.batchnorm_lr_multiplier.
SGD_LIKE = ("sgd", "muon")


def lever_warnings(params: Params) -> dict[str, str]:
    """Settings that are allowed but probably unintended: MLflow tag name -> message."""
    warnings: dict[str, str] = {}
    if params.reg.l2 > 0 and params.optimizer.weight_decay > 0:
        warnings["warning.l2_with_weight_decay"] = (
            f"reg.l2 ({params.reg.l2}) and optimizer.weight_decay "
            f"({params.optimizer.weight_decay}) both shrink the weights; with adaptive "
            "optimizers the L2 penalty is rescaled per weight while the decoupled decay is not, "
            "so the two interact: usually keep one and set the other to 0"
        )
    if params.optimizer.nesterov and params.optimizer.name not in SGD_LIKE:
        warnings["warning.nesterov_ignored"] = (
            f"optimizer.nesterov is true but optimizer.name is {params.optimizer.name!r}: only "
            "sgd and muon read it, so it has no effect here (nadam is Adam with Nesterov momentum)"
        )
    if params.optimizer.batchnorm_lr_multiplier != 1.0 and params.optimizer.name not in SGD_LIKE:
        warnings["warning.batchnorm_lr_multiplier_ignored"] = (
            f"optimizer.batchnorm_lr_multiplier ({params.optimizer.batchnorm_lr_multiplier:g}) "
            f"applies to sgd and muon only, not {params.optimizer.name!r} (an adaptive optimizer "
            "rescales each gradient itself): it has no effect here; set it to 1 to silence this "
            "note"
        )
    augment = params.augment
    if (
        augment.progressive_side is not None
        and augment.progressive_share > 0
        and params.model.arch not in RESIZABLE_ARCHS
    ):
        warnings["warning.progressive_ignored"] = (
            f"augment.progressive_side ({augment.progressive_side}) needs a model that pools "
            f"globally ({', '.join(RESIZABLE_ARCHS)}); {params.model.arch} takes one input size, "
            "so every epoch trains at full size; set augment.progressive_side to null to "
            "silence this note"
        )
    warnings.update(schedule_notes(params.optimizer, params.train.epochs))
    return warnings
