"""Training core: input pipeline, per-epoch bookkeeping and the fit call."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from imgclf.augmentation import OnlineAugmentation, mirror_half
from imgclf.data.arrays import write_csv
from imgclf.diagnostics import TrainingDiagnostics, data_loss_metrics

if TYPE_CHECKING:
    from imgclf.params import AugmentParams, ModelParams, RegParams, TrainParams


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    *,
    shuffle_seed: int | None,
    online: OnlineAugmentation | None = None,
):
    """Batches of (uint8 images, one-hot float labels), reshuffled every epoch when seeded.

    With `online`, every batch is augmented afresh (crop+flip, colour jitter, cutout, MixUp or
    CutMix, whichever are on; mixing makes the labels soft). tf.data under the TensorFlow
    backend; a NumPy-fed PyDataset elsewhere (JAX), so the training core runs on machines that
    have no TensorFlow at all.
    """
    steps_per_epoch = -(-len(images) // batch_size)
    transform = online.batch_transform(shuffle_seed, steps_per_epoch) if online else None
    if online is not None and online.alternating_flip:
        images = mirror_half(images, shuffle_seed)
    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed, transform)
    return ArrayBatches(
        images, labels, num_classes, batch_size, shuffle_seed=shuffle_seed, transform=transform
    )


def _tf_dataset(images, labels, num_classes, batch_size, shuffle_seed, transform):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
    )
    if transform is not None:
        image_shape = images.shape[1:]

        def augment(batch, batch_labels):
            changed, mixed = tf.numpy_function(
                transform, [batch, batch_labels], (tf.uint8, tf.float32), stateful=True
            )
            changed.set_shape((None, *image_shape))
            mixed.set_shape((None, num_classes))
            return changed, mixed

        # One call at a time keeps the seeded draws in a reproducible order; prefetch still
        # overlaps it with the training step.
        dataset = dataset.map(augment, num_parallel_calls=1)
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
        return (batch, one_hot) if self.transform is None else self.transform(batch, one_hot)

    def on_epoch_end(self) -> None:
        if self._rng is not None:
            self._rng.shuffle(self._order)


# Images sampled for the whitening statistics: 5,000 CIFAR images give ~4.5M patches, a
# covariance estimate far tighter than the 12 x 12 matrix needs, in well under a second.
WHITENING_SAMPLE = 5000


def learn_whitening(
    model_params: ModelParams, train_images: np.ndarray, seed: int
) -> np.ndarray | None:
    """fast_cnn's frozen first-layer kernel from a seeded sample of the normalised training
    images; None when the model has no whitening layer."""
    from imgclf.model.whitening import sample_images, whitening_kernel

    if model_params.arch != "fast_cnn" or not model_params.whitening:
        return None
    sample = sample_images(train_images, WHITENING_SAMPLE, seed).astype(np.float32)
    mean, std = channel_statistics(sample)
    normalised = (sample - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return whitening_kernel(normalised, model_params.whitening_patch)


def build_classifier(
    model_params: ModelParams,
    reg_params: RegParams,
    image_shape: tuple[int, int, int],
    num_classes: int,
    train_images: np.ndarray,
    whitening: np.ndarray | None = None,
) -> keras.Model:
    """The configured architecture, normalising with the training images' channel statistics.

    `whitening` is fast_cnn's first-layer kernel from `learn_whitening` (None: no such layer).
    """
    from imgclf.model.architectures import ModelSpec, build_model
    from imgclf.model.regularizers import build_kernel_regularizer

    mean, std = channel_statistics(train_images)
    spec = ModelSpec(
        image_shape=image_shape,
        num_classes=num_classes,
        channel_mean=mean,
        channel_std=std,
        width=model_params.width,
        dropout=reg_params.dropout,
        kernel_regularizer=build_kernel_regularizer(reg_params.l1, reg_params.l2),
        spatial_dropout=reg_params.spatial_dropout,
        max_norm=reg_params.max_norm,
        widths=model_params.widths,
        activation=model_params.activation,
        whitening_kernel=whitening,
        dirac_init=model_params.dirac_init,
        batchnorm_momentum=model_params.batchnorm_momentum,
        batchnorm_epsilon=model_params.batchnorm_epsilon,
        batchnorm_scale=model_params.batchnorm_scale,
        logit_scale=model_params.logit_scale,
    )
    return build_model(model_params.arch, spec)


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


def cpu_has_bfloat16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX); Linux only."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(
        "amx_bf16" in line.split(":", 1)[1].split()
        for line in text.splitlines()
        if line.startswith("flags") and ":" in line
    )


def precision_policy(mixed_precision: str, gpu: bool, cpu_bfloat16: bool) -> str:
    """The Keras dtype policy for train.mixed_precision on this machine."""
    if mixed_precision == "on" or (mixed_precision == "auto" and gpu):
        return "mixed_float16"
    # float16 math only pays off on GPUs; on CPUs it is slower and less accurate. bfloat16 on
    # a CPU with AMX units runs the convolutions about twice as fast (docs/performance.md).
    if mixed_precision == "bfloat16" or (mixed_precision == "auto" and cpu_bfloat16):
        return "mixed_bfloat16"
    return "float32"


def configure_accelerator(mixed_precision: str, jit_compile: str) -> AcceleratorSetup:
    """Set the global precision policy (before any model is built) from auto/on/off choices."""
    gpu = gpu_visible()
    policy = precision_policy(mixed_precision, gpu, not gpu and cpu_has_bfloat16_units())
    keras.mixed_precision.set_global_policy(policy)
    jit: bool | str = {"on": True, "off": False}.get(jit_compile, True if gpu else "auto")
    return AcceleratorSetup(gpu=gpu, precision_policy=policy, jit_compile=jit)


def make_reproducible(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; with `deterministic`, use deterministic kernels too.

    Seeds alone leave TensorFlow free to pick kernels whose float sums run in any order; op
    determinism pins them, so one seed, one data set and one set of params give one result.
    """
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


