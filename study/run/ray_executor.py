"""Trials on Ray: each a streaming generator call (`study.run.remote`, what the workers
import), its events in lists (`study.run.remote.coalesced`). A CPU trial is a call on a
`TrialSlot` actor, one per trial slot, which runs trial after trial: the executor holds the
trials submitted beyond the free slots (`waiting`) and starts one on a slot as soon as `poll`
sees the last message (`Ended`, `Failed`) of the slot's trial: the call waits in the slot's
queue for the trial's return, with no Ray scheduling between (Ray's turn from one queued task
to the next on a worker took 50-75 ms with 64 slots on 2 cores) and no driver's turn. Slots
start as trials need them, up to what the cluster holds, two at a time at first
(`STARTING_SLOTS`); the first ones at `warm`, before the driver opens the study. A trial that
asks for GPUs is a Ray task of its own (``slots=False``).

The dataset is `ray.put` once; every trial gets the same reference, so the trials on a node
read one shared-memory copy. `poll` is a `ray.wait` over the trials' `ObjectRefGenerator`s.

A trial is stopped (pruned, or the study interrupted) through a `StopBoard`, a small actor
of the driver's: each task asks it once, at its start, to answer when the trial is to stop,
and before each next epoch looks whether the answer has come (a `Future` Ray's callback
completes: no call); the driver tells the board, forgets the stream and hands the trial's
slot to the next trial (which starts there when the stopped one returns). At the rungs of a
halving pruner (`pause_at`) the trial sends that epoch at once and waits for the verdict
(`StopBoard.verdict`: the driver's `cancel`, or its `go`), so a pruned trial trains no epoch
past its rung (MNIST-1D studies of the default pruner: pruned trials trained 4-6 epochs past
their rung while the driver decided, uncounted, before the per-epoch look and the pause).
Ray ends only a trial past its timeout (``force``) and one that has not stopped
`STOP_GRACE_SECONDS` after it was told: a slot's process by `ray.kill` (the executor starts
another slot; a trial queued behind the stopped one, never started, runs on another slot),
a task by `ray.cancel` (``force``: its worker process). Never a trial that has
ended: Ray 2.60's driver can abort when a cancellation
races with the task's completion ("Tried to complete task that was not pending",
task_manager.cc; seen twice in pruning-heavy studies before the board). Nothing is retried by
Ray (``max_retries=0``, ``max_restarts=0``): a lost worker is a `Died` event and the driver
decides; a trial given a slot that died while idle, which never started, runs on another.

`start_ray` starts a local Ray (dashboard off, all of this machine's CPUs, worker logs kept
out of the terminal, the workers' thread counts in its environment) or connects to an
existing cluster with ``address``. A local Ray is watched (`study.run.reaper`): if the driver
is killed, its Ray processes die within a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError, TaskCancelledError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.run import reaper
from study.run.events import Died, Ended, Event, Failed, Started
from study.run.executor import TrialFn
from study.run.remote import StopBoard, TrialSlot, run_fn, run_trial
from study.run.worker import WorkerCode
from study.spec import SpecError
from trainers import Dataset, TrainConfig

#: `poll` takes the events already there in at most this many rounds.
_DRAIN_ROUNDS = 16
#: The Ray task name of every trial (the trial's number is in its events, not in the name).
TASK_NAME = "hpstudy-trial"
#: A trial told to stop that still runs after this many seconds is cancelled by Ray.
STOP_GRACE_SECONDS = 10.0
#: The board forgets ended trials at most this often (one call for all of them).
FORGET_SECONDS = 1.0
#: Slots starting at once, at first; then as many as have started. Started all at once, 64
#: slots' processes on 2 cores each took 18 s to come up (a new Ray job), two at a time the
#: first was up in 0.3 s and all 64 in 18 s.
STARTING_SLOTS = 2
#: How long the cluster's capacity, which caps the number of slots, is taken as known.
CAPACITY_SECONDS = 5.0


@dataclasses.dataclass(eq=False)
class Slot:
    """A `TrialSlot` actor: `ready` is its ``__ray_ready__`` reference until it has started,
    `trial` the trial it runs (None: idle)."""

    actor: Any
    ready: Any = None
    trial: int | None = None


def _thread_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block, then as they were."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_ray(address: str | None = None, *, threads: int = 1, runtime_env: dict[str, Any] | None = None) -> bool:
    """Make sure Ray is up; returns True if this call started it (and so should stop it).
    `runtime_env`: more of the job's runtime environment (the user's code, `study.run.code`).

    The workers' BLAS thread counts (`threads`) go in the job's runtime environment on a
    cluster; a local Ray that this call starts gets them in its processes' environment
    instead, which its workers inherit (this process's own environment is left as it was):
    with a runtime environment Ray's agent prepares every worker process it starts, 0.3 s
    more per process here (two actors up in 0.75-0.9 s against 0.45-0.6 s), which a study
    pays for each trial slot it starts and a GPU trial for each task."""
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    counts = _thread_env(threads)
    if address or runtime_env:
        common["runtime_env"] = {**(runtime_env or {}), "env_vars": counts}
    if address:
        ray.init(address=address, **common)
        return True
    # "local": always a new instance, never one another `ray start` left in /tmp/ray
    before = reaper.children(os.getpid())
    with _environ(counts):
        ray.init(address="local", include_dashboard=False, **common)
    reaper.watch(reaper.children(os.getpid()) - before)
    return True


def stop_ray() -> None:
    """Stop the Ray that `start_ray` started (and its watcher)."""
    ray.shutdown()
    reaper.release()


class RayExecutor:
    """Runs each trial on a `TrialSlot` (or, `slots=False`, the default for trials that ask
    for GPUs, as a `run_trial` task) with the spec's resources.
    `trial_fn(number, config, data)` replaces the trainer (benchmarks: trivial trials).
    `code`: the user's model or trainer function (a reference the worker loads; what
    carries it to other nodes is the job's runtime environment, `study.run.code`).
    `pause_at`: the pruner's rungs (`study.run.samplers.pause_epochs`), where a trial waits
    for the driver's verdict (`go` or `cancel`)."""

    def __init__(
        self,
        data: Dataset,
        *,
        backend: str = "numpy",
        device: str = "cpu",
        cpus: float = 1.0,
        gpus: float = 0.0,
        trial_fn: TrialFn | None = None,
        code: WorkerCode | None = None,
        local: bool = False,
        slots: bool | None = None,
        pause_at: frozenset[int] = frozenset(),
    ) -> None:
        self.data_ref = ray.put(data)
        self.pause_at = pause_at
        self.local = local  # the Ray this driver started on this machine
        self.trial_fn = trial_fn
        self.code = code
        self._fn_ref = ray.put(trial_fn) if trial_fn is not None else None  # pickled once, not per trial
        self.backend = backend
        self.device = device
        self.cpus = cpus
        self.gpus = gpus
        self.threads = max(1, int(cpus))
        self.streams: dict[int, Any] = {}  # trial number -> ObjectRefGenerator
        self.stopping: dict[int, tuple[Any, float]] = {}  # told to stop, not yet ended: (generator, when told)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self.ended: list[int] = []  # trials whose tasks ended since the board last forgot some
        self.forgot = time.monotonic()
        self.board: Any = ray.remote(StopBoard).options(num_cpus=0, scheduling_strategy=here).remote()
        # trials run on slots (`TrialSlot` actors, one trial after another) unless they ask for
        # GPUs (`slots=False`: a Ray task each)
        self.slots = gpus == 0 if slots is None else slots
        self.pool: list[Slot] = []
        self.waiting: OrderedDict[int, tuple[str, tuple[Any, ...]]] = OrderedDict()  # submitted, no slot yet
        self.on_slot: dict[int, Slot] = {}  # trial number -> its slot
        self.unstarted: dict[int, tuple[str, tuple[Any, ...]]] = {}  # on a slot, its `Started` not seen yet
        self._cap, self._cap_at = 0, -CAPACITY_SECONDS

    def capacity(self) -> int:
        """Trials that fit the cluster at once, by CPUs (and GPUs when asked for)."""
        total = ray.cluster_resources()
        slots = int(total.get("CPU", 1) // self.cpus)
        if self.gpus > 0:
            slots = min(slots, int(total.get("GPU", 0) // self.gpus))
        return max(1, slots)

    def queue_ahead(self, concurrency: int) -> int:
        """How many trials the driver may submit beyond `concurrency`: they wait (in `waiting`
        for a slot, or in Ray's queue as tasks) and the next one starts the moment a trial
        ends, not after the driver's turn; none when `concurrency` is below the cluster's
        capacity (they would run at once)."""
        return max(1, concurrency // 8) if concurrency >= self.capacity() else 0

    def submit(self, number: int, config: TrainConfig | None, params: Mapping[str, Any] | None = None) -> None:
        if self._fn_ref is not None:
            assert config is not None, "a scripted trial function takes a TrainConfig"
            call: tuple[str, tuple[Any, ...]] = (
                "run_fn",
                (self._fn_ref, number, config, self.data_ref, self.board, self.pause_at),
            )
        else:
            user = dict(params or {}) if self.code is not None else None
            args = (
                number,
                config,
                self.data_ref,
                self.backend,
                self.device,
                self.threads,
                self.board,
                self.code,
                user,
                self.pause_at,
            )
            call = ("run_trial", args)
        if self.slots:
            self.waiting[number] = call
            self._dispatch()
            return
        # One task name for every trial: Ray's driver keeps a metrics series per task name for
        # good, about 3 kB each (a driver's RSS grew 19.7 kB per trial with a name per trial and
        # 9.2 kB with one: 2,000 zero-length trials on a local Ray of 16 CPUs)
        opts: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus, "name": TASK_NAME}
        task = run_fn if call[0] == "run_fn" else run_trial
        self.streams[number] = task.options(**opts).remote(*call[1])

    def _dispatch(self) -> None:
        """Start waiting trials on idle slots, and new slots for those left (up to what the
        cluster holds; a slot that cannot be placed yet waits for a CPU like a queued task),
        `STARTING_SLOTS` at first, then as many at once as have started (so the first trials
        start within a second of a new job where every slot's process starting at once
        shares the CPUs with all the others)."""
        if not self.waiting:
            return
        self._came_up(0.0)
        for slot in self.pool:
            if not self.waiting:
                return
            if slot.ready is None and slot.trial is None:
                self._start(slot, *self.waiting.popitem(last=False))
        starting = sum(slot.ready is not None for slot in self.pool)
        window = max(STARTING_SLOTS, len(self.pool) - starting) - starting  # slow start: as many as are up
        more = min(len(self.waiting) - starting, self._room(), window)
        for _ in range(more):
            self._new_slot()

    def _new_slot(self) -> None:
        actor = TrialSlot.options(num_cpus=self.cpus, num_gpus=self.gpus).remote()  # type: ignore[attr-defined]
        self.pool.append(Slot(actor, actor.__ray_ready__.remote()))

    def _came_up(self, wait: float) -> None:
        """Mark the starting slots that are up (waiting up to `wait` seconds for all of them);
        drop those that died starting (their node lost): others take their place."""
        coming = [slot for slot in self.pool if slot.ready is not None]
        if not coming:
            return
        up = set(ray.wait([slot.ready for slot in coming], num_returns=len(coming), timeout=wait, fetch_local=False)[0])
        for slot in coming:
            if slot.ready in up:
                try:
                    ray.get(slot.ready)
                    slot.ready = None
                except RayError:
                    self.pool.remove(slot)

    def warm(self, concurrency: int) -> None:
        """Start the slots the study's first trials will take (`STARTING_SLOTS` at most, as
        `_dispatch` would), without waiting for them: their processes come up while the driver
        opens the study and starts its MLflow writer, instead of after the first submit."""
        if self.slots:
            for _ in range(min(concurrency, STARTING_SLOTS, len(self.pool) + self._room()) - len(self.pool)):
                self._new_slot()

    def prestart(self, n: int, timeout: float = 120.0) -> int:
        """Start slots until there are `n` (as many as the cluster holds), waiting up to
        `timeout` seconds for them to come up; returns how many are up. For a caller that
        knows a burst of trials is coming (a benchmark's warm-up)."""
        self._cap_at = -CAPACITY_SECONDS  # look at the cluster now
        for _ in range(min(n - len(self.pool), self._room())):
            self._new_slot()
        self._came_up(timeout)
        return sum(slot.ready is None for slot in self.pool)

    def _room(self) -> int:
        """How many more slots the cluster holds (its capacity, looked up every few seconds)."""
        if time.monotonic() - self._cap_at >= CAPACITY_SECONDS:
            self._cap, self._cap_at = self.capacity(), time.monotonic()
        return self._cap - len(self.pool)

    def _start(self, slot: Slot, number: int, call: tuple[str, tuple[Any, ...]]) -> None:
        method = getattr(slot.actor, call[0])
        self.streams[number] = method.remote(*call[1])
        slot.trial = number
        self.on_slot[number] = slot
        self.unstarted[number] = call

    def _vacate(self, number: int) -> None:
        """The slot of trial `number` is free for the next trial, unless it has taken one.
        Called when the trial has sent its last message (`Ended`, `Failed`), or was stopped
        at a rung where it waits for that verdict: the next call then waits in Ray behind this
        one's return (nothing, or nothing but the return, is left to run), not for the driver
        to see the stream end and take its turn (the trial's tell, the next ask). Should the
        stopped trial not return within `STOP_GRACE_SECONDS`, the slot is killed and the trial
        queued behind it, which never started, runs on another (`_get`)."""
        slot = self.on_slot.get(number)
        if slot is not None and slot.trial == number:
            slot.trial = None

    def _release(self, number: int, kill: bool = False) -> None:
        """Trial `number` no longer runs on its slot: the slot is idle again, or (`kill`: the
        trial would not stop, or the slot's process is lost) ended and dropped from the pool."""
        self.unstarted.pop(number, None)
        self._vacate(number)
        slot = self.on_slot.pop(number, None)
        if slot is None:
            return
        if kill:  # a next trial queued on it never started: it runs on another slot (`_get`)
            if slot in self.pool:
                self.pool.remove(slot)
            try:
                ray.kill(slot.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def poll(self, timeout: float) -> list[Event]:
        """Every event that is ready, waiting up to `timeout` for the first, in the order of
        submission (trial by trial). One `ray.get` and one `ray.wait` a round, whatever the
        number of trials in flight; a failed stream's error is told apart by getting each
        alone."""
        if self.stopping:
            self._reap()
        if self.ended and time.monotonic() - self.forgot >= FORGET_SECONDS:
            self.board.forget.remote(self.ended)
            self.ended, self.forgot = [], time.monotonic()
        self._dispatch()
        starting = [slot.ready for slot in self.pool if slot.ready is not None] if self.waiting else []
        if not self.streams and not starting:
            return []
        gens = list(self.streams.values())
        ready, _ = ray.wait(gens, num_returns=len(gens), timeout=0) if gens else ([], [])
        if not ready:  # wait for a trial's message, or for a slot a waiting trial needs
            ready, _ = ray.wait(gens + starting, num_returns=1, timeout=timeout, fetch_local=False)
            if starting:
                self._dispatch()
                slot_refs = {id(r) for r in starting}
                ready = [r for r in ready if id(r) not in slot_refs]
        order = {number: i for i, number in enumerate(self.streams)}
        got: dict[int, list[Event]] = {}
        for _ in range(_DRAIN_ROUNDS):  # every event already there, not one per stream and turn
            ready_ids = {id(g) for g in ready}
            numbers, refs = [], []
            for number, gen in list(self.streams.items()):
                if id(gen) in ready_ids:
                    try:
                        refs.append(next(gen))
                        numbers.append(number)
                    except StopIteration:
                        self._drop(number)
            if not refs:
                break
            try:
                for number, events in zip(numbers, ray.get(refs), strict=True):
                    got.setdefault(number, []).extend(events)
            except RayError:
                for number, ref in zip(numbers, refs, strict=True):
                    self._get(number, ref, got.setdefault(number, []))
            for number in numbers:
                events = got.get(number, ())
                if number in self.unstarted and any(isinstance(e, Started) for e in events):
                    del self.unstarted[number]
                if events and isinstance(events[-1], (Ended, Failed)):
                    self._vacate(number)
            more = [self.streams[n] for n in numbers if n in self.streams]
            ready = ray.wait(more, num_returns=len(more), timeout=0)[0] if more else []
        self._dispatch()  # the slots freed in this round take the trials waiting
        # by submission: a trial's end comes before the start of the trial queued behind it
        return [e for n in sorted(got, key=order.__getitem__) for e in got[n]]

    def _get(self, number: int, ref: Any, events: list[Event]) -> None:
        try:
            events.extend(ray.get(ref))
        except TaskCancelledError:
            self._drop(number)
        except RayActorError as e:  # the slot's process or node is lost
            call = self.unstarted.get(number)
            self.streams.pop(number, None)
            self._release(number, kill=True)
            if call is not None and not events:  # it never started: it runs on another slot, unharmed
                self.waiting[number] = call
                self.waiting.move_to_end(number, last=False)
            else:
                self.ended.append(number)
                events.append(Died(number, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"))
        except RayTaskError as e:  # the task body raised outside the trainer
            self._drop(number)
            events.append(Failed(number, str(e).strip().splitlines()[-1]))
        except RayError as e:  # worker or node lost, object lost, ...
            self._drop(number)
            events.append(Died(number, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"))

    def check_resources(self) -> None:
        """A SpecError if no node of the cluster could ever run one trial: too few CPUs or GPUs
        on every node, ``device: cuda`` on a cluster without a GPU, or (a local Ray) with a
        torch that has no CUDA."""
        total = ray.cluster_resources()
        if self.device == "cuda" and total.get("GPU", 0) <= 0:
            where = "this machine" if self.local else "the Ray cluster"
            raise SpecError(f"field device: cuda needs a GPU, but {where} has none (Ray sees 0 GPUs); use device: cpu or auto")
        if self.device == "cuda" and self.local and self.trial_fn is None:
            import torch

            if not torch.cuda.is_available():
                raise SpecError(
                    f"field device: cuda, but this torch ({torch.__version__}) cannot use CUDA; "
                    "install a CUDA build of torch, or use device: cpu or auto"
                )
        need = {"CPU": self.cpus, "GPU": self.gpus}
        for node in ray.nodes():
            have = node.get("Resources", {}) if node.get("Alive") else {}
            if all(have.get(k, 0.0) >= v for k, v in need.items() if v > 0):
                return
        raise SpecError(
            f"field resources: a trial needs {self.cpus:g} CPU(s) and {self.gpus:g} GPU(s) on one node, "
            f"but no node of the Ray cluster has that (the cluster has {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs)"
        )

    def cancel(self, number: int, force: bool = False, at: int | None = None) -> None:
        """Stop a trial: the board tells its task to return before its next epoch (at once
        when it waits at a rung); with `force` (a trial stuck past its timeout) Ray ends its
        worker process (its slot's). Its events are dropped. A trial still waiting for a slot
        is just forgotten. A trial stopped `at` a rung of `pause_at` (it waits there for this
        verdict, and returns the moment it has it) leaves its slot to the next trial at once:
        that one waits on the slot behind it, not for a poll to see the stopped task end."""
        if self.waiting.pop(number, None) is not None:
            return
        gen = self.streams.pop(number, None)
        if gen is None:
            return
        if force:
            self._end(number, gen, force=True)
            self.ended.append(number)
        else:
            self.board.stop.remote(number)
            self.stopping[number] = (gen, time.monotonic())
            if at in self.pause_at:
                self._vacate(number)

    def go(self, number: int, epoch: int) -> None:
        """Trial `number` goes on after `epoch`: a trial waiting there (a rung of `pause_at`)
        trains on at once."""
        if epoch in self.pause_at and number in self.streams:
            self.board.go.remote(number, epoch)

    def _reap(self, wait: float = 0.0) -> None:
        """Forget the stopped trials whose tasks have ended (waiting up to `wait` seconds for
        them all); end by Ray those still running `STOP_GRACE_SECONDS` after they were told
        (an epoch that long)."""
        refs = {number: gen.completed() for number, (gen, _) in self.stopping.items()}
        ended = set(ray.wait(list(refs.values()), num_returns=len(refs), timeout=wait, fetch_local=False)[0])
        now = time.monotonic()
        for number, ref in refs.items():
            gen, told = self.stopping[number]
            if ref in ended or now - told > STOP_GRACE_SECONDS:
                del self.stopping[number]
                self.ended.append(number)  # the board forgets it either way
                if ref in ended:
                    self._release(number)
                else:
                    self._end(number, gen)

    def _end(self, number: int, gen: Any, force: bool = False) -> None:
        """End a trial that has not returned: its slot's process (`ray.kill`), or its task
        (`ray.cancel`); nothing if it has ended meanwhile (a cancellation racing with a task's
        completion can abort Ray's driver; the window between the look and the call remains)."""
        if ray.wait([gen.completed()], timeout=0, fetch_local=False)[0]:
            self._release(number)
            return
        if number in self.on_slot:
            self._release(number, kill=True)
            return
        try:
            ray.cancel(gen, force=force)
        except Exception:  # noqa: BLE001 - already finished
            pass

    def _drop(self, number: int) -> None:
        """The trial's stream has ended (or failed): its slot is free, and the board forgets
        it with the next batch."""
        if self.streams.pop(number, None) is not None:
            self.ended.append(number)
        self._release(number)

    def close(self) -> None:
        """Stop what still runs (through the board, by Ray past `STOP_GRACE_SECONDS`), then
        end the slots and the board."""
        self.waiting.clear()
        for number in list(self.streams):
            self.cancel(number)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.stopping and time.monotonic() <= deadline:
            self._reap(wait=max(0.0, deadline - time.monotonic()))
        for number, (gen, _) in list(self.stopping.items()):
            self._end(number, gen)
        self.stopping.clear()
        for slot in self.pool:
            try:
                ray.kill(slot.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.pool.clear()
        ray.kill(self.board)
