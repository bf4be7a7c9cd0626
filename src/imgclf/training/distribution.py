"""Training on several GPUs or machines with tf.distribute: roles, strategies, scaling, failures.

The scaling rule (docs/guide/distributed.md): `train.batch_size` is per replica, so the global batch
is batch_size x replicas, and the peak learning rate is optimizer.lr scaled by
`train.lr_scaling` (linear: x replicas; sqrt: x sqrt(replicas); none). One replica changes
nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from imgclf.errors import ImgclfError

# A worker waits this long for the others to join before giving up; IMGCLF_WORKER_WAIT_SECONDS
# overrides it (people start workers by hand, one machine after another).
WORKER_WAIT_SECONDS = 300.0
LR_SCALING = {
    "linear": lambda replicas: float(replicas),
    "sqrt": lambda replicas: math.sqrt(replicas),
    "none": lambda replicas: 1.0,
}
_CLUSTER_JOBS = ("chief", "worker")


def global_batch_size(batch_size: int, replicas: int) -> int:
    """What one step consumes over all replicas: train.batch_size is per replica."""
    return batch_size * replicas


def scaled_learning_rate(learning_rate: float, lr_scaling: str, replicas: int) -> float:
    """The peak learning rate for `replicas` replicas under train.lr_scaling."""
    return learning_rate * LR_SCALING[lr_scaling](replicas)


class DistributionError(ImgclfError, RuntimeError):
    """The cluster is misconfigured, or a worker was lost."""


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in the TF_CONFIG cluster."""

    task_type: str
    task_index: int
    cluster: Mapping[str, tuple[str, ...]]  # job -> host:port of each task

    @property
    def num_workers(self) -> int:
        return sum(len(self.cluster.get(job, ())) for job in _CLUSTER_JOBS)

    @property
    def is_chief(self) -> bool:
        """TF's rule: the `chief` task, or worker 0 when the cluster has no chief."""
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def name(self) -> str:
        return f"{self.task_type}:{self.task_index}"

    def address(self, task_type: str, task_index: int) -> str:
        tasks = self.cluster.get(task_type, ())
        return tasks[task_index] if task_index < len(tasks) else "?"


