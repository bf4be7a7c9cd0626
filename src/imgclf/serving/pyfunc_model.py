"""The MLflow pyfunc model of a trained classifier: raw pixels in, class names out.

This is an MLflow "models from code" file: `tracking.artifacts.log_model` hands MLflow its path,
MLflow copies it into every logged model and runs it when the model is loaded (`mlflow.pyfunc.
load_model`, `mlflow models serve`). So it imports nothing from imgclf, and running it calls
`mlflow.models.set_model`, which is its whole purpose; nothing in imgclf imports it. Nothing is
unpickled: the Keras model is the `.keras` file train saved, loaded in safe mode, and the class
names come from the model config.
"""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pandas as pd

KERAS_ARTIFACT = "keras_model"
CLASS_NAMES_KEY = "class_names"


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Answers uint8 images [N, H, W, C] with label, confidence and per-class probabilities."""

    def load_context(self, context) -> None:
        path = context.artifacts[KERAS_ARTIFACT]
        self.model = keras.saving.load_model(path, compile=False, safe_mode=True)
        self.class_names = list(context.model_config[CLASS_NAMES_KEY])

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        images = np.asarray(model_input)
        if images.dtype != np.uint8:
            # JSON carries integers; the model's contract is raw 0-255 pixels.
            images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        probabilities = np.asarray(self.model.predict(images, verbose=0), dtype=np.float64)
        best = probabilities.argmax(axis=1)
        return pd.DataFrame(
            {
                "label": [self.class_names[index] for index in best],
                "confidence": probabilities[np.arange(len(best)), best],
                "probabilities": [
                    dict(zip(self.class_names, row.tolist(), strict=True)) for row in probabilities
                ],
            }
        )


mlflow.models.set_model(ImageClassifier())
