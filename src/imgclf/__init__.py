"""imgclf: a reproducible DVC + MLflow pipeline for image classifiers."""

__version__ = "0.1.0"
