"""The train stage with new levers on: class weights from the training labels, the L2 warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgclf.data.arrays import load_split, save_split
from imgclf.data.synthetic import SYNTHETIC_CLASSES

# The in-process train stage harness: a workspace as DVC lays it out, a real
# SQLite MLflow store, the process-wide changes of a stage run undone afterwards.
from support.train_stage import isolated_stage, make_workspace, only_run, run_train


@pytest.mark.integration
def test_class_weighted_run_logs_weights_from_the_training_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    workspace = make_workspace(
        tmp_path,
        loss={"name": "class_weighted_crossentropy", "label_smoothing": 0.1},
        reg={"l2": 1e-4, "spatial_dropout": 0.1, "max_norm": 3.0},
        optimizer={"name": "nadam", "weight_decay": 1e-4, "clip_norm": 1.0},
        train={"epochs": 1},
    )
    # Imbalance the training split: class 0 keeps every image, the others one in two.
    train_file = workspace / "data/augmented/train.npz"
    images, labels = load_split(train_file)
    keep = (labels == 0) | (np.arange(len(labels)) % 2 == 0)
    save_split(train_file, images[keep], labels[keep])
    counts = np.bincount(labels[keep], minlength=len(SYNTHETIC_CLASSES))
    expected = keep.sum() / (len(counts) * counts)

    for isolated in isolated_stage(monkeypatch):
        assert run_train(workspace, isolated) == 0
    out, err = capsys.readouterr()
    assert "train: class weights (inverse training frequency" in out
    assert "train: warning: reg.l2" in err

    tags = only_run(workspace).data.tags
    logged = json.loads(tags["loss.class_weights"])
    assert list(logged) == list(SYNTHETIC_CLASSES)
    np.testing.assert_allclose(list(logged.values()), expected, atol=1e-4)
    assert logged[SYNTHETIC_CLASSES[0]] < logged[SYNTHETIC_CLASSES[1]]
    assert "optimizer.weight_decay" in tags["warning.l2_with_weight_decay"]
