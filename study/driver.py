"""The driver loop: keep ``concurrency`` trials in flight and be the single writer.

The loop only moves events around. `Decisions` (Optuna) decides what to try and whether to
prune, an `Executor` (Ray, or in-process for tests) runs trials, the `Tracker` (MLflow)
records, a `Listener` displays. For every event:

- ``start``: the trial runs (its timeout clock starts);
- ``epoch``: report the objective metric to Optuna, queue the record for MLflow, and if
  the pruner says stop, cancel the task and end the trial as pruned (its slot refills on
  the next turn of the loop);
- ``end``: tell Optuna COMPLETE with the objective value(s), or FAIL for a diverged run;
- ``error`` / ``died``: FAIL as failed / worker_died (the latter re-enqueued).

At the end of each trial the MLflow writes (last metrics, tags, run status) are handed to
the tracker first, then Optuna is told. With `TrackerProcess` the writes are done by the
driver's writer process, which finishes everything it was handed even if the driver is
killed; a driver killed before telling Optuna leaves the trial RUNNING there, and
``study resume`` re-runs it and corrects its MLflow run.

Ctrl-C (SIGINT) or SIGTERM asks the loop to stop: running trials are cancelled and recorded
as interrupted (re-enqueued for a resume); a second Ctrl-C stops at once.
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

from study.decisions import Decisions, objective_values
from study.executors import Executor
from study.outcomes import Outcome
from study.tracking import Tracker
from study.tracking_process import TrackerProcess
from study.worker import Event

#: Keys of a ``start`` event recorded with the trial, as MLflow tags and as the Optuna user
#: attr ``placement`` (a mapping). RayExecutor adds node_id, gpu_ids and started_at (the
#: wall-clock time the task began).
PLACEMENT = ("host", "node_id", "gpu_ids", "started_at")


@dataclass
class RunningTrial:
    """What the driver knows about a trial in flight."""

    number: int
    trial: Any  # optuna.Trial
    config: Any  # TrainConfig
    submitted: float
    started: float | None = None
    epoch: int = 0
    value: float | None = None
    pid: int | None = None
    history: dict[int, dict[str, float]] = field(default_factory=dict)


class Listener:
    """Progress hooks, all optional. The rich display and tests implement them."""

    def on_trial_start(self, driver: Driver, number: int, info: dict[str, Any]) -> None: ...
    def on_epoch(self, driver: Driver, number: int, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_trial_end(self, driver: Driver, number: int, outcome: Outcome) -> None: ...
    def on_tick(self, driver: Driver) -> None: ...


class Driver:
    """Runs a study to its target number of finished trials (or until stopped)."""

    def __init__(
        self,
        decisions: Decisions,
        executor: Executor,
        tracker: Tracker | TrackerProcess,
        *,
        concurrency: int,
        listener: Listener | None = None,
        tick: float = 0.2,
    ) -> None:
        self.decisions = decisions
        self.spec = decisions.spec
        self.executor = executor
        self.tracker = tracker  # a Tracker or a TrackerProcess
        self.concurrency = concurrency
        self.listener = listener or Listener()
        self.tick = tick
        self.running: dict[int, RunningTrial] = {}
        self.counts: dict[str, int] = {}
        self.best: tuple[int, list[float]] | None = None
        self.started = time.monotonic()
        self.finished_here = 0
        self.stop_requested = False
        self.interrupted = False
        self._metric = self.spec.all_objectives[0].metric

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
                self._check_timeouts()
                self.decisions.beat()
                self.tracker.maybe_flush()
                self.listener.on_tick(self)
            if self.stop_requested:
                self._interrupt()
        self.tracker.flush()
        return not self.interrupted

    @property
    def remaining(self) -> int:
        return self.decisions.target - self.decisions.counted - len(self.running)

    def _fill(self) -> None:
        while len(self.running) < self.concurrency and self.remaining > 0 and not self.stop_requested:
            asked = self.decisions.ask()
            if asked is None:  # other drivers of this study hold or finished the rest
                break
            trial, config, error = asked
            number = trial.number
            tags = {"seed": str(trial.user_attrs.get("seed")), "attempt": str(trial.user_attrs.get("attempt", 0))}
            if "retry_of" in trial.user_attrs:
                tags["retry_of"] = str(trial.user_attrs["retry_of"])
            params = config.to_dict() if config is not None else dict(trial.params)
            self.tracker.start_trial(number, params, tags)
            r = RunningTrial(number, trial, config, time.monotonic())
            self.running[number] = r
            if config is None:
                self._end(r, Outcome("failed", message=error))
                continue
            self.executor.submit(number, config)

    def _handle(self, event: Event) -> None:
        number, kind = event[0], event[1]
        r = self.running.get(number)
        if r is None:  # a cancelled trial's late event
            return
        if kind == "start":
            r.started = time.monotonic()
            r.pid = event[2].get("pid")
            placed = {k: str(event[2][k]) for k in PLACEMENT if event[2].get(k) not in (None, "")}
            if placed:  # where Ray ran it: MLflow tags and Optuna user attrs
                self.tracker.tag_trial(number, placed)
                self.decisions.note(r.trial, {"placement": placed})  # one storage write
            self.listener.on_trial_start(self, number, event[2])
        elif kind == "epoch":
            self._epoch(r, event[2], event[3])
        elif kind == "end":
            self._finished(r, event[2])
        elif kind == "error":
            self._end(r, Outcome("failed", message=event[2]))
        elif kind == "died":
            self._end(r, Outcome("worker_died", message=event[2]))

    def _epoch(self, r: RunningTrial, epoch: int, metrics: dict[str, float]) -> None:
        r.epoch = epoch
        r.history[epoch] = metrics
        r.value = metrics.get(self._metric)
        self.tracker.log_epoch(r.number, epoch, metrics)
        self.listener.on_epoch(self, r.number, epoch, metrics)
        if self.decisions.report(r.trial, epoch, r.value):
            self.executor.cancel(r.number)
            self._end(r, Outcome("pruned", attrs={"pruned_step": epoch, "pruned_value": r.value}))

    def _finished(self, r: RunningTrial, summary: dict[str, Any]) -> None:
        reason = summary["stop_reason"]
        attrs = {k: summary[k] for k in ("best_epoch", "stopped_epoch", "n_params")}
        if reason == "diverged":
            self._end(
                r,
                Outcome("diverged", message=f"loss or weights not finite at epoch {summary['stopped_epoch']}", attrs=attrs),
                summary,
            )
            return
        values, why = objective_values(self.spec, r.history, summary)
        if values is None:
            self._end(r, Outcome("failed", message=f"no objective value: {why}", attrs=attrs), summary)
        else:
            self._end(r, Outcome(reason, values=values, attrs=attrs), summary)

    def _check_timeouts(self) -> None:
        limit = self.spec.timeout
        if limit is None:
            return
        now = time.monotonic()
        for r in list(self.running.values()):
            if r.started is not None and now - r.started > limit:
                self.executor.cancel(r.number, force=True)
                self._end(r, Outcome("timeout", message=f"ran longer than timeout={limit:g}s (stopped in epoch {r.epoch + 1})"))

    # -- the end of a trial ------------------------------------------------------------
    def _end(self, r: RunningTrial, outcome: Outcome, summary: dict[str, Any] | None = None) -> None:
        del self.running[r.number]
        metrics = self._summary_metrics(r, outcome, summary or {})
        tags = {"stop_reason": outcome.reason, **{k: str(v) for k, v in outcome.attrs.items()}}
        if outcome.message:
            tags["error"] = outcome.message
        self.tracker.end_trial(r.number, outcome.state.name, outcome.mlflow_status, tags, metrics)
        counted = self.decisions.finish(r.trial, outcome)
        self.counts[outcome.reason] = self.counts.get(outcome.reason, 0) + 1
        if counted:
            self.finished_here += 1
        if outcome.values is not None and self._better(outcome.values):
            self.best = (r.number, outcome.values)
        self.tracker.study_progress(self._progress_metrics(), self.decisions.counted)
        self.listener.on_trial_end(self, r.number, outcome)

    def _summary_metrics(self, r: RunningTrial, outcome: Outcome, summary: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {"stopped_epoch": float(summary.get("stopped_epoch", r.epoch))}
        best = summary.get("best_epoch")
        if best and best in r.history:
            rec = r.history[best]
            out["best_epoch"] = float(best)
            out[f"best_{self._metric}"] = rec.get(self._metric, math.nan)
            out["gap_at_best"] = rec["val_loss"] - rec["train_loss"]
        for k in ("n_params", "test_loss", "test_acc"):
            if summary.get(k) is not None:
                out[k] = float(summary[k])
        if outcome.values is not None:
            for i, v in enumerate(outcome.values):
                out["objective" if i == 0 else f"objective_{i}"] = v
        return {k: v for k, v in out.items() if math.isfinite(v)}

    def _better(self, values: list[float]) -> bool:
        if self.spec.is_multi_objective:
            return False
        if self.best is None:
            return True
        maximize = self.spec.directions[0] == "maximize"
        return values[0] > self.best[1][0] if maximize else values[0] < self.best[1][0]

    def _progress_metrics(self) -> dict[str, float]:
        c = self.counts
        out = {
            "finished": float(self.decisions.counted),
            "completed": float(c.get("completed", 0) + c.get("early_stopped", 0)),
            "pruned": float(c.get("pruned", 0)),
            "failed": float(sum(v for k, v in c.items() if k not in ("completed", "early_stopped", "pruned"))),
        }
        if self.best is not None:
            out["best_value"] = self.best[1][0]
        return out

    # -- stopping -----------------------------------------------------------------------
    def _interrupt(self) -> None:
        self.interrupted = True
        for r in list(self.running.values()):
            self.executor.cancel(r.number)
            self._end(r, Outcome("interrupted", message="interrupted (Ctrl-C or SIGTERM); re-enqueued for `study resume`"))

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

    # -- display helpers -----------------------------------------------------------------
    def eta_seconds(self) -> float | None:
        if self.finished_here == 0:
            return None
        per = (time.monotonic() - self.started) / self.finished_here
        todo = self.decisions.target - self.decisions.counted
        return per * todo
