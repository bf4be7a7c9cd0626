"""Train the shipped recipe on a class-folder data set under any Keras backend; report speed.

Made for accelerator machines that have JAX but no TensorFlow (KERAS_BACKEND=jax): it builds
the model, whitening layer, optimizer, lookahead and input feeding exactly as the train stage
does (imgclf.training), and scores the test split with the model the train stage would save
(its test-time views included). Each seed first compiles on a few untimed warm-up steps (the
compile time is reported apart), then restarts from its initial weights and optimizer state
and trains timed; it prints one JSON line per epoch, one summary per seed and, with several
seeds, their mean and spread. `--score val` trains on the pipeline's train split and scores
its val split instead, for choosing between recipes without looking at the test split.

    KERAS_BACKEND=jax python bench/accelerator_train.py DATA.tar.gz --seeds 0 1 2 \
        --widths 128 384 384 --batch-size 1024 --lr 1.5 --epochs 15 \
        -S optimizer.warmup_epochs=3.45 -S model.activation=gelu -S augment.progressive_side=null \
        --target 0.94
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import keras  # the backend comes from KERAS_BACKEND, as for the stages


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="directory or archive of train/<class>/*")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override train.seed")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    parser.add_argument("--lr", type=float, default=None, help="override optimizer.lr")
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="model.widths")
    parser.add_argument("--precision", default=None, help="override train.mixed_precision")
    parser.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other params key, as dvc exp run -S (repeatable)",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=10,
        help="untimed compile steps (then one as short as the epochs' last)",
    )
    parser.add_argument("--target", type=float, default=0.94, help="accuracy to time")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument(
        "--score",
        choices=("test", "val"),
        default="test",
        help="split scored: the carved test split, or (to compare recipes) the pipeline's "
        "val split, carved from the rest as preprocess does and left out of training",
    )
    return parser.parse_args(argv)


def _params(args: argparse.Namespace):
    """params.yaml with the command line's overrides, validated as the stages do."""
    import yaml

    from imgclf.params import parse_params

    raw = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    options = {  # None: the option was not given
        ("train", "epochs"): args.epochs,
        ("train", "batch_size"): args.batch_size,
        ("train", "mixed_precision"): args.precision,
        ("optimizer", "lr"): args.lr,
        ("model", "widths"): args.widths,
    }
    overrides = {place: value for place, value in options.items() if value is not None}
    for assignment in args.set:  # -S key=null sets null (augment.progressive_side=null: off)
        dotted, _, value = assignment.partition("=")
        section, _, key = dotted.partition(".")
        overrides[(section, key)] = yaml.safe_load(value)
    for (section, key), value in overrides.items():
        raw.setdefault(section, {})[key] = value
    return parse_params(raw)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    from imgclf.training.runtime import configure_accelerator

    params = _params(args)
    setup = configure_accelerator(params.train.mixed_precision, params.train.jit_compile)
    started = time.perf_counter()
    data = _load(args.data, args.test_fraction, params)
    if args.score == "val":
        data = _carve_val(data, params)
    load_seconds = time.perf_counter() - started
    summaries = []
    for seed in args.seeds or [params.train.seed]:
        seeded = params.model_copy(update={"train": params.train.model_copy(update={"seed": seed})})
        summary = {**train_once(seeded, data, args), "load_seconds": round(load_seconds, 1)}
        summary["precision"] = setup.precision_policy
        print(json.dumps(summary), flush=True)
        summaries.append(summary)
    if len(summaries) > 1:
        print(json.dumps(_aggregate(summaries)), flush=True)


def _aggregate(summaries: list[dict]) -> dict:
    def spread(key: str) -> dict:
        values = [summary[key] for summary in summaries]
        return {
            "mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4),
        }

    scored = summaries[0]["scored"]
    return {
        "aggregate": True,
        "seeds": [summary["seed"] for summary in summaries],
        f"{scored}_accuracy": spread(f"final_{scored}_accuracy"),
        "train_seconds": spread("train_seconds"),
        "compile_seconds": spread("compile_seconds"),
    }


