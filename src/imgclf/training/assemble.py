"""The one way to assemble training: params and data in, a Trainer whose fit runs the recipe.

The train stage (through training/prepare.py) and every benchmark call `assemble`; tuning trials
run the train stage. Nothing else builds the plan, the model, its loss and optimizer, the input
pipeline and the callbacks every fit needs from params.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imgclf.params import Params

if TYPE_CHECKING:
    import keras

    from imgclf.training.checkpoint import ResumePoint, TrainingBackup
    from imgclf.training.distribution import Distribution
    from imgclf.training.fit import TrainingResult
    from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation
    from imgclf.training.plan import TrainingPlan
    from imgclf.training.runtime import AcceleratorSetup

Split = tuple[np.ndarray, np.ndarray]  # (uint8 images [N, H, W, 3], int labels [N])


@dataclass
class Trainer:
    """The compiled model with its data, plan and the callbacks every fit of the recipe needs."""

    plan: TrainingPlan
    accelerator: AcceleratorSetup
    model: keras.Model
    splits: dict[str, Split]  # "train" and "validation" (when given), as read
    class_names: list[str]
    data_hash: str
    train_data: Any  # seeded, augmented batches (tf.data, or a PyDataset off TensorFlow)
    val_data: Any  # None when assembled without a validation split
    online: OnlineAugmentation
    callbacks: list  # lookahead averaging, the input pipeline's epoch count
    probe: Split  # the fixed batch for probe_grad_norm (training/diagnostics.py)
    setup_seconds: float  # learning the whitening layer from the data counts as training
    seed: int = 0  # train.seed: it shuffles and augments the training batches
    current_epoch: CurrentEpoch | None = None  # the epoch the batches are made for

    def batches(self, limit: int | None = None) -> Any:
        """Training batches of the first `limit` training images (all when None), made as
        train_data is: the seeded shuffle and augmentation, and the epoch that the callbacks'
        CurrentEpochCallback (or the caller) sets. A few untimed steps on them compile what
        fit will run (a benchmark's warm-up) without touching train_data."""
        from imgclf.training.inputs import make_dataset

        images, labels = self.splits["train"]
        return make_dataset(
            images[:limit],
            labels[:limit],
            len(self.class_names),
            self.plan.global_batch,
            shuffle_seed=self.seed,
            online=self.online,
            current_epoch=self.current_epoch,
        )

    def warm_up(self, steps: int) -> float:
        """Compile what fit will run, untimed, then put the model back as built; the seconds.

        It fits `steps` batches of the first training images, the last as short as the
        epochs' last (a batch shape first seen in fit would compile there: about 11 s on an
        H200 under JAX), at every image size the run trains at; then the weights and the
        optimizer's state are as assembled again. For benchmarks that time fit alone.
        """
        batch, count = self.plan.global_batch, len(self.splits["train"][1])
        batches = self.batches(min(count, steps * batch + count % batch))
        return compile_untimed(self.model, batches, self.current_epoch, self.online.small_epochs)

    def image_side(self, epoch: int) -> int:
        """The side the 0-based epoch trains at (smaller in progressive resizing's epochs)."""
        images = self.splits["train"][0]
        return self.online.image_side(epoch, min(images.shape[1:3]))

    def fit(
        self,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        *,
        resume: ResumePoint | None = None,
        backup: TrainingBackup | None = None,
        live_folder: Path | None = None,
        verbose: int | str | None = None,
    ) -> TrainingResult:
        """Fit the planned epochs (from `resume` when given) with these callbacks added.

        verbose None: a live bar on a terminal, one line per epoch in logs (DVC, CI).
        """
        from imgclf.training.fit import fit_model

        return fit_model(
            self.model,
            self.train_data,
            self.val_data,
            epochs=self.plan.epochs,
            callbacks=[*self.callbacks, *callbacks],
            verbose=("auto" if sys.stdout.isatty() else 2) if verbose is None else verbose,
            resume=resume,
            backup=backup,
            probe=self.probe,
            setup_seconds=self.setup_seconds,
            live_folder=live_folder,
            # DVCLive's files and the MLflow run say which epochs trained on downscaled images.
            epoch_columns=lambda epoch: {"image_side": self.image_side(epoch)},
        )


def assemble(
    params: Params,
    train: Split,
    validation: Split | None,
    class_names: list[str],
    *,
    dist: Distribution | None = None,
    data_hash: str = "",
    say: Callable[[str], None] = print,
) -> Trainer:
    """Plan, seed, build and compile the model and make the datasets, as params say.

    validation None: no val data (a benchmark scores by its own callback); dist: tf.distribute's
    set-up (None: one device); data_hash: the data, in the plan's resumable-state key."""
    from imgclf.model.lookahead import callbacks_for
    from imgclf.training import classifier, distribution, inputs, runtime
    from imgclf.training.diagnostics import probe_batch
    from imgclf.training.online_augmentation import CurrentEpoch
    from imgclf.training.plan import plan_training

    dist = dist or distribution.Distribution("none", None)
    settings, num_classes = params.train, len(class_names)
    plan = plan_training(params, train[1], num_classes, dist.num_replicas, data_hash)
    # First collective: workers with other params or data would otherwise hang or diverge.
    distribution.check_same_inputs(dist, plan.backup_key)
    runtime.make_reproducible(settings.seed, settings.deterministic)
    accelerator = runtime.configure_accelerator(settings.mixed_precision, settings.jit_compile)
    if plan.class_weights is not None:
        say(_class_weights_note(class_names, plan.class_weights))
    small_epochs = inputs.progressive_epochs(params, plan.epochs, train[0].shape[1:], say)
    model, setup_seconds = _build(params, plan, accelerator, train[0], num_classes, dist)
    if small_epochs:
        classifier.accept_any_image_size(model)
    online = inputs.online_augmentation(params.augment, small_epochs)
    current_epoch = CurrentEpoch()
    trainer = Trainer(
        plan=plan,
        accelerator=accelerator,
        model=model,
        splits={"train": train, **({} if validation is None else {"validation": validation})},
        class_names=list(class_names),
        data_hash=data_hash,
        train_data=None,
        val_data=None,
        online=online,
        callbacks=[
            inputs.CurrentEpochCallback(current_epoch),
            *callbacks_for(plan.optimizer, plan.steps_per_epoch, plan.epochs),
        ],
        probe=probe_batch(*train, num_classes, plan.batch_size, settings.seed),
        setup_seconds=setup_seconds,
        seed=settings.seed,
        current_epoch=current_epoch,
    )
    trainer.train_data = trainer.batches()
    if validation is not None:
        trainer.val_data = inputs.make_dataset(
            *validation, num_classes, plan.global_batch, shuffle_seed=None
        )
    return trainer


def _class_weights_note(class_names: Sequence[str], weights: Sequence[float]) -> str:
    named = ", ".join(
        f"{name}={weight:.4g}" for name, weight in zip(class_names, weights, strict=True)
    )
    return f"train: class weights (inverse training frequency, mean 1 per image): {named}"


def compile_untimed(model, batches, current_epoch: CurrentEpoch | None, small_epochs: int = 0):
    """Seconds to compile `model`'s train step on one pass over `batches`, at each image size
    (progressive resizing's smaller side, set through `current_epoch`, for `small_epochs`),
    after which the weights and the optimizer's state are put back as they were.

    The optimizer's state goes back to its values as built, not to zeros: under float16 the
    loss-scaling wrapper's scale is one of them, and a scale of 0 zeroes every gradient.
    """
    import keras

    weights = model.get_weights()
    model.optimizer.build(model.trainable_variables)
    state = [keras.ops.convert_to_numpy(variable.value) for variable in model.optimizer.variables]
    started = time.perf_counter()
    for epoch in sorted({0, small_epochs}):
        if current_epoch is not None:
            current_epoch.epoch = epoch
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    if current_epoch is not None:
        current_epoch.epoch = 0
    model.set_weights(weights)
    if len(model.optimizer.variables) != len(state):
        raise RuntimeError("the optimizer made new variables while compiling: cannot reset it")
    for variable, value in zip(model.optimizer.variables, state, strict=True):
        variable.assign(value)
    return seconds


def _build(params: Params, plan, accelerator, train_images, num_classes: int, dist):
    """The compiled model, and the seconds spent learning its whitening layer from the data."""
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer
    from imgclf.training import classifier
    from imgclf.training.fit import compile_model

    started = time.perf_counter()
    whitening = classifier.learn_whitening(params.model, train_images, params.train.seed)
    setup_seconds = time.perf_counter() - started  # it learns from the data: training time
    weights = list(plan.class_weights) if plan.class_weights is not None else None
    with dist.scope():
        model = classifier.build_classifier(
            params.model, params.reg, train_images.shape[1:], num_classes, train_images, whitening
        )
        compile_model(
            model,
            loss=build_loss(params.loss, weights),
            optimizer=build_optimizer(plan.optimizer, plan.steps_per_epoch, plan.epochs),
            jit_compile=accelerator.jit_compile,
            steps_per_execution=params.train.steps_per_execution,
        )
    return model, setup_seconds
