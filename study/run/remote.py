"""What runs on Ray's workers for a trial: the `TrialSlot` actor that runs a study's trials
one after another (CPU trials), the streaming tasks `run_trial` (the built-in MLP, a user's
model or trainer function) and `run_fn` (a scripted trial function) that run one each (trials
that ask for GPUs: the slots have not been measured on a GPU machine yet), the grouping of
a trial's events into Ray objects (`coalesced`), and the `StopBoard` a task asks whether it is
to stop, before each epoch, and for the pruner's verdict at a rung (`until_stopped`). A
worker imports this module, `study.run.worker` and the trainers, never the driver's side
(the spec, Optuna, the stores): each of a cluster's worker processes starts faster (about
0.4 s of CPU less each, measured with ``python -X importtime``).

A trial's events go out as they come, except epochs that finish within `COALESCE_SECONDS` of
the trial's last message: those wait for the next event and go with it. A trial of slow
epochs so sends each epoch the moment it ends (the pruner sees it at once), and one of very
fast epochs a few messages instead of one per epoch (each Ray object costs the worker and the
driver CPU: benchmarks/orchestration_overhead.py); an epoch at a pruner's rung goes out at
once, and the trial waits for the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import ray

from study.run.events import Epoch, Event, Started
from study.run.worker import trial_events

if TYPE_CHECKING:
    from study.run.worker import WorkerCode
    from trainers import Dataset, TrainConfig

#: Epochs that end within this many seconds of a trial's last message wait for its next event.
COALESCE_SECONDS = 0.05
#: How long a trial waits at a rung for the pruner's verdict: as long as its epoch took, within these.
MIN_PAUSE_SECONDS = 0.02
MAX_PAUSE_SECONDS = 2.0


def placed(events: Iterator[Event]) -> Iterator[Event]:
    """The events, with the Ray node id and the GPU ids Ray assigned added to `Started`."""
    for event in events:
        if isinstance(event, Started):
            gpus = ",".join(str(g) for g in ray.get_gpu_ids())
            node = ray.get_runtime_context().get_node_id()
            event = dataclasses.replace(
                event, info={**event.info, "node_id": node, "gpu_ids": gpus, "started_at": f"{time.time():.3f}"}
            )
        yield event


def coalesced(
    events: Iterator[Event],
    window: float = COALESCE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    pause_at: frozenset[int] = frozenset(),
) -> Iterator[list[Event]]:
    """A trial's events as lists, one Ray object each: an event goes out at once (with any
    epochs held before it) unless it is an epoch ending within `window` seconds of the last
    list sent and not one of `pause_at` (the pruner's rungs, whose verdict the trial waits
    for); a held epoch goes with the next event, the trial's end at the latest."""
    held: list[Event] = []
    sent = clock()
    for event in events:
        held.append(event)
        now = clock()
        if not isinstance(event, Epoch) or now - sent >= window or event.epoch in pause_at:
            yield held
            held, sent = [], now
    if held:
        yield held


class StopBoard:
    """Which trials the driver wants stopped. `wait` answers once trial `number` is to stop
    (True), or is forgotten (False); `stop` may come before the trial's `wait`. At a pruner's
    rung a trial asks for the verdict on that epoch (`verdict`): stop (True), or go on (False)
    once the driver has let it past that epoch (`go`, which may come first). The driver
    forgets the trials whose tasks have ended, several at a time: one call per trial in all."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Event] = {}
        self.stopped: set[int] = set()
        self.passed: dict[int, int] = {}  # the last rung each trial was let past
        self.pausing: dict[int, asyncio.Event] = {}  # trials waiting for a verdict

    async def wait(self, number: int) -> bool:
        if number not in self.stopped:
            event = self.waiting.setdefault(number, asyncio.Event())
            await event.wait()
        return number in self.stopped

    async def stop(self, number: int) -> None:
        self.stopped.add(number)
        for waiters in (self.waiting, self.pausing):
            if number in waiters:
                waiters.pop(number).set()

    async def verdict(self, number: int, epoch: int) -> bool:
        """True if trial `number` is to stop; False once it was let past `epoch` (a `go` for an
        earlier rung, late, does not answer it), or forgotten."""
        while number not in self.stopped and self.passed.get(number, 0) < epoch:
            event = self.pausing.setdefault(number, asyncio.Event())
            await event.wait()
            if number not in self.passed and number not in self.stopped:
                return False  # forgotten
        return number in self.stopped

    async def go(self, number: int, epoch: int) -> None:
        """Trial `number` goes on past its rung `epoch`."""
        self.passed[number] = max(epoch, self.passed.get(number, 0))
        if number in self.pausing:
            self.pausing.pop(number).set()

    async def held(self) -> tuple[int, int]:
        """How many trials the board holds: waiting for an answer or let past a rung, and
        told to stop."""
        return len(self.waiting.keys() | self.pausing.keys() | self.passed.keys()), len(self.stopped)

    async def forget(self, numbers: list[int]) -> None:
        """These trials' tasks have ended: their `wait`s answer False, nothing is kept of them."""
        for number in numbers:
            self.stopped.discard(number)
            self.passed.pop(number, None)
            for waiters in (self.waiting, self.pausing):
                if number in waiters:
                    waiters.pop(number).set()


