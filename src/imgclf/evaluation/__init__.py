"""Scoring a trained model on the test split, as pure values, and drawing what it found.

- `metrics`: classification metrics, confusion and calibration bins from labels and probabilities.
- `corruptions`: the corrupted copies of the test images and the accuracy on each.
- `scoring`: everything the evaluate stage reports, from a predict function.
- `figures`: the evaluate stage's figures (the only module here that imports matplotlib).
- `model_card`: the model card (markdown) from what evaluate and promote already hold.
"""
