"""Per-epoch training diagnostics: the loss split into its terms, weight and gradient norms.

What each per-epoch metric (DVCLive's files, the MLflow run) means:
- data_loss, val_data_loss: the compiled loss alone (label smoothing and focal weighting
  included), averaged over the epoch's images exactly like Keras averages `loss`.
- reg_loss: `loss - data_loss`, the epoch mean of the kernel penalties (reg.l1, reg.l2) over
  the same training steps; exact up to float32 rounding. Decoupled weight decay
  (optimizer.weight_decay) is no loss and does not show here.
- weight_norm: global L2 norm of all trainable weights at the end of the epoch.
- probe_grad_norm: global L2 norm of the gradient of data + penalty loss with respect to all
  trainable weights, at the end of the epoch, on one fixed batch of training images (the same
  images every epoch, without augmentation), in training mode (dropout on, batch statistics);
  the state that pass would change (normalisation statistics, dropout seeds) is thrown away, so
  the probe leaves training exactly as it was. One batch: a noisy but comparable reading.
"""

from __future__ import annotations

import keras
import numpy as np

# Reductions under which Keras's `loss` is the per-image mean (no sample weights are used).
_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def data_loss_metrics(loss: keras.losses.Loss) -> list[keras.metrics.Metric]:
    """A metric averaging the per-image compiled loss (`data_loss` in the logs), if meaningful.

    Loss.call gives one value per image, so the mean over the epoch weights each batch by its
    size, as the `loss` tracker does: `loss - data_loss` is then exactly the penalties' mean.
    A loss that is not a per-image mean (or not a Keras Loss) gets no such metric.
    """
    if not isinstance(loss, keras.losses.Loss) or loss.reduction not in _MEAN_REDUCTIONS:
        return []
    return [DataLoss(loss)]


@keras.saving.register_keras_serializable(package="imgclf")
class DataLoss(keras.metrics.Mean):
    """The epoch mean of one loss's per-image values; it saves and clones with its loss."""

    def __init__(self, loss: keras.losses.Loss | dict, name: str = "data_loss", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.loss = keras.losses.deserialize(loss) if isinstance(loss, dict) else loss

    def update_state(self, y_true, y_pred, sample_weight=None):
        # What Loss.__call__ does before `call`: both sides in the loss's dtype.
        as_loss_dtype = keras.ops.convert_to_tensor
        values = self.loss.call(
            as_loss_dtype(y_true, self.loss.dtype), as_loss_dtype(y_pred, self.loss.dtype)
        )
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "loss": keras.losses.serialize(self.loss)}


def probe_batch(
    images: np.ndarray, labels: np.ndarray, num_classes: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, fixed choice of `size` training images with one-hot labels."""
    chosen = np.sort(np.random.default_rng(seed).permutation(len(images))[:size])
    return images[chosen], np.eye(num_classes, dtype=np.float32)[labels[chosen]]


def global_norm(arrays) -> float:
    """sqrt of the sum of squares over all arrays, in float64."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in arrays)))


class GradientProbe:
    """Data loss, penalty loss and the gradient of their sum on one fixed batch.

    Runs the model statelessly: whatever the pass would update (normalisation statistics,
    dropout seeds) is thrown away, so probing never changes training. Under JAX the function
    is compiled once and reused every epoch. With mixed precision the loss is scaled as the
    optimizer scales it (and the gradients unscaled), so small float16 gradients survive.
    """

    def __init__(self, model: keras.Model, loss: keras.losses.Loss, images, one_hot) -> None:
        self.model, self.loss = model, loss
        self.images, self.one_hot = images, one_hot
        self._jax_function = None

    def _scaled_total(self, trainable, non_trainable, images, one_hot, scale):
        predicted, _, losses = self.model.stateless_call(
            trainable, non_trainable, images, training=True, return_losses=True
        )
        data = self.loss(one_hot, predicted)
        penalty = keras.ops.sum(keras.ops.stack(losses)) if losses else keras.ops.zeros(())
        return (data + penalty) * scale, (data, penalty)

    def __call__(self) -> tuple[float, float, list[np.ndarray]]:
        """(data loss, penalty loss, gradients w.r.t. the trainable weights) now."""
        backend = keras.backend.backend()
        trainable = [variable.value for variable in self.model.trainable_variables]
        non_trainable = [variable.value for variable in self.model.non_trainable_variables]
        # A built LossScaleOptimizer (mixed precision) holds the scale training uses now.
        optimizer = getattr(self.model, "optimizer", None)
        scale_variable = getattr(optimizer, "dynamic_scale", None)
        scale = 1.0 if scale_variable is None else float(scale_variable.numpy())
        inputs = (non_trainable, self.images, self.one_hot, scale)
        if backend == "tensorflow":
            import tensorflow as tf

            trainable = [tf.convert_to_tensor(value) for value in trainable]
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                total, (data, penalty) = self._scaled_total(trainable, *inputs)
            gradients = tape.gradient(total, trainable)
        elif backend == "jax":
            import jax

            if self._jax_function is None:
                self._jax_function = jax.jit(jax.value_and_grad(self._scaled_total, has_aux=True))
            (_, (data, penalty)), gradients = self._jax_function(trainable, *inputs)
        else:
            raise NotImplementedError(f"the gradient probe needs tensorflow or jax, not {backend}")
        to_numpy = keras.ops.convert_to_numpy
        # A weight the loss does not reach has no gradient: it adds nothing to the norm.
        arrays = [np.zeros(1) if g is None else to_numpy(g) / scale for g in gradients]
        return float(to_numpy(data)), float(to_numpy(penalty)), arrays


class TrainingDiagnostics(keras.callbacks.Callback):
    """Adds reg_loss, weight_norm and (given a probe batch) probe_grad_norm to the epoch logs.

    It must run before the callbacks that record or send the logs.
    """

    def __init__(self, probe: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__()
        self.probe = probe
        self._gradient_probe: GradientProbe | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if "loss" in logs and "data_loss" in logs:
            logs["reg_loss"] = float(logs["loss"]) - float(logs["data_loss"])
        weights = self.model.trainable_variables
        logs["weight_norm"] = global_norm(w.numpy() for w in weights)
        if self.probe is not None:
            if self._gradient_probe is None:
                self._gradient_probe = GradientProbe(self.model, self.model.loss, *self.probe)
            _, _, gradients = self._gradient_probe()
            logs["probe_grad_norm"] = global_norm(gradients)
