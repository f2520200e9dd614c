"""The driver loop on its own: scripted trials on the in-process executor, Optuna in memory and
a fake tracker that records every call, no Ray, no MLflow, no files. Each test runs in well
under a second (the end-to-end versions, with the real trainer, real journal storage and real
MLflow, are in test_launch.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import search_spaces
from study.record import Outcome, StopReason, TrialAttr, TrialRecord, mlflow_status
from study.run.decisions import Decisions
from study.run.driver import Driver, Listener, Snapshot
from study.run.events import Died, Ended, Epoch, Event, Failed, Started
from study.run.executor import InProcessExecutor, WorkerDied
from study.run.lease import Lease
from study.run.tally import Tally
from study.spec import SpecError, parse_spec
from study.stores.tracker import RunInfo
from trainers import from_arrays

SPACE = """\
name: unit
description: Learning rate only, for the driver's unit tests.
fixed: {depth: 1, width: 4, epochs: 6}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""


class FakeTracker:
    """The `Tracker` Protocol in memory: every call in order, and each trial's run."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.epochs: dict[int, list[int]] = {}
        self.ended: dict[int, tuple[str, str, dict[str, str], dict[str, float]]] = {}
        self.progress: list[tuple[dict[str, float], int]] = []
        self.files: dict[int, dict[str, bytes]] = {}
        self.times: dict[int, list[float]] = {}  # start, each epoch, end

    def start_study(
        self,
        name: str,
        spec: dict[str, Any],
        parent_run_id: str | None,
        uid: str,
        live: bool = True,
        start_time: float | None = None,
        under: str | None = None,
    ) -> None:
        self.calls.append(("start_study", name))

    def record_verdict(self, verdict: dict[str, Any]) -> None:
        self.calls.append(("record_verdict", verdict))

    def study_progress(self, metrics: dict[str, float], step: int, at: float | None = None) -> None:
        self.progress.append((metrics, step))

    def end_study(self, status: str, summary: dict[str, float] | None, step: int, end_time: float | None = None) -> int:
        self.calls.append(("end_study", status))
        return 0

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], start_time: float | None = None) -> None:
        self.calls.append(("start_trial", number, params, tags))
        self.epochs[number] = []
        self.times[number] = [start_time or 0.0]

    def tag_trial(self, number: int, tags: dict[str, str]) -> None:
        self.calls.append(("tag_trial", number, tags))

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float], at: float | None = None) -> None:
        self.epochs[number].append(epoch)
        self.times[number].append(at or 0.0)

    def log_file(self, number: int, path: str, data: bytes, run_id: str | None = None) -> None:
        self.files.setdefault(number, {})[path] = data

    def end_trial(
        self,
        number: int,
        state: str,
        status: str,
        tags: dict[str, str],
        summary: dict[str, float],
        end_time: float | None = None,
    ) -> None:
        self.calls.append(("end_trial", number))
        self.ended[number] = (state, status, tags, summary)
        self.times[number].append(end_time or 0.0)

    def maybe_flush(self) -> None: ...

    def flush(self) -> None: ...

    def trial_runs(self) -> dict[int, RunInfo]:
        return {}

    def repair_trial(self, record: TrialRecord, metric: str | None, run: RunInfo | None) -> int:
        return 0

    def close_parent(self, status: str, summary: dict[str, float], step: int, end_time: float | None = None) -> bool:
        return False

    def close(self) -> None: ...


def curve_trials(
    curves: Callable[[int], list[float]], reason: str = "completed", epoch_seconds: float = 0.0
) -> Callable[..., Iterator[Event]]:
    """Trials whose val_loss per epoch is `curves(number)`, each epoch taking `epoch_seconds`;
    `fn.produced` counts epochs made, `fn.closed` the trials whose generator was closed
    (cancelled). Each trial's `Ended` carries the weights file ``b"weights of <number>"``."""

    def fn(number: int, config: Any, data: Any) -> Iterator[Event]:
        yield Started(number, {"pid": 0, "host": "here", "node_id": "n1"})
        values = curves(number)
        try:
            for epoch, v in enumerate(values, 1):
                time.sleep(epoch_seconds)
                fn.produced[number] = epoch  # type: ignore[attr-defined]
                yield Epoch(number, epoch, {"train_loss": v / 2, "val_loss": v, "val_acc": 1 - v / 10})
        except GeneratorExit:
            fn.closed.add(number)  # type: ignore[attr-defined]
            raise
        best = min(range(len(values)), key=lambda i: values[i]) + 1
        weights = f"weights of {number}".encode()
        yield Ended(
            number, reason, best_epoch=best, stopped_epoch=len(values), n_params=5, test_acc=0.5, weights=weights,
            weights_file="weights.npz",
        )  # fmt: skip

    fn.produced = {}  # type: ignore[attr-defined]
    fn.closed = set()  # type: ignore[attr-defined]
    return fn


