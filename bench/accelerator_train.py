"""Train the default model on a class-folder data set under any Keras backend; report speed.

Made for accelerator machines that have JAX but no TensorFlow (KERAS_BACKEND=jax): it uses
only imgclf's training core (model, loss, optimizer, input feeding) and prints one JSON line
per epoch (images/s, val accuracy) and a summary with the time to reach --target accuracy.

    KERAS_BACKEND=jax python bench/accelerator_train.py DATA.tar.gz --epochs 20 --target 0.94
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="directory or archive of train/<class>/*")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    parser.add_argument("--lr", type=float, default=None, help="override optimizer.lr")
    parser.add_argument("--width", type=int, default=None, help="override model.width")
    parser.add_argument("--precision", default="auto", help="auto | float32 | mixed_bfloat16")
    parser.add_argument("--target", type=float, default=0.94, help="accuracy to time")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--no-crop-flip", action="store_true", help="turn online crop+flip off")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    import keras

    from imgclf.model.architectures import ModelSpec, build_model
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer
    from imgclf.model.regularizers import build_kernel_regularizer
    from imgclf.params import load_params
    from imgclf.training import channel_statistics, make_dataset, online_augmentation

    params = load_params(args.params)
    epochs = args.epochs or params.train.epochs
    batch_size = args.batch_size or params.train.batch_size
    optimizer_params = params.optimizer.model_copy(update={"lr": args.lr or params.optimizer.lr})
    devices = _devices()
    precision = args.precision
    if precision == "auto":
        precision = "mixed_bfloat16" if devices["accelerator"] != "cpu" else "float32"
    keras.mixed_precision.set_global_policy(precision)

    started = time.perf_counter()
    train_x, train_y, test_x, test_y, class_names = _load(args.data, args.test_fraction, params)
    load_seconds = time.perf_counter() - started

    keras.utils.set_random_seed(params.train.seed)
    mean, std = channel_statistics(train_x)
    spec = ModelSpec(
        image_shape=train_x.shape[1:],
        num_classes=len(class_names),
        channel_mean=mean,
        channel_std=std,
        width=args.width or params.model.width,
        dropout=params.reg.dropout,
        kernel_regularizer=build_kernel_regularizer(params.reg.l1, params.reg.l2),
    )
    model = build_model(params.model.arch, spec)
    steps = math.ceil(len(train_x) / batch_size)
    model.compile(
        optimizer=build_optimizer(optimizer_params, steps, epochs),
        loss=build_loss(params.loss),
        metrics=["accuracy"],
    )
    online = online_augmentation(params.augment)
    if args.no_crop_flip:
        online = dataclasses.replace(online, crop_pixels=None)
    crop_flip = online.crop_pixels
    train = make_dataset(
        train_x, train_y, len(class_names), batch_size, shuffle_seed=0, online=online
    )
    test = make_dataset(test_x, test_y, len(class_names), 1024, shuffle_seed=None)
    clock, reached = 0.0, None
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        model.fit(train, epochs=epoch, initial_epoch=epoch - 1, verbose=0)
        seconds = time.perf_counter() - tick
        clock += seconds
        accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
        if reached is None and accuracy >= args.target:
            reached = clock
        print(
            json.dumps(
                {
                    "epoch": epoch,
                    "seconds": round(seconds, 2),
                    "images_per_second": round(len(train_x) / seconds),
                    "test_accuracy": round(accuracy, 4),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "summary": True,
                "backend": keras.backend.backend(),
                **devices,
                "precision": precision,
                "arch": params.model.arch,
                "width": spec.width,
                "online_crop_flip": crop_flip is not None,
                "batch_size": batch_size,
                "epochs": epochs,
                "train_images": len(train_x),
                "test_images": len(test_x),
                "load_seconds": round(load_seconds, 1),
                "train_seconds": round(clock, 1),
                "final_test_accuracy": round(accuracy, 4),
                "target": args.target,
                "seconds_to_target": None if reached is None else round(reached, 1),
                "parameters": int(model.count_params()),
                "first_epoch_note": "epoch 1 includes compilation",
            }
        ),
        flush=True,
    )


def _load(data: Path, test_fraction: float, params) -> tuple:
    """Decode the class folders once per machine; later runs reuse the arrays in /tmp."""
    import numpy as np

    from imgclf.data.folder import read_image_folder, stage_folder_source
    from imgclf.data.splits import stratified_split

    cache = Path("/tmp/imgclf-bench-arrays.npz")
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


def _devices() -> dict[str, str]:
    import keras

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
