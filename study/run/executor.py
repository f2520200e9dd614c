"""Execution, kept apart from the loop and from Optuna: submit a trial, poll for its events,
cancel it. `study.run.ray_executor.RayExecutor` runs trials on Ray (trial slots, or tasks);
`InProcessExecutor` here steps them in this process, one event per poll, round-robin, so the
driver loop can be tested deterministically without a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from study.run.events import Died, Event
from study.run.worker import WorkerCode, trial_events
from trainers import Dataset, TrainConfig


class Executor(Protocol):
    """Runs trials. One driver thread calls every method."""

    def capacity(self) -> int:
        """How many trials can run at once (CPU slots for the per-trial resources)."""
        ...

    def submit(self, number: int, config: TrainConfig | None, params: Mapping[str, Any] | None = None) -> None:
        """Start trial `number` training `config`; `params`: the user's model hyperparameters,
        or every value a user's trainer function receives (its `config` is None)."""
        ...

    def poll(self, timeout: float) -> list[Event]:
        """Events that are ready, waiting up to `timeout` seconds for the first one."""
        ...

    def cancel(self, number: int, force: bool = False, at: int | None = None) -> None:
        """Stop trial `number` now (`force`: even if it does not return to Python); its
        remaining events are dropped. `at`: the epoch the pruner stopped it at (a trial waiting
        there for the verdict returns at once)."""
        ...

    def go(self, number: int, epoch: int) -> None:
        """The pruner lets trial `number` go on after `epoch` (a trial paused at a rung trains on)."""
        ...

    def close(self) -> None:
        """Cancel whatever still runs and release resources."""
        ...


class WorkerDied(Exception):
    """Raised by an in-process trial function to simulate a lost worker in unit tests."""


#: ``trial_fn(number, config, data)``: a trial's events (the default trains for real).
TrialFn = Callable[[int, TrainConfig, Dataset], Iterator[Event]]


class InProcessExecutor:
    """Steps every running trial's event generator one event per poll, in submission order.
    A `WorkerDied` raised by `trial_fn` becomes a `Died` event. `code`: the user's model or
    trainer function, which trials load by reference as Ray workers do."""

    def __init__(
        self,
        data: Dataset,
        *,
        slots: int = 2,
        trial_fn: TrialFn | None = None,
        backend: str = "numpy",
        device: str = "cpu",
        code: WorkerCode | None = None,
    ) -> None:
        self.data = data
        self.slots = slots
        self.backend = backend
        self.device = device
        self.code = code
        self.trial_fn = trial_fn
        self.running: dict[int, Iterator[Event]] = {}

    def capacity(self) -> int:
        return self.slots

    def submit(self, number: int, config: TrainConfig | None, params: Mapping[str, Any] | None = None) -> None:
        if self.trial_fn is not None:
            assert config is not None, "a scripted trial function takes a TrainConfig"
            events = self.trial_fn(number, config, self.data)
        else:
            events = trial_events(number, config, self.data, self.backend, self.device, 1, self.code, params)
        self.running[number] = iter(events)

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = []
        for number, gen in list(self.running.items()):
            try:
                events.append(next(gen))
            except StopIteration:
                del self.running[number]
            except WorkerDied as e:
                del self.running[number]
                events.append(Died(number, str(e) or "worker died"))
        return events

    def go(self, number: int, epoch: int) -> None:
        """Nothing: a trial stepped here never runs ahead of the driver."""

    def cancel(self, number: int, force: bool = False, at: int | None = None) -> None:
        gen = self.running.pop(number, None)
        close = getattr(gen, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        for number in list(self.running):
            self.cancel(number)