def make(
    tmp_path: Path,
    trial_fn: Callable[..., Iterator[Event]],
    *,
    trials: int = 3,
    listener: Listener | None = None,
    study: optuna.Study | None = None,
    **changes: Any,
) -> tuple[Driver, optuna.Study, FakeTracker]:
    """A driver over `study` (default: a new in-memory study; pass one to resume it)."""
    (tmp_path / "unit.yaml").write_text(SPACE)
    spec = parse_spec(
        {"name": "unit", "space": str(tmp_path / "unit.yaml"), "trials": trials, "pruner": "none", "sampler": "random", **changes}
    )
    if study is None:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())
    if spec.pruning:
        from study.run.samplers import make_pruner

        study.pruner = make_pruner(spec)
    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(30, 6)), np.arange(30) % 3)
    decisions = Decisions(study, spec, search_spaces.load(spec.space), 6, 3, Lease(study, None))
    tracker = FakeTracker()
    executor = InProcessExecutor(data, slots=2, trial_fn=trial_fn)
    driver = Driver(decisions, executor, tracker, concurrency=2, listener=listener, tick=0.0)
    return driver, study, tracker


def test_every_epoch_reaches_the_tracker_and_the_trial_ends_in_both_stores(tmp_path: Path) -> None:
    fn = curve_trials(lambda n: [1.0, 0.6, 0.7])
    driver, study, tracker = make(tmp_path, fn, trials=3)
    assert driver.run()
    for t in study.get_trials():
        r = TrialRecord.of(t)
        assert r.state == TrialState.COMPLETE and r.stop_reason is StopReason.COMPLETED
        assert r.values == [0.6] and r.attrs[TrialAttr.BEST_EPOCH] == 2  # scope best: the value at the best epoch
        assert tracker.epochs[r.number] == [1, 2, 3] and sorted(t.intermediate_values) == [1, 2, 3]
        state, status, tags, summary = tracker.ended[r.number]
        assert (state, status, tags["stop_reason"]) == ("COMPLETE", mlflow_status(t.state), "completed")
        assert summary["objective"] == 0.6 and summary["gap_at_best"] == pytest.approx(0.3) and summary["test_acc"] == 0.5
        assert r.config is not None and r.config.lr == t.params["lr"] and r.config.seed == r.seed  # stored when asked
        assert r.attrs[TrialAttr.PLACEMENT] == {"host": "here", "node_id": "n1"}
    starts = [c for c in tracker.calls if c[0] == "start_trial"]
    assert [c[1] for c in starts] == [0, 1, 2] and starts[0][2]["lr"] == study.trials[0].params["lr"]
    assert tracker.progress[-1] == ({"finished": 3.0, "completed": 3.0, "pruned": 0.0, "failed": 0.0, "best_value": 0.6}, 3)