class EpochRecorder(keras.callbacks.Callback):
    """Adds the learning rate and wall time of each epoch to the logs, and keeps them."""

    def __init__(self, rows: list[dict[str, float]] | None = None) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = list(rows or [])
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        logs["epoch_seconds"] = time.perf_counter() - self._started
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})


class HistoryWriter(keras.callbacks.Callback):
    """Rewrites history.csv after every epoch, so `dvc plots show` follows a run as it goes.

    It writes the recorder's rows, which after a resume start with the restored epochs.
    """

    def __init__(self, path: Path, recorder: EpochRecorder) -> None:
        super().__init__()
        self.path, self.recorder = path, recorder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        write_csv(self.path, self.recorder.rows)


# --- Resumable training state ------------------------------------------------------------------

WEIGHTS_FILE = "state.weights.h5"  # Keras insists on the .weights.h5 suffix


def backup_key(flat_params: Mapping[str, Any], data_hash: str) -> str:
    """Name one training's resumable state: any other param or data gets another name."""
    payload = json.dumps({"params": flat_params, "data": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class ResumePoint:
    """What an interrupted training left: epochs done, their history rows and its MLflow run."""

    epoch: int
    history: list[dict[str, float]]
    run_id: str


class TrainingBackup:
    """The last completed epoch (weights with optimizer state, history) and the run's id.

    Each epoch is written into a staging folder that is then renamed into place, so a SIGKILL
    at any moment leaves that epoch whole or the one before it, never a torn checkpoint.
    With no folder, every method does nothing (training without a backup).
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def remember_run(self, run_id: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / ".run.json.partial"
        staging.write_text(json.dumps({"run_id": run_id}), encoding="utf-8")
        staging.replace(self.folder / "run.json")

    def save(self, model: keras.Model, epoch: int, history: list[dict[str, float]]) -> None:
        if self.folder is None:
            return
        staging = self.folder / f".epoch-{epoch:05d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        model.save_weights(staging / WEIGHTS_FILE)
        state = {"epoch": epoch, "history": history}
        (staging / "state.json").write_text(json.dumps(state), encoding="utf-8")
        final = self.folder / f"epoch-{epoch:05d}"
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for older in self.folder.glob("epoch-*"):
            if older != final:
                shutil.rmtree(older, ignore_errors=True)

    def restore(self, model: keras.Model) -> ResumePoint | None:
        """Load the last completed epoch into the compiled model; None: start from scratch.

        A state that cannot be loaded is reported and removed, and the model keeps its
        fresh weights.
        """
        if self.folder is None:
            return None
        epochs = sorted(self.folder.glob("epoch-*"))
        run_file = self.folder / "run.json"
        if not epochs or not run_file.is_file():
            return None
        if not model.optimizer.built:  # its slots must exist to receive the saved state
            model.optimizer.build(model.trainable_variables)
        variables = [*model.variables, *model.optimizer.variables]
        fresh = [keras.ops.convert_to_numpy(variable) for variable in variables]
        try:
            state = json.loads((epochs[-1] / "state.json").read_text(encoding="utf-8"))
            run_id = json.loads(run_file.read_text(encoding="utf-8"))["run_id"]
            model.load_weights(epochs[-1] / WEIGHTS_FILE)
            point = ResumePoint(int(state["epoch"]), list(state["history"]), str(run_id))
        except (OSError, ValueError, KeyError, TypeError) as error:
            for variable, value in zip(variables, fresh, strict=True):
                variable.assign(value)
            print(
                f"train: cannot resume from {epochs[-1]} ({error}); starting afresh",
                file=sys.stderr,
            )
            self.clear()
            return None
        return point

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def claim_backup(folder: Path) -> Iterator[TrainingBackup]:
    """The backup in `folder`, held by this process; a disabled one while another holds it.

    Two queued experiments with the same params and data would otherwise write (and delete)
    one state at once; the second simply trains without a backup.
    """
    import filelock

    folder.parent.mkdir(parents=True, exist_ok=True)
    # filelock, not fcntl: the same lock on Windows; timeout 0 asks once and never waits.
    lock = filelock.FileLock(folder.with_name(folder.name + ".lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        print(
            f"train: another run with these params and data holds {folder}; "
            "training without a resumable backup",
            file=sys.stderr,
        )
        yield TrainingBackup(None)
        return
    try:
        yield TrainingBackup(folder)
    finally:
        lock.release()


class EpochBackup(keras.callbacks.Callback):
    """Saves the training state after every epoch whose loss is finite."""

    def __init__(self, backup: TrainingBackup, recorder: EpochRecorder) -> None:
        super().__init__()
        self.backup, self.recorder = backup, recorder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # A diverged epoch is nothing to resume from.
        if math.isfinite(float((logs or {}).get("loss", math.nan))):
            self.backup.save(self.model, epoch + 1, self.recorder.rows)


# --- Fitting -----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class TrainingResult:
    """What fit produced besides the weights."""

    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def best_val_accuracy(self) -> float:
        return max((row.get("val_accuracy", float("nan")) for row in self.history), default=0.0)

    def summary(self, model: keras.Model, num_train_images: int, run_id: str) -> dict[str, Any]:
        """The train.json metrics."""
        return {
            "train_seconds": round(self.train_seconds, 3),
            "epochs": len(self.history),
            "best_val_accuracy": self.best_val_accuracy,
            "final_val_accuracy": self.history[-1].get("val_accuracy") if self.history else None,
            "num_train_images": int(num_train_images),
            "num_parameters": int(model.count_params()),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "mlflow_run_id": run_id,
        }

    def diverged(self, epochs: int) -> bool:
        """Whether training stopped early or any epoch's loss is not finite."""
        return len(self.history) < epochs or any(
            not math.isfinite(row.get("loss", math.nan)) for row in self.history
        )


def make_datasets(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    train_params: TrainParams,
    augment_params: AugmentParams,
):
    """The training batches (seeded shuffle, online augmentation if on) and the validation ones."""
    batch_size, online = train_params.batch_size, online_augmentation(augment_params)
    return (
        make_dataset(
            *train, num_classes, batch_size, shuffle_seed=train_params.seed, online=online
        ),
        make_dataset(*val, num_classes, batch_size, shuffle_seed=None),
    )


def online_augmentation(settings: AugmentParams) -> OnlineAugmentation:
    """The train stage's per-batch augmentation from the augment params."""
    return OnlineAugmentation(
        crop_pixels=settings.online_crop_pixels if settings.online_crop_flip else None,
        flip=settings.online_flip,
        color_jitter=settings.online_color_jitter,
        cutout_fraction=settings.online_cutout_fraction,
        mixup_alpha=settings.mixup_alpha,
        cutmix_alpha=settings.cutmix_alpha,
    )


def save_serving_model(model: keras.Model, path: Path, tta: str = "none") -> keras.Model:
    """Save an uncompiled copy: it serves raw pixels and needs no imgclf code to load.

    With `tta` (evaluate.tta), the copy averages the test-time views itself, so evaluate,
    promote and every server score exactly what was saved.
    """
    from imgclf.model.tta import with_test_time_augmentation

    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    serving = with_test_time_augmentation(plain, tta)
    path.parent.mkdir(parents=True, exist_ok=True)
    serving.save(path)
    return serving


def accuracy_of(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Share of `images` whose most probable class is their label."""
    predicted = model.predict(images, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == labels))


def compile_model(
    model: keras.Model,
    *,
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    jit_compile: bool | str = "auto",
) -> None:
    metrics = ["accuracy", *data_loss_metrics(loss)]  # data_loss: the loss without penalties
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)


def fit_model(
    model: keras.Model,
    train,
    val,
    *,
    epochs: int,
    callbacks: list[keras.callbacks.Callback],
    loss: keras.losses.Loss | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    verbose: int | str = "auto",
    jit_compile: bool | str = "auto",
    resume: ResumePoint | None = None,
    backup: TrainingBackup | None = None,
    probe: tuple[np.ndarray, np.ndarray] | None = None,
    setup_seconds: float = 0.0,
    history_path: Path | None = None,
) -> TrainingResult:
    """Fit (compiling first when loss and optimizer are given) from `resume` or from scratch.

    train_seconds is the wall time of `fit`, plus that of the epochs a resume restored, plus
    `setup_seconds` (work that learns from the data before fit, such as the whitening layer).
    probe, (images, one-hot labels), is the fixed batch for probe_grad_norm (diagnostics.py).
    history_path, when given, holds every epoch's row (CSV) from the end of the first epoch on.
    """
    if loss is not None and optimizer is not None:
        compile_model(model, loss=loss, optimizer=optimizer, jit_compile=jit_compile)
    recorder = EpochRecorder(resume.history if resume else None)
    saving = [EpochBackup(backup, recorder)] if backup is not None else []
    if history_path is not None:
        saving.append(HistoryWriter(history_path, recorder))
    started = time.perf_counter()
    # The recorder runs first so later callbacks (backup, MLflow logging) see learning_rate too;
    # the backup precedes logging, so a slow tracking store never delays the checkpoint.
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        initial_epoch=resume.epoch if resume else 0,
        callbacks=[
            TrainingDiagnostics(probe),  # first: the recorder keeps what it adds to the logs
            recorder,
            keras.callbacks.TerminateOnNaN(),
            *saving,
            *callbacks,
        ],
        verbose=verbose,
        shuffle=False,  # the dataset already reshuffles every epoch
    )
    earlier = sum(row.get("epoch_seconds", 0.0) for row in (resume.history if resume else []))
    return TrainingResult(
        history=recorder.rows,
        train_seconds=time.perf_counter() - started + earlier + setup_seconds,
    )
