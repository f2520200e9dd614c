"""Execution, kept apart from the loop and from Optuna: submit a trial, poll for its events,
cancel it. `RayExecutor` (study.ray_executor) runs trials as Ray streaming tasks;
`InProcessExecutor` here steps them in this process, one epoch at a time, round-robin, so
the driver loop can be tested deterministically without a cluster.

Events are the tuples of `study.worker`, tagged with the trial number:
``(number, "start", info)``, ``(number, "epoch", epoch, metrics)``, ``(number, "end",
summary)``, ``(number, "error", message)`` and, from the executor itself,
``(number, "died", message)`` when the process running the trial is gone. After
``cancel(number)`` no further event of that trial is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from study.worker import Event, trial_events
from trainers import Dataset, TrainConfig


class Executor(Protocol):
    """Runs trials. One driver thread calls every method."""

    def capacity(self) -> int:
        """How many trials can run at once (CPU slots for the per-trial resources)."""
        ...

    def submit(self, number: int, config: TrainConfig) -> None:
        """Start trial `number` training `config`."""
        ...

    def poll(self, timeout: float) -> list[Event]:
        """Events that are ready, waiting up to `timeout` seconds for the first one."""
        ...

    def cancel(self, number: int, force: bool = False) -> None:
        """Stop trial `number` now (`force`: even if it does not return to Python); its
        remaining events are dropped."""
        ...

    def close(self) -> None:
        """Cancel whatever still runs and release resources."""
        ...


class WorkerDied(Exception):
    """Raised by an in-process trial function to simulate a lost worker in unit tests."""


TrialFn = Callable[[int, TrainConfig, Dataset], Iterator[Event]]


class InProcessExecutor:
    """Steps every running trial's event generator one event per poll, in submission order.

    `trial_fn(number, config, data)` defaults to `study.worker.trial_events`; unit tests
    pass scripted generators.
    A `WorkerDied` raised by it becomes a ``died`` event."""

    def __init__(self, data: Dataset, *, slots: int = 2, trial_fn: TrialFn | None = None, backend: str = "numpy") -> None:
        self.data = data
        self.slots = slots
        self.backend = backend
        self.trial_fn = trial_fn or (lambda number, config, data: trial_events(config, data, backend=self.backend, threads=1))
        self.running: dict[int, Iterator[Event]] = {}

    def capacity(self) -> int:
        return self.slots

    def submit(self, number: int, config: TrainConfig) -> None:
        self.running[number] = iter(self.trial_fn(number, config, self.data))

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        for number, gen in list(self.running.items()):
            try:
                events.append((number, *next(gen)))
            except StopIteration:
                del self.running[number]
            except WorkerDied as e:
                del self.running[number]
                events.append((number, "died", str(e) or "worker died"))
        return events

    def cancel(self, number: int, force: bool = False) -> None:
        gen = self.running.pop(number, None)
        close: Any = getattr(gen, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        for number in list(self.running):
            self.cancel(number)