def test_pruned_trials_are_cancelled_and_recorded_as_killed(tmp_path: Path) -> None:
    fn = curve_trials(lambda n: [1.0, 0.5, 0.4, 0.3, 0.2, 0.1] if n < 2 else [3.0] * 6)
    pruner = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2}
    driver, study, tracker = make(tmp_path, fn, trials=4, pruner=pruner)
    assert driver.run()
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert [t.number for t in pruned] == [2, 3]
    for t in pruned:
        assert t.user_attrs["stop_reason"] == "pruned" and t.user_attrs["pruned_step"] == 2
        assert t.number in fn.closed and fn.produced[t.number] <= 3  # type: ignore[attr-defined]
        state, status, tags, _ = tracker.ended[t.number]
        assert (state, status, tags["pruned_step"]) == ("PRUNED", "KILLED", "2")
        assert tracker.epochs[t.number] == [1, 2]


def test_failed_died_and_diverged_trials(tmp_path: Path) -> None:
    ok = curve_trials(lambda n: [1.0, 0.5])
    diverging = curve_trials(lambda n: [1.0, 0.5], reason="diverged")

    def fn(number: int, config: Any, data: Any) -> Iterator[Event]:
        if number == 0:
            yield Started(number, {})
            yield Failed(number, "ValueError: boom", "Traceback (most recent call last):\n  ...\nValueError: boom\n")
        elif number == 1:
            yield Started(number, {})
            raise WorkerDied("node lost")
        elif number == 3:
            yield from diverging(number, config, data)
        else:
            yield from ok(number, config, data)

    driver, study, tracker = make(tmp_path, fn, trials=4, retries=1)
    assert driver.run()
    t = {x.number: TrialRecord.of(x) for x in study.get_trials()}
    assert t[0].stop_reason is StopReason.FAILED and "boom" in t[0].attrs["error"] and t[0].counted
    assert t[1].stop_reason is StopReason.WORKER_DIED and not t[1].counted  # re-run once
    (rerun,) = [r for r in t.values() if r.attrs.get(TrialAttr.RETRY_OF) == 1]
    assert rerun.params == t[1].params and rerun.attrs[TrialAttr.ATTEMPT] == 1 and rerun.state == TrialState.COMPLETE
    assert rerun.number == 2  # the re-run takes the next number
    assert t[3].stop_reason is StopReason.DIVERGED and t[3].values is None and t[3].state == TrialState.FAIL
    assert {n: tracker.ended[n][1] for n in (0, 1, 2, 3)} == {0: "FAILED", 1: "FAILED", 2: "FINISHED", 3: "FAILED"}
    assert sum(r.counted for r in t.values()) == 4
    # the failure's whole traceback beside its run; its last line is the error tag
    assert tracker.files[0] == {"traceback.txt": b"Traceback (most recent call last):\n  ...\nValueError: boom\n"}
    assert tracker.ended[0][2]["error"] == "ValueError: boom"


def test_a_space_that_cannot_build_a_config_fails_that_trial_only(tmp_path: Path) -> None:
    driver, study, tracker = make(tmp_path, curve_trials(lambda n: [1.0]), trials=2, fixed={"dropout": 0.5, "input_dropout": 2.0})
    assert driver.run()
    assert [t.user_attrs["stop_reason"] for t in study.get_trials()] == ["failed", "failed"]
    assert "input_dropout" in study.trials[0].user_attrs["error"] and tracker.ended[0][1] == "FAILED"


class Events(Listener):
    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.outcomes: list[tuple[int, Outcome]] = []
        self.driver: Driver | None = None
        self.stop_after: int | None = None

    def on_trial_end(self, number: int, outcome: Outcome, snapshot: Snapshot) -> None:
        self.outcomes.append((number, outcome))
        self.snapshots.append(snapshot)
        if self.stop_after is not None and len(self.outcomes) == self.stop_after and self.driver is not None:
            self.driver.request_stop()


def test_snapshot_and_interrupt(tmp_path: Path) -> None:
    listener = Events()
    listener.stop_after = 1
    driver, study, tracker = make(
        tmp_path, curve_trials(lambda n: [1.0, 0.8] if n == 0 else [1.0] * 6), trials=4, listener=listener
    )
    listener.driver = driver
    assert not driver.run()  # interrupted
    first = listener.snapshots[0]
    assert (first.name, first.metric, first.finished, first.target, first.best) == ("unit", "val_loss", 1, 4, (0, 0.8))
    assert [r.number for r in first.running] == [1]
    reasons = [o.reason for _, o in listener.outcomes]
    assert reasons == [StopReason.COMPLETED, StopReason.INTERRUPTED]
    interrupted = study.trials[1]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["retried"] is True
    assert [t.state for t in study.trials[2:]] == [TrialState.WAITING]  # its parameters wait for a resume
    assert 1 in driver.executor.running or not driver.running  # nothing left in flight


