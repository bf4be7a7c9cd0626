"""Typed, strict view of params.yaml: one frozen pydantic model per section.

`load_params` (in `loading`) is the only reader of params.yaml. The sections live by theme:
`data` (data, preprocess, validate, augment), `recipe` (model, loss, reg, optimizer, train),
`reporting` (mlflow, evaluate, promote), `tuning` (tune and its search space); `schedule` fits
the learning-rate schedule to train.epochs. Import any of these names from `imgclf.params`.
"""

from imgclf.params.base import (
    ACTIVATION_NAMES,
    ARCHITECTURE_NAMES,
    LOSS_NAMES,
    LOSSES_WITHOUT_SMOOTHING,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    FieldError,
    ParamsError,
)
from imgclf.params.data import AugmentParams, DataParams, PreprocessParams, ValidateParams
from imgclf.params.loading import (
    Params,
    flatten_params,
    lever_warnings,
    load_params,
    parse_params,
)
from imgclf.params.recipe import LossParams, ModelParams, OptimizerParams, RegParams, TrainParams
from imgclf.params.reporting import EvaluateParams, MlflowParams, PromoteParams
from imgclf.params.schedule import (
    DEFAULT_STEP_SHARES,
    RESIZABLE_ARCHS,
    WARMUP_MAX_SHARE,
    progressive_epochs_used,
    schedule_notes,
    step_epochs_used,
    warmup_epochs_used,
)
from imgclf.params.tuning import TUNABLE_SECTIONS, TUNE_SPACE, TuneDimension, TuneParams

__all__ = [
    "ACTIVATION_NAMES",
    "ARCHITECTURE_NAMES",
    "DEFAULT_STEP_SHARES",
    "LOSSES_WITHOUT_SMOOTHING",
    "LOSS_NAMES",
    "OPTIMIZER_NAMES",
    "SCHEDULE_NAMES",
    "TUNABLE_SECTIONS",
    "TUNE_SPACE",
    "RESIZABLE_ARCHS",
    "WARMUP_MAX_SHARE",
    "AugmentParams",
    "DataParams",
    "EvaluateParams",
    "FieldError",
    "LossParams",
    "MlflowParams",
    "ModelParams",
    "OptimizerParams",
    "Params",
    "ParamsError",
    "PreprocessParams",
    "PromoteParams",
    "RegParams",
    "TrainParams",
    "TuneDimension",
    "TuneParams",
    "ValidateParams",
    "flatten_params",
    "lever_warnings",
    "load_params",
    "parse_params",
    "progressive_epochs_used",
    "schedule_notes",
    "step_epochs_used",
    "warmup_epochs_used",
]
