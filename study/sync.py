"""`study sync NAME`: fill MLflow in from Optuna storage, the study's source of truth.

After an MLflow outage (the driver goes on without MLflow, see `study.tracking_process`) or
anything else that left MLflow behind, every *finished* trial gets exactly one complete run:

- a trial without a run gets one: its configuration as params (rebuilt from the trial's
  parameters by the study's search space), tags ``trial_number``, ``state``,
  ``stop_reason``, ``seed`` (...), the summary metrics Optuna has (``objective``,
  ``stopped_epoch``, ``best_epoch``, ``n_params``), and the status matching its state;
- a run left RUNNING, or whose state or stop reason disagrees, gets its trial's;
- per-epoch curves: Optuna keeps one intermediate value per epoch of the *objective metric
  only* (single-objective studies), so only that metric's missing epochs are filled in. The
  other metrics of epochs that were never delivered are lost; such runs carry the tag
  ``hpstudy.synced = true``.

Idempotent: a second sync finds every run complete and writes nothing. Trials still running,
or owned by a driver that is still alive, are left to their driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study import engine
from study import storage as storage_mod
from study.decisions import BEAT_ATTR, driver_gone
from study.outcomes import mlflow_status
from study.spec import SpecError, StudySpec
from study.tracking import PARENT_TAG, Tracker, flatten

TAG_ATTRS = ("stop_reason", "error", "seed", "attempt", "retry_of", "reconciled")
SUMMARY_ATTRS = ("stopped_epoch", "best_epoch", "n_params")


@dataclass
class SyncResult:
    created: list[int] = field(default_factory=list)  # trials that had no run
    fixed: list[int] = field(default_factory=list)  # runs whose status/tags/metrics were completed
    points: int = 0  # epoch points of the objective metric filled in
    skipped: list[int] = field(default_factory=list)  # finished trials of a live driver
    parent_closed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.fixed or self.points or self.parent_closed)


def sync(name: str, storage: str | None, tracking_uri: str | None = None) -> SyncResult:
    """Fill the MLflow record of study `name` in from its Optuna storage (see the module)."""
    spec = engine.spec_from_storage(name, storage)
    uri = tracking_uri or spec.tracking_uri
    if "***" in uri:
        raise SpecError(f"the stored tracking URI {uri!r} had a password: pass it with --tracking-uri or MLFLOW_TRACKING_URI")
    from study import tracking

    tracking.check(uri)
    url = storage_mod.check(storage, must_exist=True)
    study = optuna.load_study(study_name=name, storage=storage_mod.open_storage(url))
    if storage_mod.is_local_file(url):
        pid = engine._driver_alive(study)
        if pid is not None:
            raise SpecError(f"study {name!r} is being run by process {pid} on this machine; sync it once that ends")
    tracker = Tracker(uri)
    try:
        return _sync(study, spec, tracker)
    finally:
        tracker.close()


def _sync(study: optuna.Study, spec: StudySpec, tracker: Tracker) -> SyncResult:
    result = SyncResult()
    client = tracker.client
    _find_parent(study, spec, tracker)
    runs = tracker.trial_runs()
    attrs = study.user_attrs
    beats = {k.removeprefix(BEAT_ATTR): v for k, v in attrs.items() if k.startswith(BEAT_ATTR)}
    metric = None if spec.is_multi_objective else spec.objective.metric
    rebuild = _config_builder(spec)
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        owner = t.user_attrs.get("driver")
        if beats and owner is not None and not driver_gone(owner, beats):
            result.skipped.append(t.number)
            continue
        run = runs.get(t.number)
        if run is None:
            run_id = _create(tracker, t, rebuild(t))
            result.created.append(t.number)
            result.points += _fill_curve(client, run_id, t, metric)
            _finish(client, run_id, t, metric, set())
            continue
        fixed = run["status"] != mlflow_status(t.state) or run["state"] != t.state.name
        points = _fill_curve(client, run["run_id"], t, metric)
        current = client.get_run(run["run_id"])
        missing = {k for k in _summary(t, metric) if k.startswith("objective") and k not in current.data.metrics}
        fixed = fixed or current.data.tags.get("stop_reason") != str(t.user_attrs.get("stop_reason")) or bool(missing)
        if fixed or points:
            _finish(client, run["run_id"], t, metric, set(current.data.metrics))
            result.fixed.append(t.number)
            result.points += points
    result.parent_closed = _close_parent(study, spec, tracker, beats)
    return result


def _find_parent(study: optuna.Study, spec: StudySpec, tracker: Tracker) -> None:
    """The study's experiment and parent run, as the driver made them (or made now)."""
    client = tracker.client
    exp = client.get_experiment_by_name(spec.name)
    if exp is None:
        tracker.experiment_id = client.create_experiment(spec.name, tags={"hpstudy.study": spec.name})
    else:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        tracker.experiment_id = exp.experiment_id
    parent = study.user_attrs.get(engine.PARENT_ATTR)
    uid = study.user_attrs.get(engine.UID_ATTR, "")
    if not parent and uid:
        found = client.search_runs([tracker.experiment_id], filter_string=f"tags.`hpstudy.study_uid` = '{uid}'", max_results=1)
        parent = found[0].info.run_id if found else None
    if parent:
        tracker.parent_id = parent
        return
    record = engine.stored_spec(study) or {}
    run = client.create_run(
        tracker.experiment_id,
        run_name=spec.name,
        tags={"hpstudy.role": "study", "hpstudy.study_uid": uid, "hpstudy.synced": "true"},
    )
    tracker.parent_id = run.info.run_id
    from mlflow.entities import Param

    params = [Param(k, v) for k, v in flatten(record).items()]
    for i in range(0, len(params), 100):
        client.log_batch(tracker.parent_id, params=params[i : i + 100])
    study.set_user_attr(engine.PARENT_ATTR, tracker.parent_id)


