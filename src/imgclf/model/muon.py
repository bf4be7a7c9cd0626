"""Muon for conv filters, Nesterov SGD for everything else (the CIFAR-10 speed record's split)."""

from __future__ import annotations

import re

import keras
from keras import ops

# The classifier head of every architecture (architectures.py names it so). Muon's authors
# keep the output layer off Muon: its rows are per-class, not a feature map to orthogonalise.
HEAD_LAYERS = ("^logits/",)


@keras.saving.register_keras_serializable(package="imgclf")
class ConvMuon(keras.optimizers.Muon):
    """keras.optimizers.Muon that orthogonalises conv kernels too; SGD instead of its AdamW.

    Keras' Muon orthogonalises only 2-D variables and sends 4-D conv kernels to AdamW. Here a
    conv kernel [kh, kw, in, out] is orthogonalised as the matrix [kh * kw * in, out] (the
    record's [out, in * kh * kw], transposed and with its columns permuted, which Newton-Schulz
    carries through unchanged), at `muon_lr_ratio` x the learning rate. Every other variable
    (biases, BatchNorm, the head) takes exactly keras.optimizers.SGD's step with
    `sgd_momentum` and `nesterov`, BatchNorm shifts at `shift_multiplier` x the rate, so
    `optimizer.lr` keeps the meaning it has for `sgd`.
    """

    def __init__(
        self,
        *args,
        muon_lr_ratio: float = 1.0,
        sgd_momentum: float = 0.9,
        shift_multiplier: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.muon_lr_ratio = muon_lr_ratio
        self.sgd_momentum = sgd_momentum
        self.shift_multiplier = shift_multiplier

    def orthogonalises(self, variable) -> bool:
        """Conv kernels and 2-D kernels but the excluded (the head): the rest takes SGD."""
        rank = len(variable.shape)
        if rank not in (2, 4):
            return False
        return not any(re.search(pattern, variable.path) for pattern in self.exclude_layers)

    def _should_use_adamw(self, variable) -> bool:
        # Keras' Muon asks this to pick the path and the weight decay: here "not Muon" (SGD).
        return not self._orthogonalised[self._get_variable_index(variable)]

    def build(self, var_list) -> None:
        if self.built:
            return
        # Muon.build would add Adam velocities that the SGD path never reads: skip to the base.
        keras.optimizers.Optimizer.build(self, var_list)
        self.momentums = self.add_optimizer_variables(var_list, "momentum")
        self.adam_velocities = [None] * len(var_list)
        # Decided here, on Keras variables: TensorFlow's update step sees bare tf.Variables,
        # which have no path.
        self._orthogonalised = [self.orthogonalises(variable) for variable in var_list]
        self._shift = [variable.path.endswith("/beta") for variable in var_list]

    def update_step(self, gradient, variable, learning_rate) -> None:
        index = self._get_variable_index(variable)
        gradient = ops.cast(gradient, variable.dtype)
        rate = ops.cast(learning_rate, variable.dtype)
        if self._orthogonalised[index]:
            rate = rate * self.muon_lr_ratio
            self._muon_update_step(gradient, variable, rate, self.momentums[index])
            return
        if self._shift[index]:  # a BatchNorm shift: the record's faster bias rate
            rate = rate * self.shift_multiplier
        self._sgd_update_step(gradient, variable, rate, self.momentums[index])

    def _sgd_update_step(self, gradient, variable, rate, momentum) -> None:
        """keras.optimizers.SGD's update: m <- mu m - lr g; w <- w + m (+ Nesterov look-ahead)."""
        mu = ops.cast(self.sgd_momentum, variable.dtype)
        self.assign(momentum, momentum * mu - gradient * rate)
        if self.nesterov:
            self.assign_add(variable, momentum * mu - gradient * rate)
        else:
            self.assign_add(variable, momentum)

    def _muon_update_step(self, gradient, variable, lr, m) -> None:
        """Keras' Muon step (m <- mu m + g, Nesterov g + mu m) on the kernel as a matrix."""
        self.assign_add(m, ops.add(gradient, m * (self.momentum - 1)))
        direction = ops.add(gradient, self.momentum * m) if self.nesterov else m
        matrix = ops.reshape(direction, (-1, variable.shape[-1]))
        update = self.zeropower_via_newtonschulz5(matrix, self.ns_steps)
        update = self.lr_adjust(update)  # Moonlight's RMS matching; off (None) in imgclf
        self.assign_sub(variable, lr * ops.reshape(update, variable.shape))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "muon_lr_ratio": self.muon_lr_ratio,
            "sgd_momentum": self.sgd_momentum,
            "shift_multiplier": self.shift_multiplier,
        }


def build_muon(
    learning_rate,
    *,
    muon_lr_ratio: float,
    muon_momentum: float,
    sgd_momentum: float,
    nesterov: bool,
    weight_decay: float,
    shift_multiplier: float,
    global_clipnorm: float | None,
) -> ConvMuon:
    """ConvMuon as the record runs it: the plain orthogonal step (no RMS matching)."""
    decay = weight_decay or None  # Keras' Muon reads None as "no decay" (its default is 0.004)
    return ConvMuon(
        learning_rate=learning_rate,
        momentum=muon_momentum,
        nesterov=nesterov,
        weight_decay=decay,
        adam_weight_decay=decay,
        global_clipnorm=global_clipnorm,
        exclude_layers=list(HEAD_LAYERS),
        exclude_embeddings=False,
        rms_rate=None,
        muon_lr_ratio=muon_lr_ratio,
        sgd_momentum=sgd_momentum,
        shift_multiplier=shift_multiplier,
    )