def test_a_listener_that_wants_stop_stops_the_study_as_ctrl_c_does(tmp_path: Path) -> None:
    """A stopper (an epoch budget over the study) without a handle on the driver."""

    class EpochBudget(Listener):
        def __init__(self) -> None:
            self.epochs = 0

        def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
            self.epochs += 1

        def wants_stop(self) -> bool:
            return self.epochs >= 3

    budget = EpochBudget()
    fn = curve_trials(lambda n: [1.0] * 10, epoch_seconds=0.01)
    driver, study, _ = make(tmp_path, fn, trials=4, listener=budget)
    assert not driver.run()  # interrupted
    assert 3 <= budget.epochs < 10 and not driver.running
    assert not any(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["stop_reason"] for t in study.trials if t.state == TrialState.FAIL} == {"interrupted"}


def test_a_cancelled_trials_late_event_is_ignored(tmp_path: Path) -> None:
    driver, study, tracker = make(tmp_path, curve_trials(lambda n: [1.0]), trials=1)
    driver._fill()
    (number,) = driver.running
    driver._handle(Died(number + 100, "not ours"))  # an event for a trial the driver does not hold
    assert number in driver.running
    driver._handle(Started(number, {}))
    driver._handle(Epoch(number, 1, {"train_loss": 0.5, "val_loss": 1.0}))
    driver._handle(Ended(number, "completed", best_epoch=1, stopped_epoch=1, n_params=5))
    assert not driver.running and study.trials[0].state == TrialState.COMPLETE
    driver._handle(Epoch(number, 2, {"train_loss": 0.5, "val_loss": 0.1}))  # late: dropped
    assert tracker.epochs[number] == [1] and study.trials[0].intermediate_values == {1: 1.0}


# -- issue 14: what the driver shows and records is the study's, at the real times --------------
def test_figures_after_a_resume_are_the_studys_not_this_drivers(tmp_path: Path) -> None:
    """A resumed study: the best so far, the counts and the parent run's progress metrics
    include the trials of the driver before (best 0.2, from the first run), read from Optuna
    once and then kept up to date trial by trial."""
    first, study, _ = make(tmp_path, curve_trials(lambda n: [1.0, 0.2] if n == 0 else [1.0, 0.9]), trials=3)
    assert first.run()
    listener = Events()
    second, _, tracker = make(tmp_path, curve_trials(lambda n: [1.0, 0.5]), trials=5, listener=listener, study=study)
    reads = []
    original = second.tally.load
    second.tally.load = lambda: (reads.append(1), original())[1]  # type: ignore[method-assign]
    assert second.run()
    assert not reads  # one study, one driver: no scan of the trials after the first
    first_seen = listener.snapshots[0]
    assert first_seen.best == (0, 0.2) and first_seen.finished == 4 and first_seen.counts == {"completed": 4}
    metrics, step = tracker.progress[-1]
    assert step == 5 and metrics == {"finished": 5.0, "completed": 5.0, "pruned": 0.0, "failed": 0.0, "best_value": 0.2}
    assert metrics["best_value"] == study.best_value and metrics["completed"] == len(
        study.get_trials(states=[TrialState.COMPLETE])
    )
    steps = [s for _, s in tracker.progress]
    assert steps == sorted(steps) and steps[0] == 4  # left to right, from where the study was