def parse_tf_config(raw: str | None) -> ClusterRole:
    """The role TF_CONFIG gives this process; DistributionError naming what is wrong."""
    example = (
        '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not raw:
        raise DistributionError(
            "train.distribution is 'multi_worker' but TF_CONFIG is not set: set it on every "
            f"machine, e.g. TF_CONFIG='{example}' (index 1 on the second machine); see "
            "docs/guide/distributed.md"
        )
    try:
        config = json.loads(raw)
        cluster = {job: tuple(str(a) for a in tasks) for job, tasks in config["cluster"].items()}
        task_type, task_index = str(config["task"]["type"]), int(config["task"]["index"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise DistributionError(
            f"TF_CONFIG is not valid ({type(error).__name__}: {error}); it must be JSON like "
            f"{example}"
        ) from None
    extra = sorted(set(cluster) - set(_CLUSTER_JOBS))
    if extra:
        raise DistributionError(
            f"TF_CONFIG names jobs {extra}: MultiWorkerMirroredStrategy takes only 'chief' and "
            "'worker' tasks"
        )
    if len(cluster.get("chief", ())) > 1:
        raise DistributionError("TF_CONFIG lists more than one chief: keep one (or none)")
    if task_type not in cluster or not 0 <= task_index < len(cluster[task_type]):
        raise DistributionError(
            f"TF_CONFIG task {task_type}:{task_index} is not in its cluster {cluster}: set "
            "task.type to one of its jobs and task.index below that job's task count"
        )
    return ClusterRole(task_type, task_index, cluster)


def wait_seconds(environ: Mapping[str, str]) -> float:
    """How long to wait for the other workers: IMGCLF_WORKER_WAIT_SECONDS or the default."""
    raw = environ.get("IMGCLF_WORKER_WAIT_SECONDS")
    try:
        seconds = WORKER_WAIT_SECONDS if raw is None else float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise DistributionError(
            f"IMGCLF_WORKER_WAIT_SECONDS must be a number of seconds above 0, not {raw!r}"
        )
    return seconds


def cluster_role(distribution: str, environ: Mapping[str, str]) -> ClusterRole | None:
    """This process's role under multi_worker (checked before any compute); None otherwise."""
    if distribution != "multi_worker":
        return None
    return parse_tf_config(environ.get("TF_CONFIG"))


@dataclass(frozen=True)
class Distribution:
    """The strategy in force (None: Keras's default, one device) and the cluster's shape."""

    kind: str  # none | mirrored | multi_worker
    strategy: Any
    num_replicas: int = 1
    role: ClusterRole | None = None

    @property
    def num_workers(self) -> int:
        return self.role.num_workers if self.role else 1

    @property
    def is_chief(self) -> bool:
        return self.role is None or self.role.is_chief

    def scope(self) -> contextlib.AbstractContextManager:
        """Where models, optimizers and metrics must be created."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def global_batch_size(self, batch_size: int) -> int:
        return global_batch_size(batch_size, self.num_replicas)

    def learning_rate(self, learning_rate: float, lr_scaling: str) -> float:
        return scaled_learning_rate(learning_rate, lr_scaling, self.num_replicas)

    def tags(self, batch_size: int, learning_rate: float) -> dict[str, str]:
        """The MLflow tags that record how training was spread."""
        return {
            "distribution.strategy": self.kind,
            "distribution.num_workers": str(self.num_workers),
            "distribution.num_replicas": str(self.num_replicas),
            "distribution.task": self.role.name if self.role else "local",
            "distribution.global_batch_size": str(self.global_batch_size(batch_size)),
            "distribution.learning_rate": f"{learning_rate:.6g}",
        }


def start(
    distribution: str, role: ClusterRole | None, wait_seconds: float = WORKER_WAIT_SECONDS
) -> Distribution:
    """Create the strategy `distribution` asks for (auto: mirrored when several GPUs are seen).

    Only the TensorFlow backend distributes: under any other, auto means none (params
    validation already refused mirrored and multi_worker there).
    """
    import keras

    if keras.backend.backend() != "tensorflow" or distribution == "none":
        return Distribution("none", None)
    import tensorflow as tf

    if distribution == "multi_worker":
        assert role is not None, "multi_worker needs the cluster role from TF_CONFIG"
        strategy = _start_multi_worker(tf, role, wait_seconds)
        return Distribution("multi_worker", strategy, strategy.num_replicas_in_sync, role)
    if distribution == "auto" and len(tf.config.list_physical_devices("GPU")) < 2:
        return Distribution("none", None)
    strategy = tf.distribute.MirroredStrategy()
    return Distribution("mirrored", strategy, strategy.num_replicas_in_sync)


def _start_multi_worker(tf: Any, role: ClusterRole, wait_seconds: float) -> Any:
    """Join the cluster, waiting at most wait_seconds for every worker to start."""
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    # MultiWorkerMirroredStrategy configures TF's coordination service itself, but with a
    # one-hour wait for missing workers that SIGTERM cannot interrupt. The same settings with a
    # bounded, barrier-enforced wait turn a worker that never starts into an error.
    spec = multi_worker_util.normalize_cluster_spec(
        tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    )
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(spec),
        cluster_register_timeout_in_ms=int(wait_seconds * 1000),
    )
    context.context().coordination_service.cluster_register_with_barrier = True
    try:
        return _keras_multi_worker_strategy(tf)()
    except tf.errors.OpError as error:
        raise lost_worker_error(error, role, starting=True) from None


def _keras_multi_worker_strategy(tf: Any) -> type:
    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """MultiWorkerMirroredStrategy that Keras 3.15's fit can use (keras-team/keras#20585).

        Keras asks the strategy to reduce a whole (images, labels) batch only to read its
        shapes, and averages each scalar metric "along axis 0", which a scalar lacks; both
        fail on this strategy. The first gets this worker's batch, the second a plain
        all-reduce mean over the replicas.
        """

        def reduce(self, reduce_op, value, axis):
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda v: self.experimental_local_results(v)[0], value)
            if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return KerasMultiWorkerMirroredStrategy


def check_same_inputs(dist: Distribution, fingerprint: str) -> None:
    """Fail on every worker unless all train on the same params and data.

    fingerprint is a hex digest of both; one collective gathers every worker's.
    """
    if dist.kind != "multi_worker":
        return
    import tensorflow as tf

    code = int(fingerprint[:12], 16)  # 48 bits: exact in int64, plenty to tell versions apart
    with reporting_lost_workers(dist):
        codes = dist.strategy.gather(
            dist.strategy.run(lambda: tf.constant([code], tf.int64)), axis=0
        ).numpy()
    if len(set(codes.tolist())) > 1:
        raise DistributionError(
            "the workers do not train on the same params and data: check out the same commit "
            "(same params.yaml) and run `dvc pull` on every machine, then start them again"
        )


_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def lost_worker_error(error: BaseException, role: ClusterRole, starting: bool = False):
    """A DistributionError naming the workers TF reports as missing, and what to do."""
    message = str(error)
    lost = sorted(
        {(job, int(index)) for job, index in _TASK.findall(message)}
        - {(role.task_type, role.task_index)}
    )
    names = ", ".join(f"{job}:{index} ({role.address(job, index)})" for job, index in lost)
    names = names or "another worker"
    if starting:
        what = f"{names} did not join the cluster in time"
        advice = (
            "start `python -m imgclf.stages.train ...` with its TF_CONFIG on every machine "
            "(raise IMGCLF_WORKER_WAIT_SECONDS to wait longer), and check that the addresses "
            "in TF_CONFIG are reachable"
        )
    else:
        what = f"lost {names} during training"
        advice = (
            "restart every worker with the same TF_CONFIG: multi-worker training starts over "
            "from epoch 1 (the chief's MLflow run is marked FAILED)"
        )
    first = (message.strip().splitlines() or [type(error).__name__])[0][:300]
    return DistributionError(f"{role.name}: {what} ({first}); {advice}")


@contextlib.contextmanager
def reporting_lost_workers(dist: Distribution) -> Iterator[None]:
    """Turn TF's collective failures during multi-worker training into a DistributionError."""
    if dist.kind != "multi_worker":
        yield
        return
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
    try:
        yield
    except lost as error:
        raise lost_worker_error(error, dist.role) from None