def train_once(params, data: tuple, args: argparse.Namespace) -> dict:
    """One seed: untimed compile, reset, timed training, the saved model's scored accuracy."""
    from imgclf.model.lookahead import callbacks_for
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer
    from imgclf.model.tta import with_test_time_augmentation
    from imgclf.training.classifier import (
        accept_any_image_size,
        build_classifier,
        learn_whitening,
    )
    from imgclf.training.fit import accuracy_of, compile_model
    from imgclf.training.inputs import (
        CurrentEpochCallback,
        make_dataset,
        online_augmentation,
        progressive_epochs,
    )
    from imgclf.training.online_augmentation import CurrentEpoch
    from imgclf.training.runtime import make_reproducible

    train_x, train_y, scored_x, scored_y, class_names = data  # scored: test, or val
    settings, classes = params.train, len(class_names)
    make_reproducible(settings.seed, False)
    tick = time.perf_counter()
    whitening = learn_whitening(params.model, train_x, settings.seed)
    whitening_seconds = time.perf_counter() - tick
    model = build_classifier(
        params.model, params.reg, train_x.shape[1:], classes, train_x, whitening
    )
    steps = math.ceil(len(train_x) / settings.batch_size)
    compile_model(
        model,
        loss=build_loss(params.loss),
        optimizer=build_optimizer(params.optimizer, steps, settings.epochs),
        jit_compile=settings.jit_compile,
    )

    # stdout carries JSON lines only: the note on images too small to shrink goes to stderr.
    small_epochs = progressive_epochs(
        params, settings.epochs, train_x.shape[1:], lambda note: print(note, file=sys.stderr)
    )
    if small_epochs:
        accept_any_image_size(model)
    current_epoch = CurrentEpoch()

    def batches(images: int | None = None):
        online = online_augmentation(params.augment, small_epochs)
        return make_dataset(
            train_x[:images],
            train_y[:images],
            classes,
            settings.batch_size,
            shuffle_seed=settings.seed,
            online=online,
            current_epoch=current_epoch,
        )

    # The warm-up's last batch is as short as the epochs' last one: a batch shape first seen
    # in the timed epochs would compile there (about 11 s on the H200 under JAX).
    warmup_images = min(
        len(train_x), args.warmup_steps * settings.batch_size + len(train_x) % settings.batch_size
    )
    compile_seconds = _compile_untimed(model, batches(warmup_images), current_epoch, small_epochs)
    clock = EpochClock(len(train_x), scored_x, scored_y, args.target, args.score)
    model.fit(
        batches(),
        epochs=settings.epochs,
        verbose=0,
        callbacks=[
            CurrentEpochCallback(current_epoch),
            *callbacks_for(params.optimizer, steps, settings.epochs),
            clock,
        ],
    )
    plain = keras.Model(model.inputs, model.outputs)
    serving = with_test_time_augmentation(plain, params.evaluate.tta)
    accuracy = accuracy_of(serving, scored_x, scored_y, 1024)
    train_seconds = clock.seconds + whitening_seconds
    return {
        "summary": True,
        "seed": settings.seed,
        "backend": keras.backend.backend(),
        **_devices(),
        "arch": params.model.arch,
        "widths": list(params.model.widths),
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "small_epochs": small_epochs,
        "tta": params.evaluate.tta,
        "train_images": len(train_x),
        "scored": args.score,
        f"{args.score}_images": len(scored_x),
        "compile_seconds": round(compile_seconds, 1),
        "whitening_seconds": round(whitening_seconds, 2),
        "train_seconds": round(train_seconds, 1),
        f"final_{args.score}_accuracy": round(accuracy, 4),
        f"{args.score}_accuracy_without_tta": clock.accuracies[-1],
        "target": args.target,
        "seconds_to_target": None if clock.reached is None else round(clock.reached, 1),
        "parameters": int(model.count_params()),
    }