def _config_builder(spec: StudySpec) -> Any:
    """trial -> its configuration's params, rebuilt by the space; the sampled parameters alone
    when the space or dataset cannot be loaded here."""
    try:
        from trainers import load_dataset

        space = engine._load_space(spec.space)
        ds = spec.dataset
        data = load_dataset(ds.name, val=ds.val, test=ds.test, seed=ds.seed, label_column=ds.label_column, **ds.args)
    except Exception:  # noqa: BLE001 - params from Optuna are still right, only fewer
        return lambda t: dict(t.params)

    def build(t: FrozenTrial) -> dict[str, Any]:
        try:
            fixed_trial = optuna.trial.FixedTrial(dict(t.params), number=t.number)
            config = space.suggest(fixed_trial, overrides=dict(spec.fixed), n_inputs=data.n_features, n_classes=data.n_classes)
            if "seed" not in spec.fixed and "seed" in t.user_attrs:
                config = config.replace(seed=int(t.user_attrs["seed"]))
            return dict(config.to_dict())
        except Exception:  # noqa: BLE001
            return dict(t.params)

    return build


def _tags(t: FrozenTrial) -> dict[str, str]:
    tags = {"state": t.state.name}
    tags.update({k: str(t.user_attrs[k])[:4000] for k in TAG_ATTRS if k in t.user_attrs})
    placement = t.user_attrs.get("placement")
    if isinstance(placement, dict):
        tags.update({k: str(v) for k, v in placement.items()})
    return tags


def _create(tracker: Tracker, t: FrozenTrial, params: dict[str, Any]) -> str:
    from mlflow.entities import Param

    client = tracker.client
    tags = {PARENT_TAG: tracker.parent_id, "trial_number": str(t.number), "hpstudy.synced": "true", **_tags(t)}
    start = int(t.datetime_start.timestamp() * 1000) if t.datetime_start else None
    run = client.create_run(tracker.experiment_id, start_time=start, run_name=f"trial-{t.number}", tags=tags)
    flat = [Param(k, v) for k, v in flatten(params).items()]
    for i in range(0, len(flat), 100):
        client.log_batch(run.info.run_id, params=flat[i : i + 100])
    return str(run.info.run_id)


def _summary(t: FrozenTrial, metric: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in SUMMARY_ATTRS:
        v = t.user_attrs.get(k)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    if t.state == TrialState.COMPLETE and t.values:
        for i, v in enumerate(t.values):
            out["objective" if i == 0 else f"objective_{i}"] = float(v)
    best = t.user_attrs.get("best_epoch")
    if metric is not None and best in t.intermediate_values:
        out[f"best_{metric}"] = float(t.intermediate_values[best])
    return out


def _fill_curve(client: Any, run_id: str, t: FrozenTrial, metric: str | None) -> int:
    """Log the objective metric's epochs Optuna has and MLflow lacks; returns how many."""
    if metric is None or not t.intermediate_values:
        return 0
    from mlflow.entities import Metric

    have = {m.step for m in client.get_metric_history(run_id, metric)}
    when = t.datetime_complete or t.datetime_start
    ts = int(when.timestamp() * 1000) if when is not None else 0
    missing = [Metric(metric, float(v), ts, int(step)) for step, v in sorted(t.intermediate_values.items()) if step not in have]
    for i in range(0, len(missing), 1000):
        client.log_batch(run_id, metrics=missing[i : i + 1000])
    if missing:
        client.set_tag(run_id, "hpstudy.synced", "true")
    return len(missing)


def _finish(client: Any, run_id: str, t: FrozenTrial, metric: str | None, have: set[str]) -> None:
    """The trial's summary metrics (those missing), tags and final status on its run."""
    from mlflow.entities import Metric, RunTag

    step = int(t.user_attrs.get("stopped_epoch", 0) or 0)
    ts = int(t.datetime_complete.timestamp() * 1000) if t.datetime_complete else 0
    metrics = [Metric(k, v, ts, step) for k, v in _summary(t, metric).items() if k not in have]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in _tags(t).items()])
    client.set_terminated(run_id, status=mlflow_status(t.state), end_time=ts or None)


def _close_parent(study: optuna.Study, spec: StudySpec, tracker: Tracker, beats: dict[str, Any]) -> bool:
    """A parent run left RUNNING by a driver that ended while MLflow was down is closed:
    FINISHED when the study reached its target, else KILLED. Not while a driver runs."""
    from mlflow.entities import Metric

    client = tracker.client
    parent = client.get_run(tracker.parent_id)
    live = [d for d in beats if not driver_gone(d, beats)]
    if parent.info.status != "RUNNING" or live or engine._driver_alive(study) is not None:
        return False
    if any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False)):
        return False
    from study.decisions import is_counted

    counted = sum(is_counted(t) for t in study.get_trials(deepcopy=False))
    client.log_batch(tracker.parent_id, metrics=[Metric("finished", float(counted), 0, 0)])
    client.set_terminated(tracker.parent_id, status="FINISHED" if counted >= spec.trials else "KILLED")
    return True
