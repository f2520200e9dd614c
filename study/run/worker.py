"""What runs where a trial runs: train one configuration and stream `study.run.events` back.

`trial_events` wraps `trainers.iter_train` in a generator of events, so the same code runs
inside a Ray streaming task and in-process for unit tests. Nothing here touches Optuna or
MLflow: workers need no credentials.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from study.run.events import Ended, Epoch, Event, Failed, Started
from trainers import Dataset, TrainConfig, TrainResult, iter_train


def ended(number: int, result: TrainResult) -> Ended:
    """The parts of a `TrainResult` the driver records (the history has been streamed)."""
    return Ended(
        number, result.stop_reason, result.best_epoch, result.stopped_epoch, result.n_params,
        dict(result.final), result.test_loss, result.test_acc,
    )  # fmt: skip


def trial_events(
    number: int, config: TrainConfig, data: Dataset, backend: str = "numpy", device: str = "cpu", threads: int | None = None
) -> Iterator[Event]:
    """Train `config` on `data` as trial `number`, yielding its events."""
    yield Started(number, {"pid": os.getpid(), "host": socket.gethostname()})
    try:
        gen = iter_train(config, data, backend=backend, device=device, threads=threads)
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                yield ended(number, stop.value)
                return
            yield Epoch(number, rec.epoch, rec.metrics())
    except Exception as e:  # noqa: BLE001 - any trainer error fails this trial only
        yield Failed(number, f"{type(e).__name__}: {e}")
