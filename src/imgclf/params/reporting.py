"""What follows training: MLflow names, evaluate's extra reports and the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from imgclf.params.base import Section


class MlflowParams(Section):
    experiment_name: str = Field("imgclf", min_length=1, description="MLflow experiment.")
    registered_model: str = Field("imgclf", min_length=1, description="Registry model name.")
    log_model: bool = Field(True, description="Log the model with its signature to the run.")


class EvaluateParams(Section):
    corruption_images: int | None = Field(
        2000,
        ge=1,
        description="Most test images (seeded subset) scored under corruptions; null: all.",
    )
    mistakes_shown: int = Field(
        16, ge=1, le=100, description="Most confident wrong predictions in the gallery."
    )
    seed: int = Field(0, ge=0, description="Seed of the corruption subset and noise.")
    tta: Literal["none", "flip", "flip_translate"] = Field(
        "flip_translate",
        description="Test-time augmentation built into the saved model (train writes it): "
        "none, the mirror image too, or mirror and one-pixel shifts.",
    )


class PromoteParams(Section):
    min_accuracy: float = Field(0.5, ge=0, le=1, description="Accuracy a champion needs.")
    min_gain: float = Field(0.0, ge=0, le=1, description="Accuracy gain over the champion.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired test.")
