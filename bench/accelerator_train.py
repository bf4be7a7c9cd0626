"""Train the shipped recipe on a class-folder data set under any Keras backend; report speed.

For accelerator machines with JAX but no TensorFlow (KERAS_BACKEND=jax): training assembled as
the train stage's (imgclf.training.assemble), the test split scored with the model it would
save (test-time views included). Each seed compiles on untimed warm-up steps (reported apart),
restarts as built and trains timed: a JSON line per epoch, a summary per seed, and the seeds'
mean and spread. `--score val` scores the pipeline's val split instead (held out of training).

    KERAS_BACKEND=jax python bench/accelerator_train.py DATA.tar.gz --seeds 0 1 2 \
        --widths 128 384 384 --batch-size 1024 --lr 1.5 --epochs 15 \
        -S optimizer.warmup_epochs=3.45 -S model.activation=gelu --target 0.94
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import keras  # the backend comes from KERAS_BACKEND, as for the stages
import numpy as np


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
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--warmup-steps", type=int, default=10, help="untimed compile steps")
    parser.add_argument("--target", type=float, default=0.94, help="accuracy to time")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--score", choices=("test", "val"), default="test", help="split scored")
    return parser.parse_args(argv)


def _params(args: argparse.Namespace):
    """params.yaml with the options given and -S KEY=VALUE as dvc exp run's (null sets null)."""
    import yaml

    from imgclf.params import parse_params

    raw = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    options = {"train.epochs": args.epochs, "train.batch_size": args.batch_size}
    options.update({"optimizer.lr": args.lr, "model.widths": args.widths})
    options["train.mixed_precision"] = args.precision  # None: the option was not given
    given = [
        f"{dotted}={json.dumps(value)}" for dotted, value in options.items() if value is not None
    ]
    for dotted, _, value in (assignment.partition("=") for assignment in given + args.set):
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = yaml.safe_load(value)
    return parse_params(raw)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    params = _params(args)
    started = time.perf_counter()
    data = _load(args.data, args.test_fraction, params)
    if args.score == "val":  # val held out of train as preprocess does, in place of test
        from imgclf.data.splits import val_split

        train_x, train_y, _, _, class_names = data
        kept, held = val_split(train_y, params.preprocess.val_fraction, params.preprocess.seed)
        data = train_x[kept], train_y[kept], train_x[held], train_y[held], class_names
    load_seconds = round(time.perf_counter() - started, 1)
    summaries = []
    for seed in args.seeds or [params.train.seed]:
        seeded = params.model_copy(update={"train": params.train.model_copy(update={"seed": seed})})
        summaries.append({**train_once(seeded, data, args), "load_seconds": load_seconds})
        print(json.dumps(summaries[-1]), flush=True)
    if len(summaries) > 1:
        scored = summaries[0]["scored"]
        keys = {f"{scored}_accuracy": f"final_{scored}_accuracy"}
        keys.update({key: key for key in ("train_seconds", "compile_seconds")})
        aggregate = {"aggregate": True, "seeds": [summary["seed"] for summary in summaries]}
        for name, key in keys.items():
            values = [summary[key] for summary in summaries]
            spread = statistics.mean(values), statistics.stdev(values)
            aggregate[name] = dict(zip(("mean", "std"), (round(v, 4) for v in spread), strict=True))
        print(json.dumps(aggregate), flush=True)


def train_once(params, data: tuple, args: argparse.Namespace) -> dict:
    """One seed: untimed compile, reset, timed training, the saved model's scored accuracy."""
    from imgclf.model.tta import with_test_time_augmentation
    from imgclf.training.assemble import assemble
    from imgclf.training.fit import accuracy_of

    train_x, train_y, scored_x, scored_y, class_names = data  # scored: test, or val
    # No validation data (the clock scores every epoch); notes to stderr, JSON lines to stdout.
    say = partial(print, file=sys.stderr)
    trainer = assemble(params, (train_x, train_y), None, class_names, say=say)
    model, plan, split = trainer.model, trainer.plan, args.score
    compile_seconds = trainer.warm_up(args.warmup_steps)
    clock = EpochClock(len(train_x), (scored_x, scored_y), args.target, split)
    callbacks = [*trainer.callbacks, clock]  # shuffle=False: the batches reshuffle themselves
    model.fit(trainer.train_data, epochs=plan.epochs, callbacks=callbacks, verbose=0, shuffle=False)
    plain = keras.Model(model.inputs, model.outputs)
    serving = with_test_time_augmentation(plain, params.evaluate.tta)
    device = keras.backend.backend()
    if device == "jax":
        import jax

        device = jax.devices()[0].device_kind
    return {
        **{"summary": True, "seed": trainer.seed, "backend": keras.backend.backend()},
        **{"accelerator": "gpu" if trainer.accelerator.gpu else "cpu", "device_name": device},
        **{"arch": params.model.arch, "widths": list(params.model.widths)},
        **{"batch_size": plan.global_batch, "epochs": plan.epochs},
        **{"small_epochs": trainer.online.small_epochs, "tta": params.evaluate.tta},
        **{"train_images": len(train_x), "scored": split, f"{split}_images": len(scored_x)},
        "compile_seconds": round(compile_seconds, 1),
        "whitening_seconds": round(trainer.setup_seconds, 2),
        "train_seconds": round(clock.seconds + trainer.setup_seconds, 1),
        f"final_{split}_accuracy": round(accuracy_of(serving, scored_x, scored_y, 1024), 4),
        f"{split}_accuracy_without_tta": clock.accuracies[-1],
        "target": args.target,
        "seconds_to_target": None if clock.reached is None else round(clock.reached, 1),
        "parameters": int(model.count_params()),
        "precision": trainer.accelerator.precision_policy,
    }


class EpochClock(keras.callbacks.Callback):
    """Each epoch's training wall time (the scoring after it excluded), the scored accuracy."""

    def __init__(self, train_images: int, scored: tuple, target: float, split: str) -> None:
        super().__init__()
        self.train_images, self.scored = train_images, scored
        self.target, self.split = target, split
        self.seconds, self.reached, self.accuracies, self._started = 0.0, None, [], 0.0

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
        speed = round(self.train_images / seconds)
        row = {"epoch": epoch + 1, "seconds": round(seconds, 2), "images_per_second": speed}
        print(json.dumps({**row, f"{self.split}_accuracy_without_tta": accuracy}), flush=True)


def _load(data: Path, test_fraction: float, params, cache_dir: Path = Path("/tmp")) -> tuple:
    """(train images, labels, test images, labels, class names): the class folders decoded
    once per machine and data set, the test split carved with preprocess.seed."""
    from imgclf.data.folder import read_image_folder, stage_folder_source
    from imgclf.data.splits import stratified_split

    names = ("train_x", "train_y", "test_x", "test_y")
    key = hashlib.md5(f"{data.resolve()}:{test_fraction}".encode()).hexdigest()[:12]
    cache = cache_dir / f"imgclf-bench-arrays-{key}.npz"
    if cache.exists():
        with np.load(cache) as saved:
            return (*(saved[name] for name in names), list(saved["classes"]))
    staged = Path("/tmp/imgclf-bench-data")
    root = data if (data / "train").is_dir() else stage_folder_source(data, staged)
    splits, class_names = read_image_folder(root, progress=False)
    images, labels = splits["train"]
    kept, held = stratified_split(labels, test_fraction, params.preprocess.seed)
    arrays = (images[kept], labels[kept], images[held], labels[held])
    np.savez(cache, **dict(zip(names, arrays, strict=True)), classes=np.array(class_names))
    return (*arrays, class_names)


if __name__ == "__main__":
    main()
