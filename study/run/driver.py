"""The driver loop: keep ``concurrency`` trials in flight and be the single writer.

The loop only moves events around. `Decisions` (Optuna) decides what to try and whether to
prune, an `Executor` (Ray, or in-process for tests) runs trials, the `Tracker` (MLflow)
records, a `Listener` displays. Where a trial's epoch goes, in order:

1. `_fill` asks Optuna for a trial and its configuration, opens its MLflow run and submits it;
2. the executor's `poll` returns the trial's events; `_handle` matches each by type:
   - `Started`: the trial runs (its timeout clock starts; where it runs is recorded);
   - `Epoch`: queue the record for MLflow, report the objective metric to Optuna, and if the
     pruner says stop, cancel the task and end the trial as pruned (its slot refills on the
     next turn of the loop), else tell the executor it goes on (`go`: a trial waiting at a
     pruner's rung for the verdict trains on);
   - `Ended`: tell Optuna COMPLETE with the objective value(s), or FAIL for a diverged run;
   - `Failed` / `Died`: FAIL as failed (the traceback, if any, as a text file of the run) /
     worker_died (the latter re-enqueued);
3. `_end`: the MLflow writes (last metrics, tags, run status) are handed to the tracker
   first, then Optuna is told.

With `TrackerProcess` the writes are done by the driver's writer process, which finishes
everything it was handed even if the driver is killed; a driver killed before telling Optuna
leaves the trial RUNNING there, and ``study resume`` re-runs it and repairs its MLflow run.

With ``queued > 0`` that many trials more are submitted than run at once, only when the
executor itself holds them until a slot frees (Ray, with ``concurrency`` at the cluster's
capacity): a slot then starts its next trial as soon as the last one returns, without
waiting for the driver's turn; they show as queued until their `Started` event.

Ctrl-C (SIGINT) or SIGTERM asks the loop to stop: running trials are cancelled and recorded
as interrupted (re-enqueued for a resume); a second Ctrl-C stops at once. With the spec's
``time_budget`` no trial starts once that many seconds have passed since the loop started;
the trials then running finish (bounded by the per-trial ``timeout``).

Times are real: a trial's MLflow run starts when Optuna asked for it and ends when it was
told, epoch points carry the time the epoch finished (`Epoch.at`), whenever the writer gets to
them. The figures shown and logged to the parent run (counts, best so far) are the study's
(`study.run.tally`), whichever driver ran its trials; the best trial's kept weights go to its
run as an artifact (``weights/weights.npz`` or ``weights/state_dict.pt``) when it becomes the
study's best.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from study.record import PLACEMENT, TRACEBACK_FILE, Outcome, StopReason, Tag, TrialAttr, run_params
from study.run.decisions import Asked, Decisions, objective_values
from study.run.events import Died, Ended, Epoch, Event, Failed, Started
from study.run.executor import Executor
from study.run.tally import Tally
from study.stores.tracker import Tracker

#: The display is refreshed at most this often (seconds).
TICK_SECONDS = 0.25


@dataclass
class RunningTrial:
    """What the driver knows about a trial in flight."""

    asked: Asked
    submitted: float
    started: float | None = None
    epoch: int = 0
    value: float | None = None
    history: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.asked.trial.number


@dataclass(frozen=True)
class RunningView:
    """One running trial as the display shows it."""

    number: int
    epoch: int
    epochs: int | None
    value: float | None
    seconds: float | None  # running for; None while queued


@dataclass(frozen=True)
class Snapshot:
    """The study as the display shows it: counts, best so far, running trials, timing."""

    name: str
    metric: str
    finished: int
    target: int
    counts: dict[str, int]  # the study's finished trials, by stop reason
    best: tuple[int, float] | None  # (trial number, first objective value)
    running: list[RunningView]
    elapsed: float
    eta: float | None

    @property
    def pruned(self) -> int:
        return self.counts.get(StopReason.PRUNED.value, 0)

    @property
    def failed(self) -> int:
        ok = (StopReason.COMPLETED.value, StopReason.EARLY_STOPPED.value, StopReason.PRUNED.value, StopReason.INTERRUPTED.value)
        return sum(v for k, v in self.counts.items() if k not in ok)


class Listener:
    """Progress hooks, all optional. The display and tests implement them."""

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None: ...
    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_trial_end(self, number: int, outcome: Outcome, snapshot: Snapshot) -> None: ...
    def on_tick(self, snapshot: Snapshot) -> None: ...

    def wants_stop(self) -> bool:
        """Asked after each round of events: True stops the study as Ctrl-C does (the trials
        in flight are interrupted and re-enqueued for `study resume`). A stopper, such as a
        budget of training epochs over the whole study."""
        return False


class Driver:
    """Runs a study to its target number of finished trials (or until stopped)."""

    def __init__(
        self,
        decisions: Decisions,
        executor: Executor,
        tracker: Tracker,
        *,
        concurrency: int,
        listener: Listener | None = None,
        tick: float = 0.2,
        tally: Tally | None = None,
        queued: int = 0,
    ) -> None:
        self.decisions = decisions
        self.spec = decisions.spec
        self.executor = executor
        self.tracker = tracker
        self.concurrency = concurrency
        self.queued = queued  # trials submitted beyond `concurrency`: they wait in the executor's queue
        self.listener = listener or Listener()
        self.tick = tick
        self.running: dict[int, RunningTrial] = {}
        self.tally = tally or Tally(decisions.study, self.spec, shared=decisions.lease.shared)
        self.started = time.monotonic()
        self.deadline = None if self.spec.time_budget is None else self.started + self.spec.time_budget
        self.budget_reached = False  # the time budget kept a trial from starting
        self.best_file: tuple[int, str, bytes] | None = None  # the study's best trial's weights, when this driver ran it
        self.finished_here = 0
        self.ended_at: float | None = None
        self.stop_requested = False
        self.interrupted = False
        self._metric = self.spec.all_objectives[0].metric
        self._next_tick = 0.0

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> bool:
        """Run until the target is met; False if interrupted."""
        with self._signals():
            while not self.stop_requested:
                self._fill()
                if not self.running:
                    break
                for event in self.executor.poll(self.tick):
                    self._handle(event)
                if self.listener.wants_stop():
                    self.stop_requested = True
                self._check_timeouts()
                self.decisions.lease.beat()
                self.tracker.maybe_flush()
                self.tally.maybe_refresh()
                self._tick()
            if self.stop_requested:
                self._interrupt()
        self.ended_at = time.time()  # the study's end, whenever the writer catches up
        self.tracker.flush()
        return not self.interrupted

    @property
    def remaining(self) -> int:
        return self.decisions.target - self.decisions.counted - len(self.running)

    def _fill(self) -> None:
        while len(self.running) < self.concurrency + self.queued and self.remaining > 0 and not self.stop_requested:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.budget_reached = True
                return
            asked = self.decisions.ask()
            if asked is None:  # other drivers of this study hold or finished the rest
                break
            number = asked.trial.number
            tags = {TrialAttr.SEED: str(asked.seed), TrialAttr.ATTEMPT: str(asked.attempt)}
            if asked.retry_of is not None:
                tags[TrialAttr.RETRY_OF] = str(asked.retry_of)
            params = dict(asked.trial.params) if asked.error else run_params(asked.config, asked.params)
            start = asked.trial.datetime_start
            self.tracker.start_trial(number, params, tags, start_time=start.timestamp() if start is not None else time.time())
            r = RunningTrial(asked, time.monotonic())
            self.running[number] = r
            if asked.error:
                self._end(r, Outcome(StopReason.FAILED, message=asked.error))
                continue
            self.executor.submit(number, asked.config, asked.params)

    def _handle(self, event: Event) -> None:
        r = self.running.get(event.number)
        if r is None:  # a cancelled trial's late event
            return
        match event:
            case Started(info=info):
                r.started = time.monotonic()
                placed = {k: str(info[k]) for k in PLACEMENT if info.get(k) not in (None, "")}
                if placed:  # where Ray ran it: MLflow tags and Optuna user attrs
                    self.tracker.tag_trial(r.number, placed)
                    self.decisions.note(r.asked.trial, {TrialAttr.PLACEMENT: placed})  # one storage write
                self.listener.on_trial_start(r.number, info)
            case Epoch(epoch=epoch, metrics=metrics, at=at):
                self._epoch(r, epoch, metrics, at)
            case Ended():
                self._finished(r, event)
            case Failed(message=message, traceback=tb):
                if tb:  # the whole traceback beside the run; its last line is the `error` tag
                    self.tracker.log_file(r.number, TRACEBACK_FILE, tb.encode())
                self._end(r, Outcome(StopReason.FAILED, message=message))
            case Died(message=message):
                self._end(r, Outcome(StopReason.WORKER_DIED, message=message))

    def _epoch(self, r: RunningTrial, epoch: int, metrics: dict[str, float], at: float) -> None:
        r.epoch = epoch
        r.history[epoch] = metrics
        r.value = metrics.get(self._metric)
        self.tracker.log_epoch(r.number, epoch, metrics, at=at)
        self.listener.on_epoch(r.number, epoch, metrics)
        last = r.asked.epochs is not None and epoch >= r.asked.epochs
        if self.decisions.report(r.asked.trial, epoch, r.value, last):
            self.executor.cancel(r.number, at=epoch)
            self._end(r, Outcome(StopReason.PRUNED, attrs={TrialAttr.PRUNED_STEP: epoch, TrialAttr.PRUNED_VALUE: r.value}))
        else:
            self.executor.go(r.number, epoch)

    def _finished(self, r: RunningTrial, end: Ended) -> None:
        attrs: dict[str, Any] = {
            TrialAttr.BEST_EPOCH: end.best_epoch,
            TrialAttr.STOPPED_EPOCH: end.stopped_epoch,
            **self.decisions.ended(r.asked, r.history, end),
        }
        if end.n_params:  # a trainer function has a parameter count only if it reports one
            attrs[TrialAttr.N_PARAMS] = end.n_params
        at_best = r.history.get(end.best_epoch or -1, {})
        gap = at_best.get("val_loss", math.nan) - at_best.get("train_loss", math.nan)
        if math.isfinite(gap):  # in Optuna too: `study best --where "gap_at_best < ..."` needs no MLflow
            attrs[TrialAttr.GAP_AT_BEST] = gap
        reason = StopReason.from_trainer(end.reason)
        if reason is StopReason.DIVERGED:
            self._end(r, Outcome(reason, message=f"loss or weights not finite at epoch {end.stopped_epoch}", attrs=attrs), end)
            return
        values, why = objective_values(self.spec, r.history, end)
        if values is None:
            self._end(r, Outcome(StopReason.FAILED, message=f"no objective value: {why}", attrs=attrs), end)
        else:
            self._end(r, Outcome(reason, values=values, attrs=attrs), end)

    def _check_timeouts(self) -> None:
        limit = self.spec.timeout
        if limit is None:
            return
        now = time.monotonic()
        for r in list(self.running.values()):
            if r.started is not None and now - r.started > limit:
                self.executor.cancel(r.number, force=True)
                self._end(
                    r, Outcome(StopReason.TIMEOUT, message=f"ran longer than timeout={limit:g}s (stopped in epoch {r.epoch + 1})")
                )

    # -- the end of a trial ------------------------------------------------------------
    def _end(self, r: RunningTrial, outcome: Outcome, end: Ended | None = None) -> None:
        """MLflow first (weights of a new best, last metrics, tags, status, end time), then
        Optuna, then the study's figures."""
        now = time.time()
        del self.running[r.number]
        metrics = self._summary_metrics(r, outcome, end)
        tags = {Tag.STOP_REASON: outcome.reason.value, **{k: str(v) for k, v in outcome.attrs.items()}}
        if outcome.message:
            tags[TrialAttr.ERROR] = outcome.message
        if end is not None and end.weights is not None and self.tally.improves(outcome):
            self.best_file = (r.number, f"weights/{end.weights_file}", end.weights)
            self.tracker.log_file(*self.best_file)
        self.tracker.end_trial(r.number, outcome.state.name, outcome.mlflow_status, tags, metrics, end_time=now)
        counted = self.decisions.finish(r.asked, outcome)
        self.tally.add(r.number, outcome, counted)
        if counted:
            self.finished_here += 1
        self.tracker.study_progress(self.tally.metrics(), self.tally.finished, at=now)
        self.listener.on_trial_end(r.number, outcome, self.snapshot())

    def _summary_metrics(self, r: RunningTrial, outcome: Outcome, end: Ended | None) -> dict[str, float]:
        out: dict[str, float] = {"stopped_epoch": float(end.stopped_epoch if end is not None else r.epoch)}
        if end is not None and end.best_epoch and end.best_epoch in r.history:
            rec = r.history[end.best_epoch]
            out["best_epoch"] = float(end.best_epoch)
            out[f"best_{self._metric}"] = rec.get(self._metric, math.nan)
            out["gap_at_best"] = rec.get("val_loss", math.nan) - rec.get("train_loss", math.nan)
        if end is not None and end.n_params:
            out["n_params"] = float(end.n_params)
            for k, v in (("test_loss", end.test_loss), ("test_acc", end.test_acc)):
                if v is not None:
                    out[k] = float(v)
        if outcome.values is not None:
            for i, v in enumerate(outcome.values):
                out["objective" if i == 0 else f"objective_{i}"] = v
        return {k: v for k, v in out.items() if math.isfinite(v)}

    # -- stopping -----------------------------------------------------------------------
    def _interrupt(self) -> None:
        self.interrupted = True
        for r in list(self.running.values()):
            self.executor.cancel(r.number)
            self._end(
                r, Outcome(StopReason.INTERRUPTED, message="interrupted (Ctrl-C or SIGTERM); re-enqueued for `study resume`")
            )

    def request_stop(self, *_: Any) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM request a clean stop while the loop runs (main thread only)."""
        saved: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                saved[sig] = signal.signal(sig, self.request_stop)
        try:
            yield
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)

    # -- the display ----------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK_SECONDS
            self.listener.on_tick(self.snapshot())

    def eta_seconds(self) -> float | None:
        if self.finished_here == 0:
            return None
        per = (time.monotonic() - self.started) / self.finished_here
        todo = self.decisions.target - self.decisions.counted
        return per * todo

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        running = [
            RunningView(r.number, r.epoch, r.asked.epochs, r.value, now - r.started if r.started else None)
            for r in sorted(self.running.values(), key=lambda r: r.number)
        ]
        t = self.tally
        return Snapshot(
            self.spec.name, self._metric, t.finished, self.decisions.target, dict(t.counts), t.best, running,
            now - self.started, self.eta_seconds(),
        )  # fmt: skip
