"""What runs where a trial runs: train one config and stream plain events back.

`trial_events` wraps `trainers.iter_train` in a generator of small tuples, so the same code
runs inside a Ray streaming task and in-process for unit tests:

- ``("start", {"pid": ..., "host": ...})`` once, when the trial starts running;
- ``("epoch", epoch, metrics)`` after every epoch (``EpochRecord.metrics()``, a flat dict);
- ``("end", summary)`` when training ends (stop reason, best epoch, parameter count, ...);
- ``("error", message)`` if the trainer raised: the trial failed, the worker lives on.

Nothing here touches Optuna or MLflow: workers need no credentials.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

from trainers import Dataset, TrainConfig, iter_train

Event = tuple[Any, ...]


def summarize(result: Any) -> dict[str, Any]:
    """The parts of a `TrainResult` the driver records (the history has been streamed)."""
    return {
        "stop_reason": result.stop_reason,
        "best_epoch": result.best_epoch,
        "stopped_epoch": result.stopped_epoch,
        "n_params": result.n_params,
        "final": dict(result.final),
        "test_loss": result.test_loss,
        "test_acc": result.test_acc,
    }


def trial_events(
    config: TrainConfig, data: Dataset, backend: str = "numpy", device: str = "cpu", threads: int | None = None
) -> Iterator[Event]:
    """Train `config` on `data`, yielding the events above."""
    yield ("start", {"pid": os.getpid(), "host": socket.gethostname()})
    try:
        gen = iter_train(config, data, backend=backend, device=device, threads=threads)
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                yield ("end", summarize(stop.value))
                return
            yield ("epoch", rec.epoch, rec.metrics())
    except Exception as e:  # noqa: BLE001 - any trainer error fails this trial only
        yield ("error", f"{type(e).__name__}: {e}")
