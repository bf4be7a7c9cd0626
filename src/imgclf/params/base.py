"""What every params section shares: the strict base model, its errors, the registry names."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from imgclf.errors import ImgclfError

# Names the registries in imgclf.model accept; tests/unit/params/test_params.py keeps them in step.
ARCHITECTURE_NAMES = ("seed_cnn", "resnet_small", "fast_cnn")
ACTIVATION_NAMES = ("gelu", "relu", "silu", "elu")
LOSS_NAMES = (
    "categorical_crossentropy",
    "focal",
    "class_weighted_crossentropy",
    "poly1",
    "symmetric_crossentropy",
    "squared_hinge",
)
OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "nadam", "lion", "muon")
SCHEDULE_NAMES = ("constant", "cosine", "exponential", "step", "one_cycle", "linear")
# Losses whose targets are margins or the labels' logarithm, where smoothing the labels would
# change what the loss means rather than soften it.
LOSSES_WITHOUT_SMOOTHING = ("symmetric_crossentropy", "squared_hinge")


class ParamsError(ImgclfError, ValueError):
    """params.yaml is missing, unreadable or holds a value outside what is allowed."""


class FieldError(ValueError):
    """A rule across keys broken, naming the dotted key to change (pydantic has no location
    for a model-level rule, and would print the error without one)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Section(BaseModel):
    """A params.yaml section: frozen, unknown keys rejected, defaults validated too."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