def test_counts_include_failures_and_prunings_of_earlier_drivers(tmp_path: Path) -> None:
    def fn(number: int, config: Any, data: Any) -> Iterator[Event]:
        if number == 1:
            yield Started(number, {})
            yield Failed(number, "ValueError: boom")
        else:
            yield from curve_trials(lambda n: [1.0, 0.5])(number, config, data)

    first, study, _ = make(tmp_path, fn, trials=2)
    assert first.run()
    second, _, tracker = make(tmp_path, curve_trials(lambda n: [1.0, 0.7]), trials=3, study=study)
    assert second.run()
    assert tracker.progress[-1] == ({"finished": 3.0, "completed": 2.0, "pruned": 0.0, "failed": 1.0, "best_value": 0.5}, 3)
    assert second.snapshot().failed == 1


def test_a_shared_study_reads_other_drivers_trials_again(tmp_path: Path) -> None:
    """Several drivers on one study: trials another driver ends show up at the next refresh."""
    driver, study, _ = make(tmp_path, curve_trials(lambda n: [1.0, 0.5]), trials=1)
    tally = Tally(study, driver.spec, shared=True, refresh_seconds=0.0)
    assert tally.finished == 0 and tally.best is None
    other = study.ask()  # another driver's trial
    other.set_user_attr(TrialAttr.STOP_REASON, "completed")
    study.tell(other, 0.125)
    unshared = Tally(study, driver.spec, shared=False)
    tally.maybe_refresh()
    assert tally.finished == 1 and tally.best == (other.number, 0.125) and tally.counts == {"completed": 1}
    other2 = study.ask()
    other2.set_user_attr(TrialAttr.STOP_REASON, "completed")
    study.tell(other2, 0.0625)
    unshared.maybe_refresh()  # one driver per study: never read again
    assert unshared.best == (other.number, 0.125)


def test_times_passed_to_the_tracker_are_when_things_happened(tmp_path: Path) -> None:
    driver, study, tracker = make(tmp_path, curve_trials(lambda n: [1.0, 0.8, 0.6], epoch_seconds=0.05), trials=2)
    assert driver.run()
    for t in study.get_trials():
        start, *epochs, end = tracker.times[t.number]
        assert start == t.datetime_start.timestamp()
        assert abs(end - t.datetime_complete.timestamp()) < 0.5
        assert start < epochs[0] < epochs[1] < epochs[2] <= end and epochs[1] - epochs[0] >= 0.04


def test_time_budget_starts_no_trial_after_it_and_lets_running_ones_finish(tmp_path: Path) -> None:
    budget = 0.5
    fn = curve_trials(lambda n: [1.0, 0.9, 0.8, 0.7], epoch_seconds=0.05)
    driver, study, tracker = make(tmp_path, fn, trials=50, time_budget=budget)
    began = time.time()
    assert driver.run() and driver.budget_reached
    trials = study.get_trials()
    assert 2 <= len(trials) < 50
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["stop_reason"] == "completed" for t in trials)  # none cut off
    assert all(t.datetime_start.timestamp() < began + budget for t in trials)  # none started after the budget
    assert max(t.datetime_complete.timestamp() for t in trials) >= began + budget  # those running then went on


def test_time_budget_in_the_spec() -> None:
    assert [parse_spec({"name": "b", "time_budget": v}).time_budget for v in ("2h", "30m", "90s", 45, "1.5h")] == [
        7200.0, 1800.0, 90.0, 45.0, 5400.0,
    ]  # fmt: skip
    for bad in ("2x", "-1", 0, "soon"):
        with pytest.raises(SpecError, match="field time_budget"):
            parse_spec({"name": "b", "time_budget": bad})


def test_the_best_trials_weights_are_recorded_when_it_becomes_the_best(tmp_path: Path) -> None:
    values = {0: 0.5, 1: 0.7, 2: 0.3, 3: 0.4}
    driver, study, tracker = make(tmp_path, curve_trials(lambda n: [1.0, values[n]]), trials=4)
    assert driver.run()
    assert tracker.files == {0: {"weights/weights.npz": b"weights of 0"}, 2: {"weights/weights.npz": b"weights of 2"}}
    # resumed: a trial worse than the study's best (from before) sends its weights, but they are not kept
    again, _, tracker2 = make(tmp_path, curve_trials(lambda n: [1.0, 0.35]), trials=5, study=study)
    assert again.run() and tracker2.files == {}