def _compile_untimed(model, batches, current_epoch, small_epochs: int) -> float:
    """Compile on one pass over `batches` (at each image size the run trains at: progressive
    resizing's smaller side first), then put the weights and optimizer state back as they were.

    The optimizer's state goes back to its values as built, not to zeros: under float16 the
    loss-scaling wrapper's scale is one of them, and a scale of 0 zeroes every gradient.
    """
    weights = model.get_weights()
    model.optimizer.build(model.trainable_variables)
    state = [keras.ops.convert_to_numpy(variable.value) for variable in model.optimizer.variables]
    started = time.perf_counter()
    for epoch in sorted({0, small_epochs}):
        current_epoch.epoch = epoch
        model.fit(batches, epochs=1, verbose=0)
    current_epoch.epoch = 0
    seconds = time.perf_counter() - started
    model.set_weights(weights)
    if len(model.optimizer.variables) != len(state):
        raise RuntimeError("the optimizer made new variables while compiling: cannot reset it")
    for variable, value in zip(model.optimizer.variables, state, strict=True):
        variable.assign(value)
    return seconds


class EpochClock(keras.callbacks.Callback):
    """Each epoch's training wall time (the scoring after it excluded), the scored accuracy."""

    def __init__(self, train_images: int, images, labels, target: float, split: str) -> None:
        super().__init__()
        self.train_images, self.scored, self.target = train_images, (images, labels), target
        self.split = split
        self.seconds, self.reached, self.accuracies = 0.0, None, []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        from imgclf.training.fit import accuracy_of

        # JAX dispatches steps ahead of the device: wait for the epoch's last update to finish
        # (reading a weight waits for the step that wrote it) before stopping the clock.
        keras.ops.convert_to_numpy(self.model.trainable_variables[-1].value)
        seconds = time.perf_counter() - self._started
        self.seconds += seconds
        accuracy = round(accuracy_of(self.model, *self.scored, 1024), 4)
        self.accuracies.append(accuracy)
        if self.reached is None and accuracy >= self.target:
            self.reached = self.seconds
        row = {
            "epoch": epoch + 1,
            "seconds": round(seconds, 2),
            "images_per_second": round(self.train_images / seconds),
            f"{self.split}_accuracy_without_tta": accuracy,
        }
        print(json.dumps(row), flush=True)


def _load(data: Path, test_fraction: float, params, cache_dir: Path = Path("/tmp")) -> tuple:
    """Decode the class folders once per machine; later runs reuse the arrays in /tmp."""
    import numpy as np

    from imgclf.data.folder import read_image_folder, stage_folder_source
    from imgclf.data.splits import stratified_split

    key = hashlib.md5(f"{data.resolve()}:{test_fraction}".encode()).hexdigest()[:12]
    cache = cache_dir / f"imgclf-bench-arrays-{key}.npz"  # one per data set and split
    if cache.exists():
        with np.load(cache) as saved:
            return (
                saved["train_x"],
                saved["train_y"],
                saved["test_x"],
                saved["test_y"],
                list(saved["classes"]),
            )
    root = (
        data
        if (data / "train").is_dir()
        else stage_folder_source(data, Path("/tmp/imgclf-bench-data"))
    )
    splits, class_names = read_image_folder(root, progress=False)
    images, labels = splits["train"]
    kept, held = stratified_split(labels, test_fraction, params.preprocess.seed)
    arrays = (images[kept], labels[kept], images[held], labels[held])
    np.savez(
        cache,
        train_x=arrays[0],
        train_y=arrays[1],
        test_x=arrays[2],
        test_y=arrays[3],
        classes=np.array(class_names),
    )
    return (*arrays, class_names)


def _carve_val(data: tuple, params) -> tuple:
    """(train, val) in place of (train, test): val held out of train as preprocess does."""
    from imgclf.data.splits import val_split

    train_x, train_y, _, _, class_names = data
    kept, held = val_split(train_y, params.preprocess.val_fraction, params.preprocess.seed)
    return train_x[kept], train_y[kept], train_x[held], train_y[held], class_names


def _devices() -> dict[str, str]:
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return {"accelerator": device.platform, "device_name": device.device_kind}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return {
            "accelerator": "gpu" if gpus else "cpu",
            "device_name": gpus[0].name if gpus else "cpu",
        }
    return {"accelerator": "unknown", "device_name": keras.backend.backend()}


if __name__ == "__main__":
    main()
