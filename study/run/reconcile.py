"""One reconciliation of a study's stores, used by `study resume` and by `study sync`.

Optuna storage is the source of truth. After a killed driver, a killed MLflow writer or an
MLflow outage, the stores may disagree; reconciling makes them agree again:

- Optuna (resume only): trials a gone driver left RUNNING become FAIL / ``interrupted``
  (``reconciled``) and their parameters are enqueued to run again (`release_orphans`);
- MLflow (resume and sync): every finished trial gets exactly one complete run
  (`repair_tracking`): a run that is missing is created (the stored configuration as params,
  the trial's real start time); a run left RUNNING, whose state or stop reason disagrees,
  that lacks its summary, or that lost writes during an outage (tag ``hpstudy.incomplete``)
  gets its trial's tags, status and end time, its summary metrics, and the objective metric's
  epochs Optuna has (Optuna keeps one value per epoch of the objective metric only; the other
  metrics of undelivered epochs are lost, and such runs carry ``hpstudy.synced``).

Idempotent: a second pass finds every run complete and writes nothing. Trials still running,
or owned by a driver that is still alive, are left to their driver.

At ten thousand trials, reading every run back takes minutes, so a driver that ends cleanly
(every MLflow write delivered) records how far the runs are known complete (the study attr
``hpstudy.mlflow_complete_through``, `mark_tracked`); a resume checks only the trials after
it, looking their runs up one by one when they are few. `study sync` checks every trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from study.record import StopReason, StudyAttr, TrialAttr, TrialRecord, mlflow_status, objective_metrics
from study.run.decisions import enqueue_retry
from study.run.design import nest_under
from study.run.lease import Lease, beats, driver_id, is_gone, live_drivers
from study.spec import SpecError, StudySpec
from study.stores import optuna_storage
from study.stores.runs import MAX_SEARCHES
from study.stores.tracker import MlflowTracker, RunInfo, Tracker
from study.stores.uris import check_tracking, is_local_file


@dataclass
class Repaired:
    """What a reconciliation changed in MLflow."""

    created: list[int] = field(default_factory=list)  # trials that had no run
    fixed: list[int] = field(default_factory=list)  # runs whose status/tags/metrics were completed
    points: int = 0  # epoch points of the objective metric filled in
    skipped: list[int] = field(default_factory=list)  # finished trials of a live driver
    parent_closed: bool = False
    unchecked: list[int] = field(default_factory=list)  # trials past the mark not checked (running, skipped)
    last: int = -1  # the highest trial number there was

    @property
    def changed(self) -> bool:
        return bool(self.created or self.fixed or self.points or self.parent_closed)


def release_orphans(study: optuna.Study, lease: Lease) -> list[TrialRecord]:
    """Trials a gone driver left RUNNING become FAIL/interrupted and are enqueued again (with
    several drivers: only those of drivers that are gone). Returns them (as they were)."""
    last = beats(study.user_attrs)
    left = [r for r in map(TrialRecord.of, study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))) if lease.owns(r, last)]
    for r in left:
        attrs = {
            TrialAttr.STOP_REASON: StopReason.INTERRUPTED.value,
            TrialAttr.ERROR: "the driver stopped while this trial ran",
            TrialAttr.RETRIED: True,
            TrialAttr.RECONCILED: True,
        }
        optuna_storage.end_left_running(study, r.number, attrs)
        enqueue_retry(study, r.number, r.params, int(r.attrs.get(TrialAttr.ATTEMPT, 0)))
    return left


def needs_repair(record: TrialRecord, run: RunInfo | None) -> bool:
    """Whether a finished trial's MLflow run disagrees with its Optuna record."""
    if run is None:
        return True
    reason = record.attrs.get(TrialAttr.STOP_REASON)
    if run.status != mlflow_status(record.state) or run.state != record.state.name or run.incomplete:
        return True
    if reason is not None and run.stop_reason != str(reason):
        return True
    values = record.values if record.state == TrialState.COMPLETE else None
    return values is not None and not set(objective_metrics(values)) <= run.metrics


def objective_metric(spec: StudySpec) -> str | None:
    """The one metric Optuna keeps per epoch (None for a multi-objective study)."""
    return None if spec.is_multi_objective else spec.objective.metric


def tracked_through(study: optuna.Study) -> int:
    """The study's mark: every trial up to this number has its complete MLflow run (-1: none)."""
    v = study.user_attrs.get(StudyAttr.TRACKED)
    return v if isinstance(v, int) and not isinstance(v, bool) else -1


