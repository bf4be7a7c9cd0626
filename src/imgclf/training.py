"""Training core: input pipeline, per-epoch bookkeeping and the fit call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np

from imgclf.augmentation import random_crop_flip


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    crop_flip_pixels: int | None = None,
):
    """Batches of (uint8 images, one-hot float labels), reshuffled every epoch when seeded.

    With crop_flip_pixels, every batch gets a fresh random crop (shift up to that many
    pixels) and flip. tf.data under the TensorFlow backend; a NumPy-fed PyDataset elsewhere
    (JAX), so the training core runs on machines that have no TensorFlow at all.
    """
    crop_flip = _batch_crop_flip(crop_flip_pixels, shuffle_seed)
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed, crop_flip)
    return ArrayBatches(
        images, labels, num_classes, batch_size, shuffle_seed=shuffle_seed, transform=crop_flip
    )


def _batch_crop_flip(pad_pixels: int | None, seed: int | None):
    if pad_pixels is None:
        return None
    rng = np.random.default_rng(None if seed is None else seed + 1)
    return lambda batch: random_crop_flip(batch, rng, pad_pixels)


def _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed, transform):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if transform is not None:
        image_shape = images.shape[1:]

        def augment(batch, batch_labels):
            changed = tf.numpy_function(transform, [batch], tf.uint8, stateful=True)
            changed.set_shape((None, *image_shape))
            return changed, batch_labels

        # One call at a time keeps the seeded draws in a reproducible order; prefetch still
        # overlaps it with the training step.
        dataset = dataset.map(augment, num_parallel_calls=1)
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
        transform=None,
    ) -> None:
        super().__init__()
        self.images, self.labels, self.transform = images, labels, transform
        self.num_classes, self.batch_size = num_classes, batch_size
        self._rng = None if shuffle_seed is None else np.random.default_rng(shuffle_seed)
        self._order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        one_hot = np.eye(self.num_classes, dtype=np.float32)[self.labels[chosen]]
        batch = self.images[chosen]
        return (batch if self.transform is None else self.transform(batch)), one_hot

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._rng.shuffle(self._order)


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 images, on the 0-255 scale."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
    return pixels.mean(axis=0).tolist(), np.maximum(pixels.std(axis=0), 1e-3).tolist()


@dataclass(frozen=True)
class AcceleratorSetup:
    """How training will run: what compute device, precision policy and XLA setting."""

    gpu: bool
    precision_policy: str
    jit_compile: bool | str  # "auto" leaves the choice to Keras


def gpu_visible() -> bool:
    """Whether the active Keras backend sees a GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return False


def configure_accelerator(mixed_precision: str, jit_compile: str) -> AcceleratorSetup:
    """Set the global precision policy (before any model is built) from auto/on/off choices."""
    gpu = gpu_visible()
    # float16 math only pays off on GPUs; on CPUs it is slower and less accurate.
    use_mixed = mixed_precision == "on" or (mixed_precision == "auto" and gpu)
    policy = "mixed_float16" if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    jit: bool | str = {"on": True, "off": False}.get(jit_compile, True if gpu else "auto")
    return AcceleratorSetup(gpu=gpu, precision_policy=policy, jit_compile=jit)


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
    jit_compile: bool | str = "auto",
) -> TrainingResult:
    """Compile and fit; train_seconds is the wall time of `fit` alone."""
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit_compile)
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