def until_stopped(events: Iterator[Event], number: int, board: Any, pause_at: frozenset[int] = frozenset()) -> Iterator[Event]:
    """The trial's events until the board says stop, looked at before each next event (the
    next epoch's training) through a `concurrent.futures.Future` of the answer to the one
    `wait` the task sent (a flag Ray's callback sets). After an epoch of `pause_at` (which
    `coalesced` sends at once) the trial waits for the board's verdict on it, at most as long
    as that epoch took (`MIN_PAUSE_SECONDS` to `MAX_PAUSE_SECONDS`): a driver slower than that
    costs no more than the epoch the trial then trains in vain.

    Never `ray.wait` or `ray.get` here: a task blocked in either, even with a zero timeout, is
    reported to its raylet as blocked and its CPU lent to the next queued task (3,000 trials
    of 2 s on 64 slots, `benchmarks/scaling.py`: each took 3.5 s instead of 2.1 s and the
    study's efficiency was 0.44 instead of 0.93 when this looked with ``ray.wait``); a
    `Future` waits in this thread alone. A board that is gone (its node lost) stops nothing;
    the driver's own end ends its tasks anyway."""
    answer = board.wait.remote(number).future()
    began = time.monotonic()
    for event in events:
        yield event
        if isinstance(event, Epoch):
            if event.epoch in pause_at and answer is not None and not answer.done():
                took = time.monotonic() - began
                verdict = board.verdict.remote(number, event.epoch).future()
                with contextlib.suppress(Exception):  # no verdict in time, or no board: train on
                    if verdict.result(timeout=min(MAX_PAUSE_SECONDS, max(MIN_PAUSE_SECONDS, took))) is True:
                        return  # stopped (the answer to `wait` may come a moment later)
            began = time.monotonic()
        if answer is not None and answer.done():
            if answer.exception() is None and answer.result():
                return
            answer = None  # forgotten, or the board is gone: nothing will stop this trial but Ray


def messages(events: Iterator[Event], number: int, board: Any, pause_at: frozenset[int]) -> Iterator[list[Event]]:
    """A trial's events, placed, as messages (`coalesced`) until the board stops it
    (`until_stopped`), pausing at the epochs of `pause_at` for the verdict."""
    yield from coalesced(until_stopped(placed(events), number, board, pause_at), pause_at=pause_at)


def trial_messages(
    number: int,
    config: TrainConfig | None,
    data: Dataset,
    backend: str,
    device: str,
    threads: int,
    board: Any,
    code: WorkerCode | None = None,
    params: dict[str, Any] | None = None,
    pause_at: frozenset[int] = frozenset(),
) -> Iterator[list[Event]]:
    """A trial's messages (the built-in MLP, a user's model or trainer function) until the
    board stops it, pausing at the epochs of `pause_at` for its verdict: what
    `TrialSlot.run_trial` and the `run_trial` task yield."""
    yield from messages(trial_events(number, config, data, backend, device, threads, code, params), number, board, pause_at)


def fn_messages(
    fn: Callable[[int, TrainConfig, Dataset], Iterator[Event]],
    number: int,
    config: TrainConfig,
    data: Dataset,
    board: Any,
    pause_at: frozenset[int] = frozenset(),
) -> Iterator[list[Event]]:
    """A scripted trial function's messages until the board stops it (`TrialSlot.run_fn`, `run_fn`)."""
    yield from messages(fn(number, config, data), number, board, pause_at)


@ray.remote(max_restarts=0, max_task_retries=0)
class TrialSlot:
    """One trial slot of a study: a Ray actor holding its CPUs and running the study's trials
    one after another, as the tasks below do one each (`study.run.ray_executor`). The next
    trial starts on a freed slot within milliseconds of the driver's call, where Ray's turn
    from one task to the next queued on the same worker took 50-75 ms (64 slots on 2 cores:
    3-4% of a 2-s trial, the largest cost of a large study of short trials). A slot whose
    process dies takes only its trial with it; the executor starts another."""

    def run_trial(self, *args: Any) -> Any:
        """`trial_messages(*args)`."""
        yield from trial_messages(*args)

    def run_fn(self, *args: Any) -> Any:
        """`fn_messages(*args)`."""
        yield from fn_messages(*args)


#: A trial as a Ray task of its own (trials that ask for GPUs).
run_trial = ray.remote(max_retries=0)(trial_messages)
run_fn = ray.remote(max_retries=0)(fn_messages)
