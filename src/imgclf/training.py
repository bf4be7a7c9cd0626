"""Training core: input pipeline, per-epoch bookkeeping and the fit call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    *,
    shuffle_seed: int | None,
):
    """Batches of (uint8 images, one-hot float labels), reshuffled every epoch when seeded.

    tf.data under the TensorFlow backend; a NumPy-fed PyDataset elsewhere (JAX), so the
    training core runs on machines that have no TensorFlow at all.
    """
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed)
    return ArrayBatches(images, labels, num_classes, batch_size, shuffle_seed=shuffle_seed)


def _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


class ArrayBatches(keras.utils.PyDataset):
    """Batches cut from in-memory arrays, in a seeded order drawn anew each epoch."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        *,
        shuffle_seed: int | None,
    ) -> None:
        super().__init__()
        self.images, self.labels = images, labels
        self.num_classes, self.batch_size = num_classes, batch_size
        self._rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
        self._order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        one_hot = np.eye(self.num_classes, dtype=np.float32)[self.labels[chosen]]
        return self.images[chosen], one_hot

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._rng.shuffle(self._order)


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0-255 scale."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
    return pixels.mean(axis=0).tolist(), np.maximum(pixels.std(axis=0), 1e-3).tolist()


class EpochRecorder(keras.callbacks.Callback):
    """Adds the learning rate and wall time of each epoch to the logs, and keeps them."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        logs["epoch_seconds"] = time.perf_counter() - self._started
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})


@dataclass
class TrainingResult:
    """What fit produced besides the weights."""

    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def best_val_accuracy(self) -> float:
        return max((row.get("val_accuracy", float("nan")) for row in self.history), default=0.0)


def fit_model(
    model: keras.Model,
    train,
    val,
    *,
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int | str = "auto",
) -> TrainingResult:
    """Compile and fit; train_seconds is the wall time of `fit` alone."""
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    recorder = EpochRecorder()
    started = time.perf_counter()
    # The recorder runs first so later callbacks (MLflow logging) see learning_rate too.
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        callbacks=[recorder, keras.callbacks.TerminateOnNaN(), *callbacks],
        verbose=verbose,
        shuffle=False,  # the dataset already reshuffles every epoch
    )
    return TrainingResult(history=recorder.rows, train_seconds=time.perf_counter() - started)
