"""Launch and resume: open the stores and Ray, reconcile what a previous driver left, drive.

`prepare` (study.run.prepare) has checked everything that bad input can fail; `run_study`
then creates or loads the Optuna study, opens the MLflow writer and the executor, settles
what a killed driver left (`study.run.reconcile`), runs the `Driver` and closes the study's
MLflow parent run with a summary. `launch` is the Python entry point of ``study launch``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from study.record import StudyAttr, TrialRecord, spec_differences, stored_spec
from study.run.decisions import Decisions
from study.run.driver import Driver, Listener
from study.run.executor import Executor
from study.run.lease import Lease, beats, driver_id, live_drivers
from study.run.prepare import Prepared, prepare
from study.run.reconcile import mark_tracked, release_orphans, repair_tracking
from study.run.samplers import make_pruner, make_sampler
from study.spec import SpecError, StudySpec, load_spec, parse_spec
from study.stores import optuna_storage
from study.stores.tracker import MlflowTracker, Tracker
from study.stores.uris import is_local_file, mask, with_env_defaults
from study.stores.writer import TrackerProcess

ExecutorFactory = Callable[[Prepared], tuple[Executor, Callable[[], None]]]


@dataclass
class RunResult:
    """What `run_study` did: the study, whether it finished (False: interrupted) and the driver."""

    study: optuna.Study
    finished: bool
    driver: Driver


def ray_executor(address: str | None) -> ExecutorFactory:
    """A factory starting (or joining) Ray and returning a `RayExecutor` and its cleanup."""

    def make(prep: Prepared) -> tuple[Executor, Callable[[], None]]:
        from study.run.ray_executor import RayExecutor, start_ray, stop_ray

        spec = prep.spec
        started = start_ray(address, threads=max(1, int(spec.resources.cpus)))
        ex = RayExecutor(prep.data, backend=spec.backend, device=spec.device, cpus=spec.resources.cpus, gpus=spec.resources.gpus)

        def cleanup() -> None:
            ex.close()
            if started:
                stop_ray()

        return ex, cleanup

    return make


def open_study(prep: Prepared, *, resume: bool) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists (resume, or a launch of the same spec).
    Returns (study, is_new)."""
    spec, url = prep.spec, prep.storage_url
    storage = optuna_storage.open_storage(url)  # opened once: a journal is replayed once
    names = optuna_storage.study_names(url, storage)
    exists = spec.name in names
    if resume and not exists:
        raise optuna_storage.no_such_study(spec.name, url, names)
    if not exists:
        try:
            return optuna_storage.create_study(spec, url, make_sampler(spec), make_pruner(spec)), True
        except optuna.exceptions.DuplicatedStudyError:  # another driver created it just now
            return open_study(prep, resume=resume)
    probe = optuna.load_study(study_name=spec.name, storage=storage)
    attrs = probe.user_attrs
    diff = spec_differences(stored_spec(attrs) or {}, optuna_storage.spec_record(spec))
    if diff and not resume:
        raise SpecError(
            f"study {spec.name!r} already exists with a different {', '.join(diff)}; "
            f"run `study resume {spec.name}` to continue it, or give the new study another name"
        )
    others = live_drivers(attrs, but=driver_id()) if is_local_file(url) else []
    if others:  # a database server lets several drivers share a study (see study.run.lease)
        raise SpecError(
            f"study {spec.name!r} is being run by process {others[0].rpartition(':')[2]} on this machine; stop it first "
            "(a study in a PostgreSQL or MySQL storage can have several drivers)"
        )
    n = len(probe.get_trials(deepcopy=False))
    study = optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec, n), pruner=make_pruner(spec))
    return study, False


