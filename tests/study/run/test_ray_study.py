"""Integration: studies on a real local Ray cluster (one for the session), real MLflow on
SQLite and real Optuna journal storage. Trials are tiny nets on a small generated task;
the fault tests make them long enough (hundreds of epochs, about a second) to be hit while
they run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from study.record import TrialRecord, mlflow_status
from study.run import launch as launching
from study.run.driver import Listener
from study.run.prepare import prepare
from study.spec import parse_spec


def is_counted(t: Any) -> bool:
    return TrialRecord.of(t).counted


pytestmark = pytest.mark.integration

SLOW = {"epochs": 400, "width": 64}  # about a second per trial on one CPU
SLOW_DATA = {"name": "gaussian_mixture", "args": {"n_samples": 1500, "n_features": 20, "n_classes": 3}}


class Watch(Listener):
    """Records what the driver saw: worker pids, the most trials started and not ended, the
    most trials the driver had in flight (submitted, running or queued in Ray) when one ended,
    epochs per trial."""

    def __init__(self) -> None:
        self.pids: dict[int, int] = {}
        self.max_running = 0
        self.max_in_flight = 0
        self.epochs: dict[int, int] = {}
        self.running: set[int] = set()

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None:
        self.pids[number] = info["pid"]
        self.running.add(number)

    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs[number] = epoch
        self.max_running = max(self.max_running, len(self.running))

    def on_trial_end(self, number: int, outcome: Any, snapshot: Any) -> None:
        self.running.discard(number)
        self.max_in_flight = max(self.max_in_flight, 1 + sum(r.number != number for r in snapshot.running))


def run_on_ray(address: str, spec: dict[str, Any], listener: Listener | None = None, resume: bool = False) -> launching.RunResult:
    prep = prepare(parse_spec(spec))
    return launching.run_study(
        prep, resume=resume, executor=launching.ray_executor(address), listener=listener, say=lambda m: None
    )


def journal(workdir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))


def check_agreement(workdir: Path, name: str) -> tuple[optuna.Study, dict[int, Any], MlflowClient]:
    """Nothing RUNNING anywhere; every trial has a nested run whose status, state tag and
    stop reason match Optuna, with one metric point per epoch Optuna saw."""
    study = optuna.load_study(study_name=name, storage=journal(workdir))
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("hpstudy.role") == "study"]
    children = {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sorted(children) == [t.number for t in trials]
    for t in trials:
        run = children[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == mlflow_status(t.state)
        assert run.data.tags["state"] == t.state.name and run.data.tags["stop_reason"] == t.user_attrs["stop_reason"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == list(range(1, len(steps) + 1))  # one point per epoch, in order
        if t.user_attrs.get("reconciled"):  # a killed driver's unflushed epochs are lost; the trial re-runs
            # the driver hands an epoch to MLflow just before it reports it to Optuna, so a kill
            # between the two leaves MLflow at most that one epoch ahead
            seen = set(t.intermediate_values)
            assert set(steps) <= seen | {max(seen, default=0) + 1}
        else:
            assert set(t.intermediate_values) <= set(steps)  # NaN epochs are recorded, not reported
        if "stopped_epoch" in t.user_attrs:
            assert len(steps) == t.user_attrs["stopped_epoch"]
        if "pruned_step" in t.user_attrs:
            assert len(steps) == t.user_attrs["pruned_step"]
    return study, children, client


def test_n_trials_at_concurrency_2(ray_address: str, workdir: Path, tiny_spec: Any) -> None:
    watch = Watch()
    result = run_on_ray(ray_address, tiny_spec(trials=6, concurrency=2), watch)
    assert result.finished
    study, children, client = check_agreement(workdir, "tiny-study")
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 6
    assert sum(is_counted(t) for t in study.get_trials()) == 6
    # the driver keeps two trials going (and one queued in Ray: the cluster has 2 CPUs, so a
    # freed CPU starts the next at once); that two of them overlap on the workers depends on
    # how fast Ray starts its second worker, which can take longer than a whole tiny trial
    assert watch.max_in_flight >= 2 and watch.max_running <= 2
    assert os.getpid() not in watch.pids.values()  # trials ran in Ray workers
    for t in study.get_trials():
        assert len(client.get_metric_history(children[t.number].info.run_id, "val_loss")) == 3


def _cpus_back(n: float, wait: float = 10.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= n:
            return True
        time.sleep(0.2)
    return False


def test_pruned_trials_stop_early_and_free_their_slot(
    ray_address: str, workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trial 0 learns fast and stops on patience; the slow learners after it are pruned at
    # epoch 3. Unstopped, each would hold a CPU for 20000 epochs (half a minute). They stop
    # through the board, never by `ray.cancel` (whose race with a task's completion can abort
    # Ray's driver).
    spec = tiny_spec(
        dataset=SLOW_DATA,
        trials=4,
        concurrency=1,
        fixed={"epochs": 20000, "width": 64, "patience": 3},
        enqueue=[{"lr": 0.1}, {"lr": 0.001}, {"lr": 0.001}, {"lr": 0.001}],
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 3},
    )
    cancelled: list[Any] = []
    monkeypatch.setattr(ray, "cancel", lambda *a, **k: cancelled.append(a))
    watch = Watch()
    result = run_on_ray(ray_address, spec, watch)
    study, children, client = check_agreement(workdir, "tiny-study")
    trials = study.get_trials()
    assert trials[0].user_attrs["stop_reason"] == "early_stopped"
    assert [t.state for t in trials[1:]] == [TrialState.PRUNED] * 3
    for t in trials[1:]:
        assert t.user_attrs["pruned_step"] == 3
        assert len(client.get_metric_history(children[t.number].info.run_id, "val_loss")) == 3
    assert result.finished and _cpus_back(2), "a pruned trial's task still holds its CPU"
    assert cancelled == []


def _ticks(path: Path, seconds_per_epoch: float) -> Any:
    """A trial function whose epochs take `seconds_per_epoch` each (in sleeps of 50 ms, between
    which Ray's KeyboardInterrupt lands) and leave one line each in `path`."""
    from study.run.events import Epoch, Started

    def fn(number: int, config: Any, data: Any) -> Any:
        yield Started(number, {"pid": os.getpid()})
        for epoch in range(1, 10_000):
            end = time.monotonic() + seconds_per_epoch
            while time.monotonic() < end:
                time.sleep(0.05)
            with open(path, "a") as f:
                f.write(f"{number} {epoch}\n")
            yield Epoch(number, epoch, {"val_loss": 1.0})

    return fn


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _rows(path: Path, number: str) -> int:
    return sum(line.split()[0] == number for line in path.read_text().splitlines()) if path.exists() else 0


def test_a_stopped_trial_returns_at_its_next_message_and_ray_cancel_is_not_used(
    ray_address: str, workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cancel` tells the board: the trial returns after the epoch it is in, and its slot
    takes the next trial (the same worker process); Ray is asked for nothing, for a running
    trial or one that has ended. The board answers a `stop` sent before the trial's `wait`,
    and keeps nothing of ended trials."""
    import study.run.ray_executor as ray_executor
    from study.run.events import Started
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    cancelled: list[Any] = []
    monkeypatch.setattr(ray, "cancel", lambda *a, **k: cancelled.append(a))
    ticks = workdir / "ticks.txt"
    ex = RayExecutor(prep.data, trial_fn=_ticks(ticks, 0.2))
    try:
        ex.board.stop.remote(7)  # before the trial's task asks
        ex.submit(7, TrainConfig(epochs=5))
        ex.submit(0, TrainConfig(epochs=5))
        deadline = time.monotonic() + 60
        while _rows(ticks, "0") < 10 and time.monotonic() < deadline:
            ex.poll(0.2)
        assert _rows(ticks, "7") < 5 and 7 not in ex.streams  # it ended at one of its first messages
        ex.cancel(0)
        assert 0 not in ex.streams and 0 in ex.stopping
        deadline = time.monotonic() + 5
        while ex.stopping and time.monotonic() < deadline:
            ex.poll(0.1)
            time.sleep(0.1)
        assert not ex.stopping, "the stopped trial's task did not end"
        ended_at = _lines(ticks)
        time.sleep(1.0)
        assert _lines(ticks) == ended_at, "the stopped trial's task is still training"
        ex.cancel(0)  # already stopped: nothing to do
        assert cancelled == [] and len(ex.pool) == 2 and all(slot.trial is None for slot in ex.pool)
        pids = {int(p) for p in ray.get([slot.actor.__ray_call__.remote(lambda self: os.getpid()) for slot in ex.pool])}
        ex.submit(8, TrainConfig(epochs=5))  # a freed slot runs it at once, in the same process
        started: list[Any] = []
        deadline = time.monotonic() + 30
        while not started and time.monotonic() < deadline:
            started = [e for e in ex.poll(0.2) if isinstance(e, Started)]
        assert started and started[0].info["pid"] in pids and len(ex.pool) == 2
        ex.cancel(8)
        while ex.stopping and time.monotonic() < deadline:
            ex.poll(0.1)
        time.sleep(ray_executor.FORGET_SECONDS)
        ex.poll(0.1)  # the ended trials forgotten in one call: the board holds nothing of them
        assert ray.get(ex.board.held.remote(), timeout=30) == (0, 0)
    finally:
        monkeypatch.undo()
        ex.close()


def _spans(path: Path) -> Any:
    """A trial function of 40 epochs of 60 ms (each its own message), which writes its start
    and end times to `path`."""
    from study.run.events import Epoch, Started

    def fn(number: int, config: Any, data: Any) -> Any:
        start = time.time()
        yield Started(number, {"pid": os.getpid()})
        for epoch in range(1, 41):
            time.sleep(0.06)
            yield Epoch(number, epoch, {"val_loss": 1.0})
        with open(path, "a") as f:
            f.write(f"{number} {start} {time.time()}\n")

    return fn


@pytest.mark.parametrize("slots", [True, False], ids=["slots", "tasks"])
def test_a_running_trial_keeps_its_cpu(ray_address: str, workdir: Path, tiny_spec: Any, slots: bool) -> None:
    """On the session's 2 CPUs, a third trial waits for one of the first two to end: a trial
    looking at the stop board between messages never lends its CPU to a queued one (as
    `ray.wait` or `ray.get` inside a task would, even with a zero timeout), on slots (actors)
    and as tasks (trials that ask for GPUs)."""
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    spans = workdir / "spans.txt"
    ex = RayExecutor(prep.data, trial_fn=_spans(spans), slots=slots)
    try:
        for n in range(4):
            ex.submit(n, TrainConfig(epochs=5))
        deadline = time.monotonic() + 120
        while (ex.streams or ex.waiting) and time.monotonic() < deadline:
            ex.poll(0.5)
            assert len(ex.pool) <= 2  # no more slots than the CPUs hold
    finally:
        ex.close()
    rows = [tuple(map(float, line.split())) for line in spans.read_text().splitlines()]
    assert len(rows) == 4
    for _, start, _ in rows:  # trials running at the moment this one started, itself included
        assert sum(s <= start < e for _, s, e in rows) <= 2, rows


@pytest.mark.parametrize("slots", [True, False], ids=["slots", "tasks"])
def test_force_and_a_trial_deaf_to_the_board_are_cancelled_by_ray(
    ray_address: str, workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch, slots: bool
) -> None:
    """`cancel(force=True)` (a trial past its timeout) ends the trial through Ray at once; a
    trial that has not returned `STOP_GRACE_SECONDS` after it was told (an epoch longer than
    that) is ended by Ray; a trial that has ended is never cancelled (the race of a
    cancellation with a task's completion can abort Ray's driver). On slots Ray ends the
    slot's process (`ray.kill`), and the executor starts another slot for the next trial; a
    task is cancelled (`ray.cancel`)."""
    import study.run.ray_executor as ray_executor
    from study.run.events import Started
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    monkeypatch.setattr(ray_executor, "STOP_GRACE_SECONDS", 0.5)
    real_cancel, real_kill = ray.cancel, ray.kill
    ended: list[str] = []

    def cancel(gen: Any, force: bool = False, **kw: Any) -> None:
        ended.append(f"cancel force={force}")
        real_cancel(gen, force=force, **kw)

    def kill(actor: Any, **kw: Any) -> None:
        ended.append("kill")
        real_kill(actor, **kw)

    monkeypatch.setattr(ray, "cancel", cancel)
    monkeypatch.setattr(ray, "kill", kill)
    force, grace = (["kill"], ["kill"]) if slots else (["cancel force=True"], ["cancel force=False"])
    ex = RayExecutor(prep.data, trial_fn=_ticks(workdir / "slow.txt", 30.0), slots=slots)
    try:
        ex.submit(0, TrainConfig(epochs=5))
        ex.submit(1, TrainConfig(epochs=5))
        started: dict[int, int] = {}  # both running (a worker can take seconds to start on a busy machine)
        deadline = time.monotonic() + 90
        while len(started) < 2 and time.monotonic() < deadline:
            started |= {e.number: e.info["pid"] for e in ex.poll(0.5) if isinstance(e, Started)}
        assert set(started) == {0, 1}
        ex.cancel(1, force=True)
        assert ended == force
        ex.cancel(0)  # deaf for 30 s: Ray ends it after the grace
        time.sleep(1.0)
        ex.poll(0.1)
        assert ended == force + grace and not ex.stopping
        assert _cpus_back(2, wait=30), "the cancelled trials still hold their CPUs"
        ended_by_ray = list(started.values()) if slots else [started[1]]  # a cancelled task's process stays for the next
        deadline = time.monotonic() + 30
        while [pid for pid in ended_by_ray if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not ex.pool and not [pid for pid in ended_by_ray if _alive(pid)]
        done = RayExecutor(prep.data, slots=slots)
        done.submit(2, TrainConfig(depth=1, width=8, epochs=2))
        deadline = time.monotonic() + 120
        while 2 not in done.streams and time.monotonic() < deadline:
            done.poll(0.5)  # on slots: until its slot has started
        ray.wait([done.streams[2].completed()], timeout=120)
        done.cancel(2, force=True)
        assert ended == force + grace
        done.close()
    finally:
        ex.close()


def _deaf_then_quick(number: int, config: Any, data: Any) -> Any:
    """Trial 0's first epoch lasts 30 s (it looks at the board only after it); the others run
    three epochs of 0.1 s and end."""
    from study.run.events import Ended, Epoch, Started

    yield Started(number, {"pid": os.getpid()})
    for epoch in range(1, 4):
        time.sleep(30.0 if number == 0 else 0.1)
        yield Epoch(number, epoch, {"val_loss": 1.0})
    yield Ended(number, "completed", 3, 3, 10)


def test_a_trial_queued_behind_one_stopped_at_a_rung_runs_even_if_that_one_never_returns(
    ray_address: str, workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial stopped at a rung leaves its slot to the next trial at once (it waits there for
    the verdict and returns the moment it has it). One that does not return is ended with its
    slot after the grace, and the trial queued behind it, which never started, runs on a new
    slot, with no `Died` event."""
    import study.run.ray_executor as ray_executor
    from study.run.events import Died, Ended, Started
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    monkeypatch.setattr(ray_executor, "STOP_GRACE_SECONDS", 0.5)
    ex = RayExecutor(prep.data, trial_fn=_deaf_then_quick, pause_at=frozenset({1}))
    try:
        ex.submit(0, TrainConfig(epochs=3))
        started: dict[int, int] = {}
        deadline = time.monotonic() + 90
        while 0 not in started and time.monotonic() < deadline:
            started |= {e.number: e.info["pid"] for e in ex.poll(0.5) if isinstance(e, Started)}
        assert 0 in started
        slot = ex.on_slot[0]
        ex.cancel(0, at=1)  # as the driver does when the pruner stops it at rung 1 (it is deaf, in its epoch)
        ex.submit(1, TrainConfig(epochs=3))
        assert ex.on_slot[1] is slot  # queued behind trial 0 on its slot
        events: list[Any] = []
        deadline = time.monotonic() + 90
        while not any(isinstance(e, Ended) for e in events) and time.monotonic() < deadline:
            events += ex.poll(0.5)
        assert [e.number for e in events if isinstance(e, Ended)] == [1]
        assert not [e for e in events if isinstance(e, Died)]
        (start,) = [e for e in events if isinstance(e, Started)]
        assert start.info["pid"] != started[0] and slot not in ex.pool  # a new slot: trial 0's was ended
    finally:
        ex.close()


def test_a_trial_given_a_lost_slot_runs_on_another(ray_address: str, workdir: Path, tiny_spec: Any) -> None:
    """A slot whose process died while idle is found out when a trial is given to it: the
    trial, which never started, runs on a new slot with no `Died` event (nothing of it was
    lost); one that had started and loses its slot is a `Died` event, for the driver's retry."""
    from study.run.events import Died, Epoch, Started
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    ex = RayExecutor(prep.data, trial_fn=_spans(workdir / "spans.txt"), slots=True)
    try:

        def run(numbers: list[int], kill_started: bool = False) -> list[Any]:
            for n in numbers:
                ex.submit(n, TrainConfig(epochs=5))
            events: list[Any] = []
            deadline = time.monotonic() + 120
            while (ex.streams or ex.waiting) and time.monotonic() < deadline:
                got = ex.poll(0.5)
                events += got
                if kill_started:
                    for e in got:
                        if isinstance(e, Started):
                            os.kill(e.info["pid"], signal.SIGKILL)
            assert not ex.streams and not ex.waiting
            return events

        first = run([0, 1])
        pids = {e.info["pid"] for e in first if isinstance(e, Started)}
        assert len(pids) == 2 and len(ex.pool) == 2
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        second = run([2, 3])
        assert sorted(e.number for e in second if isinstance(e, Epoch) and e.epoch == 40) == [2, 3]  # trained to the end
        assert not [e for e in second if isinstance(e, Died)]
        assert not pids & {e.info["pid"] for e in second if isinstance(e, Started)}
        third = run([4], kill_started=True)
        assert [type(e) for e in third if e.number == 4] == [Started, Died]
    finally:
        ex.close()


def _tailed(path: Path) -> Any:
    """A trial function that ends (`Ended`) at once, trial 0 then idling 1.5 s before it
    returns, trial 1 running 6 s; each writes when it started and returned to `path`."""
    from study.run.events import Ended, Started

    def fn(number: int, config: Any, data: Any) -> Any:
        start = time.time()
        yield Started(number, {"pid": os.getpid()})
        if number == 1:
            time.sleep(6.0)
        yield Ended(number, "completed", best_epoch=1, stopped_epoch=1, n_params=1)
        if number == 0:
            time.sleep(1.5)
        with open(path, "a") as f:
            f.write(f"{number} {start} {time.time()}\n")

    return fn


def test_a_slot_takes_its_next_trial_at_the_last_message(ray_address: str, workdir: Path, tiny_spec: Any) -> None:
    """The poll that returns a trial's `Ended` gives its slot the next waiting trial, queued
    behind the trial's return: it starts in that process when the trial returns, not after
    the driver has seen the stream end; the slot of a trial still running takes nothing."""
    from study.run.events import Died, Ended, Started
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    spans = workdir / "spans.txt"
    ex = RayExecutor(prep.data, trial_fn=_tailed(spans), slots=True)
    try:
        assert ex.prestart(2) == 2
        for n in range(3):
            ex.submit(n, TrainConfig(epochs=1))
        assert 2 in ex.waiting  # both slots busy
        events: list[Any] = []
        deadline = time.monotonic() + 60
        while not any(isinstance(e, Ended) and e.number == 0 for e in events) and time.monotonic() < deadline:
            events += ex.poll(0.2)
        assert 0 in ex.streams, "trial 0's stream ended within its 1.5-s tail"
        assert 2 in ex.streams and ex.on_slot[2] is ex.on_slot[0] and ex.on_slot[1] is not ex.on_slot[0]
        while (ex.streams or ex.waiting) and time.monotonic() < deadline:
            events += ex.poll(0.2)
    finally:
        ex.close()
    assert not [e for e in events if isinstance(e, Died)]
    pids = {e.number: e.info["pid"] for e in events if isinstance(e, Started)}
    assert pids[2] == pids[0] != pids[1]
    rows = {int(n): (float(s), float(e)) for n, s, e in (line.split() for line in spans.read_text().splitlines())}
    assert rows[0][1] <= rows[2][0] < rows[1][1]  # after trial 0 returned, while trial 1 ran


def test_prestart_starts_no_more_slots_than_the_cluster_holds(ray_address: str, tiny_spec: Any) -> None:
    """`prestart(n)` brings `n` slots up, at most one per trial's worth of CPUs (2 here), and
    a trial submitted then starts on one of them."""
    from study.run.events import Started
    from study.run.ray_executor import RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    ex = RayExecutor(prep.data, slots=True)
    try:
        assert ex.prestart(5) == 2 and len(ex.pool) == 2
        pids = set(ray.get([slot.actor.__ray_call__.remote(lambda self: os.getpid()) for slot in ex.pool]))
        ex.submit(0, TrainConfig(depth=1, width=8, epochs=2))
        assert 0 in ex.streams  # at once: a slot was idle
        events: list[Any] = []
        deadline = time.monotonic() + 60
        while ex.streams and time.monotonic() < deadline:
            events += ex.poll(0.5)
        assert [e.info["pid"] for e in events if isinstance(e, Started)][0] in pids
    finally:
        ex.close()


def test_warm_starts_the_first_slots_without_waiting(ray_address: str, tiny_spec: Any) -> None:
    """`warm(n)` starts slots for the first `n` trials (two at most, as a first submit
    would), returns before they are up, and the trials submitted then run on them: no slot
    more is started for them."""
    from study.run.events import Started
    from study.run.ray_executor import STARTING_SLOTS, RayExecutor
    from trainers import TrainConfig

    prep = prepare(parse_spec(tiny_spec()))
    ex = RayExecutor(prep.data, slots=True)
    try:
        ex.warm(1)
        assert len(ex.pool) == 1 and ex.pool[0].ready is not None  # started, not waited for
        ex.warm(5)
        assert len(ex.pool) == STARTING_SLOTS == 2
        warmed = list(ex.pool)
        pids = set(ray.get([slot.actor.__ray_call__.remote(lambda self: os.getpid()) for slot in warmed]))
        for n in range(3):
            ex.submit(n, TrainConfig(depth=1, width=8, epochs=2))
        events: list[Any] = []
        deadline = time.monotonic() + 60
        while (ex.streams or ex.waiting) and time.monotonic() < deadline:
            events += ex.poll(0.5)
        assert ex.pool == warmed
        assert {e.info["pid"] for e in events if isinstance(e, Started)} <= pids
        assert sorted(e.number for e in events if isinstance(e, Started)) == [0, 1, 2]
    finally:
        ex.close()
    no_slots = RayExecutor(prep.data, slots=False)  # trials as tasks: nothing to warm
    try:
        no_slots.warm(2)
        assert no_slots.pool == []
    finally:
        no_slots.close()


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_stop_board() -> None:
    """`wait` answers True once the trial is stopped (before or after it asks), False once it
    is forgotten; `verdict` at a rung answers False once the driver let the trial past that
    epoch, True once it is stopped; nothing is kept of a forgotten trial."""
    import asyncio

    from study.run.remote import StopBoard

    async def scenario() -> None:
        board = StopBoard()
        await board.stop(1)
        assert await board.wait(1) is True  # stopped before it asked
        waiting = asyncio.ensure_future(board.wait(2))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        await board.stop(2)
        assert await waiting is True
        forgotten = asyncio.ensure_future(board.wait(3))
        await asyncio.sleep(0.01)
        await board.forget([3])
        assert await forgotten is False
        await board.forget([1, 2])
        assert board.waiting == {} and board.stopped == set()
        # at a rung: go on once let past that epoch (before or after it asks), stop when stopped
        await board.go(4, 1)
        assert await board.verdict(4, 1) is False
        pausing = asyncio.ensure_future(board.verdict(4, 3))
        await asyncio.sleep(0.01)
        assert not pausing.done()  # let past epoch 1, not 3
        await board.go(4, 1)  # a late answer for an earlier rung (its pause had timed out)
        await asyncio.sleep(0.01)
        assert not pausing.done()
        await board.go(4, 3)
        assert await pausing is False
        pausing = asyncio.ensure_future(board.verdict(4, 9))
        await asyncio.sleep(0.01)
        await board.stop(4)
        assert await pausing is True and await board.verdict(4, 27) is True
        pausing = asyncio.ensure_future(board.verdict(5, 1))
        await asyncio.sleep(0.01)
        assert await board.held() == (2, 1)
        await board.forget([4, 5])
        assert await pausing is False
        assert await board.held() == (0, 0) and board.passed == {} and board.pausing == {}

    asyncio.run(scenario())


def test_diverging_lr_ends_as_diverged(ray_address: str, workdir: Path, tiny_spec: Any) -> None:
    run_on_ray(ray_address, tiny_spec(trials=1, fixed={"lr": 1e6, "optimizer": "sgd"}))
    study, children, _ = check_agreement(workdir, "tiny-study")
    (t,) = study.get_trials()
    assert t.state == TrialState.FAIL and t.user_attrs["stop_reason"] == "diverged" and t.values is None
    assert children[0].info.status == "FAILED"


class KillFirstWorker(Listener):
    """SIGKILLs the worker process running trial 0 after its first epoch."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.killed = False

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None:
        if number == 0:
            self.pid = info["pid"]

    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        if number == 0 and not self.killed and self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self.killed = True


def test_killed_worker_is_retried(ray_address: str, workdir: Path, tiny_spec: Any) -> None:
    killer = KillFirstWorker()
    result = run_on_ray(ray_address, tiny_spec(dataset=SLOW_DATA, trials=2, retries=1, fixed=SLOW), killer)
    assert killer.killed and result.finished
    study, children, _ = check_agreement(workdir, "tiny-study")
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["stop_reason"] == "worker_died"
    assert "died" in trials[0].user_attrs["error"].lower() or "crash" in trials[0].user_attrs["error"].lower()
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert retry.params == trials[0].params and retry.state == TrialState.COMPLETE and retry.user_attrs["attempt"] == 1
    assert sum(is_counted(t) for t in trials) == 2


def _spec_file(workdir: Path, tiny_spec: Any, trials: int) -> Path:
    path = workdir / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(dataset=SLOW_DATA, trials=trials, fixed=SLOW)))
    return path


def _wait_running(workdir: Path, proc: subprocess.Popen, min_done: int) -> None:
    """Until the driver has `min_done` finished trials and one running past epoch 5."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (workdir / "optuna.journal").exists():
            try:
                study = optuna.load_study(study_name="tiny-study", storage=journal(workdir))
            except KeyError:
                study = None
            if study is not None:
                trials = study.get_trials()
                done = sum(t.state.is_finished() for t in trials)
                if done >= min_done and any(t.state == TrialState.RUNNING and len(t.intermediate_values) > 5 for t in trials):
                    return
        time.sleep(0.3)
    raise AssertionError("the driver never had a trial running")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _resume(study_cli: str, workdir: Path, ray_address: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """`study resume tiny-study` in a subprocess; it must succeed. Returns (storage URL, process)."""
    storage = f"journal:{workdir / 'optuna.journal'}"
    p = subprocess.run(
        [study_cli, "resume", "tiny-study", "--storage", storage, "--address", ray_address, "--quiet"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return storage, p


def test_sigkilled_driver_then_resume(ray_address: str, workdir: Path, tiny_spec: Any, study_cli: str) -> None:
    spec = _spec_file(workdir, tiny_spec, trials=5)
    proc = subprocess.Popen(
        [study_cli, "launch", str(spec), "--address", ray_address, "--quiet"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    _wait_running(workdir, proc, min_done=1)
    writer = _children(proc.pid)  # the driver's MLflow writer process
    assert writer
    proc.kill()
    proc.wait(30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in writer) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in writer if Path(f"/proc/{pid}").exists()], "the MLflow writer outlived its killed driver"
    left = [
        t.number
        for t in optuna.load_study(study_name="tiny-study", storage=journal(workdir)).get_trials()
        if t.state == TrialState.RUNNING
    ]
    assert left
    storage, p = _resume(study_cli, workdir, ray_address)
    assert "reconciled" in p.stderr
    study, children, _ = check_agreement(workdir, "tiny-study")
    trials = study.get_trials()
    assert sum(is_counted(t) for t in trials) == 5
    for n in left:
        assert trials[n].user_attrs["stop_reason"] == "interrupted" and trials[n].user_attrs["reconciled"]
        assert children[n].info.status == "FAILED"
        assert len([t for t in trials if t.user_attrs.get("retry_of") == n]) == 1  # re-run once, no duplicates


def test_ctrl_c_interrupts_and_resume_completes(ray_address: str, workdir: Path, tiny_spec: Any, study_cli: str) -> None:
    spec = _spec_file(workdir, tiny_spec, trials=4)
    proc = subprocess.Popen(
        [study_cli, "launch", str(spec), "--address", ray_address, "--quiet"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_running(workdir, proc, min_done=0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "study resume tiny-study" in out
    study = optuna.load_study(study_name="tiny-study", storage=journal(workdir))
    interrupted = [t for t in study.get_trials() if t.user_attrs.get("stop_reason") == "interrupted"]
    assert interrupted and not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny-study").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    storage, p = _resume(study_cli, workdir, ray_address)
    study, _, _ = check_agreement(workdir, "tiny-study")
    assert sum(is_counted(t) for t in study.get_trials()) == 4
    status = subprocess.run([study_cli, "status", "tiny-study", "--storage", storage], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "4 finished of 4" in status.stdout


def test_resources_no_node_can_hold_exit_2_and_write_nothing(
    ray_address: str, workdir: Path, tiny_spec: Any, study_cli: str
) -> None:
    spec = tiny_spec(resources={"cpus": 64})
    spec.pop("storage")  # the default: a journal in .hpstudy/ of the working folder
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()}
    p = subprocess.run(
        [study_cli, "launch", "spec.yaml", "--address", ray_address, "--quiet"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert "field resources: a trial needs 64 CPU(s)" in p.stderr and "Traceback" not in p.stderr
    assert {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()} == before  # no .hpstudy/, mlflow.db untouched


def test_a_study_whose_trials_all_fail_exits_1_naming_the_error(
    ray_address: str, workdir: Path, tiny_spec: Any, study_cli: str
) -> None:
    spec = tiny_spec(dataset=SLOW_DATA, trials=2, fixed=SLOW, timeout=0.5)  # every trial runs past its timeout
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    p = subprocess.run(
        [study_cli, "launch", "spec.yaml", "--address", ray_address, "--quiet"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "error: no trial of study 'tiny-study' succeeded (2 finished, all failed)" in p.stderr
    assert "most common error (2 of 2): ran longer than timeout=0.5s" in p.stderr and "Traceback" not in p.stderr
    if shutil.which("study") != study_cli:  # the hints name the command as it can be typed here
        assert f"Best trials: {study_cli} best tiny-study" in p.stdout, p.stdout


def test_device_cuda_without_a_gpu_is_bad_input(ray_address: str, workdir: Path, tiny_spec: Any, study_cli: str) -> None:
    spec = tiny_spec(backend="torch", device="cuda")
    spec.pop("storage")  # the default: a journal in .hpstudy/ of the working folder
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()}
    p = subprocess.run(
        [study_cli, "launch", "spec.yaml", "--address", ray_address, "--quiet"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [line for line in p.stderr.strip().splitlines() if not line.startswith("warning: the Optuna storage")]
    assert lines == [
        "error: field device: cuda needs a GPU, but the Ray cluster has none (Ray sees 0 GPUs); use device: cpu or auto"
    ]
    assert {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()} == before  # no .hpstudy/, mlflow.db untouched