def repair_tracking(
    study: optuna.Study,
    spec: StudySpec,
    tracker: Tracker,
    owned: Callable[[TrialRecord], bool] = lambda r: True,
    after: int | None = None,
) -> Repaired:
    """Make the MLflow run of every finished trial that `owned` accepts agree with Optuna
    (see the module), for the trials numbered after `after` (default: the study's mark,
    `tracked_through`; -1 checks every trial). The runs of a few trials are looked up one by
    one, not the parent's whole list. The tracker's parent run must be open (``start_study``)."""
    result = Repaired()
    after = tracked_through(study) if after is None else after
    todo = []
    for t in study.get_trials(deepcopy=False):
        result.last = max(result.last, t.number)
        if t.number <= after:
            continue
        record = TrialRecord.of(t)
        if not record.finished:
            result.unchecked.append(record.number)
        elif not owned(record):
            result.skipped.append(record.number)
            result.unchecked.append(record.number)
        else:
            todo.append(record)
    if not todo:
        return result
    numbers = [r.number for r in todo]
    runs = tracker.trial_runs(numbers if len(numbers) <= MAX_SEARCHES else None)
    metric = objective_metric(spec)
    for record in todo:
        run = runs.get(record.number)
        if not needs_repair(record, run):
            continue
        result.points += tracker.repair_trial(record, metric, run)
        (result.created if run is None else result.fixed).append(record.number)
    return result


def mark_tracked(study: optuna.Study, lease: Lease, checked: Repaired | None) -> int:
    """After a clean end (every MLflow write delivered): move the study's mark up to the last
    trial before the first one not known complete: unfinished, or (several drivers) another
    driver's that this driver's reconciliation (`checked`) did not look at. Returns it."""
    mark = old = tracked_through(study)
    unchecked = set(checked.unchecked) if checked is not None else set()
    seen_at_start = checked.last if checked is not None else -1
    for t in study.get_trials(deepcopy=False):
        if t.number <= mark:
            continue
        if not t.state.is_finished() or t.number in unchecked:
            break
        theirs = lease.shared and t.user_attrs.get(TrialAttr.DRIVER) not in (None, lease.driver)
        if theirs and t.number > seen_at_start:
            break
        mark = t.number
    if mark != old:
        study.set_user_attr(StudyAttr.TRACKED, mark)
    return mark


def counted(study: optuna.Study) -> int:
    return sum(TrialRecord.of(t).counted for t in study.get_trials(deepcopy=False))


def sync(name: str, storage: str | None, tracking_uri: str) -> Repaired:
    """`study sync NAME`: fill the MLflow record of study `name` in from its Optuna storage,
    without a driver running it; then close a parent run a driver left RUNNING (FINISHED when
    the study reached its target, else KILLED)."""
    check_tracking(tracking_uri)
    study, spec, url = optuna_storage.load_stored(name, storage)
    attrs = study.user_attrs
    if is_local_file(url):
        others = live_drivers(attrs, but=driver_id())
        if others:
            raise SpecError(
                f"study {name!r} is being run by process {others[0].rpartition(':')[2]} on this machine; sync it once that ends"
            )
    last = beats(attrs)

    def owned(r: TrialRecord) -> bool:
        return r.driver is None or is_gone(r.driver, last)

    parent = attrs.get(StudyAttr.PARENT_RUN)
    tracker = MlflowTracker(tracking_uri)
    try:
        uid = attrs.get(StudyAttr.UID, "")
        tracker.start_study(spec.name, optuna_storage.spec_record(spec), parent, uid, live=False, under=nest_under(spec, url))
        if tracker.parent_id != parent:
            study.set_user_attr(StudyAttr.PARENT_RUN, tracker.parent_id)
        result = repair_tracking(study, spec, tracker, owned, after=-1)  # a sync checks every trial
        result.parent_closed = _close_parent(study, spec, tracker, last)
    finally:
        tracker.close()
    return result


def _close_parent(study: optuna.Study, spec: StudySpec, tracker: Tracker, last: Mapping[str, Any]) -> bool:
    if live_drivers({StudyAttr.BEAT + d: b for d, b in last.items()}, but=driver_id()):
        return False
    if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return False
    n = counted(study)
    return tracker.close_parent("FINISHED" if n >= spec.trials else "KILLED", {"finished": float(n)}, n)