def run_study(
    prep: Prepared,
    *,
    resume: bool = False,
    executor: ExecutorFactory | None = None,
    listener: Listener | None = None,
    say: Callable[[str], None] = print,
    flush_seconds: float = 2.0,
    inline_tracking: bool = False,
) -> RunResult:
    """Create or load the study and drive it to its target number of finished trials.

    MLflow is written by a `TrackerProcess`; ``inline_tracking`` writes from this thread
    instead (unit tests: no second interpreter to start)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ex, cleanup = (executor or ray_executor(None))(prep)
    try:
        check = getattr(ex, "check_resources", None)
        if check is not None:
            check()  # before anything is written: a trial that can never be placed is bad input
        study, is_new = open_study(prep, resume=resume)

        def keep_parent(run_id: str) -> None:
            if study.user_attrs.get(StudyAttr.PARENT_RUN) != run_id:
                study.set_user_attr(StudyAttr.PARENT_RUN, run_id)

        tracker: Tracker
        if inline_tracking:
            tracker = MlflowTracker(prep.spec.tracking_uri, flush_seconds=flush_seconds, on_parent=keep_parent)
        else:
            tracker = TrackerProcess(prep.spec.tracking_uri, flush_seconds=flush_seconds, on_parent=keep_parent)
        try:
            return _drive(prep, study, is_new, tracker, ex, listener=listener, say=say)
        finally:
            tracker.close()
    finally:
        cleanup()


def _drive(
    prep: Prepared,
    study: optuna.Study,
    is_new: bool,
    tracker: Tracker,
    ex: Executor,
    *,
    listener: Listener | None,
    say: Callable[[str], None],
) -> RunResult:
    spec = prep.spec
    attrs = study.user_attrs
    tracker.start_study(
        spec.name, optuna_storage.spec_record(spec), attrs.get(StudyAttr.PARENT_RUN), attrs.get(StudyAttr.UID, "")
    )
    lease = Lease(study, None if is_local_file(prep.storage_url) else prep.storage_url)
    repaired = None
    try:
        if not is_new:
            left = release_orphans(study, lease)
            last = beats(study.user_attrs)
            repaired = repair_tracking(study, spec, tracker, lambda r: lease.owns(r, last))
            fixed = len(repaired.created) + len(repaired.fixed)
            if left or fixed:
                say(f"reconciled: {len(left)} trial(s) left running re-enqueued; {fixed} MLflow run(s) corrected")
        if spec.is_multi_objective:
            say(
                f"multi-objective study ({', '.join(o.metric for o in spec.all_objectives)}): pruning is off, Optuna prunes single-objective studies only"
            )
        decisions = Decisions(study, spec, prep.space, prep.data.n_features, prep.data.n_classes, lease)
        concurrency = min(spec.concurrency or ex.capacity(), spec.trials)
        queue = getattr(ex, "queue_ahead", None)  # trials the executor can hold until a slot frees
        queued = queue(concurrency) if queue is not None else 0
        driver = Driver(decisions, ex, tracker, concurrency=concurrency, listener=listener, queued=queued)
        finished = driver.run()
        counted = sum(TrialRecord.of(t).counted for t in study.get_trials(deepcopy=False))
        summary = {"finished": float(counted)}
        if driver.best is not None:
            summary["best_value"] = driver.best[1][0]
        lost = tracker.end_study("FINISHED" if finished else "KILLED", summary, counted)
        if lost:
            say(
                f"MLflow ({mask(spec.tracking_uri)}) was unreachable for part of the study: {lost} write(s) were "
                f"not delivered (Optuna has every result). Once it is back, fill MLflow in with: study sync {spec.name}"
            )
        if not lost:
            mark_tracked(study, lease, repaired)  # a resume checks the runs of later trials only
        lease.beat(ended=True)
        optuna_storage.save_snapshot(study)  # the next `study status` or resume reads the journal from here
        return RunResult(study, finished, driver)
    finally:
        lease.close()


def local_storage_warning(storage_url: str, address: str | None) -> str | None:
    """The warning for a study driven on a Ray cluster whose Optuna storage is a file on this
    machine (journal or SQLite): it works (the driver is the only writer) but cannot be
    shared with a driver elsewhere. None when there is nothing to say."""
    if not address or address == "local" or not is_local_file(storage_url):
        return None
    return (
        f"warning: the Optuna storage {mask(storage_url)!r} is a file on this machine's disk: the study runs on "
        f"the cluster at {address}, but a second driver elsewhere cannot share it, and it is lost with this machine; "
        "use a PostgreSQL URL (--storage or HPSTUDY_STORAGE) to share a study"
    )


def spec_from_storage(name: str, storage: str | None) -> StudySpec:
    """The spec a stored study was launched with (for `study resume NAME`)."""
    return optuna_storage.load_stored(name, storage)[1]


def launch(
    spec: str | os.PathLike[str] | dict[str, Any] | StudySpec,
    *,
    address: str | None = None,
    listener: Listener | None = None,
    **overrides: Any,
) -> RunResult:
    """Python entry point of `study launch`: a spec file, mapping or `StudySpec`, with the
    CLI's overrides (``trials=``, ``concurrency=``, ``storage=``, ``tracking_uri=``); storage
    and tracking URI fall back to ``HPSTUDY_STORAGE`` / ``MLFLOW_TRACKING_URI`` as in the CLI.

    >>> from study.run import launch
    >>> result = launch("study/examples/quickstart.yaml", trials=4)  # doctest: +SKIP
    >>> result.study.best_trial.params  # doctest: +SKIP
    """
    if isinstance(spec, StudySpec):
        parsed = spec
    elif isinstance(spec, dict):
        parsed = parse_spec(spec)
    else:
        parsed = load_spec(spec)
    parsed = with_env_defaults(parsed, overrides.get("storage"), overrides.get("tracking_uri"))
    prep = prepare(parsed.with_overrides(**overrides))

    def say(msg: str) -> None:
        print(msg, file=sys.stderr)

    warning = local_storage_warning(prep.storage_url, address)
    if warning:
        say(warning)
    return run_study(prep, executor=ray_executor(address), listener=listener, say=say)
