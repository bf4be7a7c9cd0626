"""The Keras callback that logs each epoch's metrics to the run without ever delaying fit.

The only module of imgclf.tracking that imports Keras at the top: a callback must subclass it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence

import keras

from imgclf.errors import first_line
from imgclf.tracking.runs import retry

PendingEpoch = tuple[int, dict[str, float], int]  # (step, metrics, timestamp in ms)


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics (loss, accuracy, val_*, learning_rate) to the run.

    Sending happens on a background thread, so a store that hangs or is down delays the
    logging, never the training: unsent epochs wait, and each epoch's end tries them again.
    `flush` retries what is left once fit is done. Each epoch keeps the timestamp of its end,
    so a retry of metrics the store did receive adds no duplicates.
    """

    def __init__(self, run_id: str | None = None, pending: Sequence[PendingEpoch] = ()) -> None:
        super().__init__()
        self.run_id = run_id
        self._pending: list[PendingEpoch] = list(pending)
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None

    @property
    def pending_steps(self) -> list[int]:
        with self._lock:
            return [step for step, _, _ in self._pending]

    def on_train_begin(self, logs: dict | None = None) -> None:
        import mlflow

        # MLflow's active run is per thread: the sender needs the id itself.
        if self.run_id is None:
            self.run_id = mlflow.active_run().info.run_id
        self._send_in_background()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        with self._lock:
            self._pending.append((epoch + 1, metrics, int(time.time() * 1000)))
        self._send_in_background()

    def on_train_end(self, logs: dict | None = None) -> None:
        # One last try before fit returns, so no send is left running behind the caller.
        if self._sender is not None:
            self._sender.join()
        self._try_send()

    def flush(self, retry_seconds: float) -> None:
        """Send every pending epoch, retrying for up to retry_seconds (TrackingError after)."""
        if self._sender is not None:
            self._sender.join()
        retry(self._send, retry_seconds, f"log the metrics of epochs {self.pending_steps}")

    def _send_in_background(self) -> None:
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(target=self._try_send, daemon=True)
            self._sender.start()

    def _try_send(self) -> None:
        try:
            self._send()
        except Exception as error:  # kept for the next epoch or flush
            print(
                f"warning: MLflow store unreachable ({first_line(error)}); epochs "
                f"{self.pending_steps} kept, training goes on and logging is retried",
                file=sys.stderr,
            )

    def _send(self) -> None:
        import mlflow

        while True:
            with self._lock:
                if not self._pending:
                    return
                step, metrics, timestamp = self._pending[0]
            mlflow.log_metrics(metrics, step=step, run_id=self.run_id, timestamp=timestamp)
            with self._lock:
                self._pending.pop(0)


def unlogged_epochs(run_id: str, history: Sequence[Mapping[str, float]]) -> list[PendingEpoch]:
    """History rows (from a resumed training) whose metrics the run does not hold yet."""
    import mlflow

    try:
        logged = {point.step for point in mlflow.MlflowClient().get_metric_history(run_id, "loss")}
    except mlflow.exceptions.MlflowException:
        logged = set()  # resend them all: a repeated point beats a lost one
    now = int(time.time() * 1000)
    return [
        (int(row["epoch"]), {k: float(v) for k, v in row.items() if k != "epoch"}, now)
        for row in history
        if int(row["epoch"]) not in logged
    ]
