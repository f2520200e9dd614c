"""Launch and resume: open the stores and Ray, reconcile what a previous driver left, drive.

`prepare` (study.run.prepare) has checked everything that bad input can fail; `run_study`
then creates or loads the Optuna study, opens the MLflow writer and the executor, settles
what a killed driver left (`study.run.reconcile`), runs the `Driver` and closes the study's
MLflow parent run with a summary. `launch` is the Python entry point of ``study launch``.

MLflow failing does not stop a study (`study.stores.writer`): when the study ends, whatever
MLflow missed is filled in from Optuna by the same reconciliation as ``study sync``; if MLflow
still fails then, one line says which ``study sync`` command repairs it later. `RunResult`
says what is true at the end (`RunResult.mlflow_complete`, `RunResult.succeeded`,
`RunResult.budget_reached`), and the CLI words its summary and exit code from it.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from study.record import StudyAttr, TrialAttr, TrialRecord, spec_differences, stored_spec
from study.run.code import code_mode, remember_code, worker_code
from study.run.design import Conclude, decisions_for, nest_under
from study.run.driver import Driver, Listener
from study.run.executor import Executor
from study.run.lease import Lease, beats, driver_id, live_drivers
from study.run.prepare import Prepared, prepare
from study.run.reconcile import mark_tracked, release_orphans, repair_tracking
from study.run.samplers import make_pruner, make_sampler, pause_epochs
from study.run.tally import Tally
from study.spec import SpecError, StudySpec, load_spec, parse_spec
from study.stores import optuna_storage
from study.stores.tracker import MlflowTracker, Tracker, TrackingFailure
from study.stores.uris import is_local_file, mask, with_env_defaults
from study.stores.writer import TrackerProcess

ExecutorFactory = Callable[[Prepared], tuple[Executor, Callable[[], None]]]
_ERROR_DETAIL = re.compile(r"\s*\([^()]*\)\s*$")


@dataclass
class RunResult:
    """What `run_study` did: the study, whether it finished (False: interrupted), the driver,
    the study's figures at the end (`tally`), whether the time budget stopped it, and what
    MLflow missed: writes lost during the study (`mlflow_lost`, a lower bound: a writer
    process that died counts one, whatever it had not written yet), runs filled in from
    Optuna at the end (`mlflow_repaired`), whether MLflow now has every trial, and what the
    study concluded (`verdict`: a comparison's; None otherwise)."""

    study: optuna.Study
    finished: bool
    driver: Driver
    tally: Tally
    budget_reached: bool = False
    mlflow_lost: int = 0
    mlflow_repaired: int = 0
    mlflow_complete: bool = True
    verdict: dict[str, Any] | None = None

    @property
    def succeeded(self) -> int:
        """Finished trials of the study that completed (or stopped early): they have a value."""
        return self.tally.succeeded

    def common_error(self) -> tuple[str, int] | None:
        """The most common error of the study's failed trials and how many had it (errors
        that differ only in a closing parenthesis, such as the epoch, count as one)."""
        errors = collections.Counter(
            _ERROR_DETAIL.sub(
                "", str(r.attrs.get(TrialAttr.ERROR) or r.attrs.get(TrialAttr.STOP_REASON) or "unknown").splitlines()[0]
            )
            for r in map(TrialRecord.of, self.study.get_trials(deepcopy=False))
            if r.counted and r.state == optuna.trial.TrialState.FAIL
        )
        return errors.most_common(1)[0] if errors else None


def study_command() -> str:
    """The ``study`` command as it can be typed here: ``study`` when PATH finds this one,
    else its path (``.venv/bin/study`` after ``make study``), else ``python -m study.cli``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    exe = argv0 if os.path.basename(argv0) == "study" else os.path.join(os.path.dirname(sys.executable), "study")
    if not os.path.isfile(exe):
        return f"{sys.executable} -m study.cli"
    found = shutil.which("study")
    if found and os.path.samefile(found, exe):
        return "study"
    try:
        rel = os.path.relpath(exe)
    except OSError:  # the working folder is gone (a Ray job's unpacked working_dir can be removed under it)
        return os.path.abspath(exe) if os.path.isabs(exe) else exe
    return rel if not rel.startswith("..") else os.path.abspath(exe)


def duration(seconds: float) -> str:
    """``90s``, ``30m``, ``2h``, ``1h30m`` for a number of seconds."""
    s = int(round(seconds))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def ray_executor(address: str | None) -> ExecutorFactory:
    """A factory starting (or joining) Ray and returning a `RayExecutor` and its cleanup."""

    def make(prep: Prepared) -> tuple[Executor, Callable[[], None]]:
        from study.run.ray_executor import RayExecutor, start_ray, stop_ray

        spec = prep.spec
        code, env = worker_code(prep.code, spec, code_mode(address)) if prep.code else (None, None)
        try:
            started = start_ray(address, threads=max(1, int(spec.resources.cpus)), runtime_env=env)
        except ValueError as e:  # Ray refused to package the code's folder (over its size limit)
            if not env or prep.code is None:
                raise
            shipped = env.get("working_dir") or env.get("py_modules")
            raise SpecError(f"field {prep.code.role}: cannot ship {shipped} to the cluster: {e}") from None
        if env and not started and prep.code:  # a Ray this process had joined already cannot carry it: workers read the files
            code, env = worker_code(prep.code, spec, "local")
        ex = RayExecutor(
            prep.data, backend=spec.backend, device=spec.device, cpus=spec.resources.cpus, gpus=spec.resources.gpus,
            code=code, local=not address or address == "local", pause_at=pause_epochs(spec, prep.space),
        )  # fmt: skip

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
            return optuna_storage.create_study(spec, url, make_sampler(spec), make_pruner(spec, prep.space)), True
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
    study = optuna.load_study(
        study_name=spec.name, storage=storage, sampler=make_sampler(spec, n), pruner=make_pruner(spec, prep.space)
    )
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
    retry_seconds: float = 60.0,
    conclude: Conclude | None = None,
) -> RunResult:
    """Create or load the study and drive it to its target number of finished trials.

    MLflow is written by a `TrackerProcess`; ``inline_tracking`` writes from this thread
    instead (unit tests: no second interpreter to start). A failing MLflow write is retried
    for up to `retry_seconds` before it is dropped (and filled in at the end).
    `conclude(study, spec)` (a comparison's verdict: `study.query.verdict_report.conclude`)
    runs once the study has finished; what it returns is recorded on the MLflow parent run
    and in the result."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ex, cleanup = (executor or ray_executor(None))(prep)
    try:
        check = getattr(ex, "check_resources", None)
        if check is not None:
            check()  # before anything is written: a trial that can never be placed is bad input
        concurrency = min(prep.spec.concurrency or ex.capacity(), prep.spec.trials)
        warm = getattr(ex, "warm", None)  # trial slots come up while the study and its writer open
        if warm is not None:
            warm(concurrency)
        study, is_new = open_study(prep, resume=resume)
        remember_code(study, prep.code, say)

        def keep_parent(run_id: str) -> None:
            if study.user_attrs.get(StudyAttr.PARENT_RUN) != run_id:
                study.set_user_attr(StudyAttr.PARENT_RUN, run_id)

        tracker: Tracker
        if inline_tracking:
            tracker = MlflowTracker(
                prep.spec.tracking_uri, flush_seconds=flush_seconds, on_parent=keep_parent, retry_seconds=retry_seconds
            )
        else:
            tracker = TrackerProcess(
                prep.spec.tracking_uri,
                flush_seconds=flush_seconds,
                on_parent=keep_parent,
                on_warning=lambda text: say(f"warning: {text}"),
                retry_seconds=retry_seconds,
                sync_hint=f"{study_command()} sync {prep.spec.name}",
            )
        try:
            return _drive(prep, study, is_new, tracker, ex, concurrency, listener=listener, say=say, conclude=conclude)
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
    concurrency: int,
    *,
    listener: Listener | None,
    say: Callable[[str], None],
    conclude: Conclude | None = None,
) -> RunResult:
    spec = prep.spec
    attrs = study.user_attrs
    tracker.start_study(
        spec.name, optuna_storage.spec_record(spec), attrs.get(StudyAttr.PARENT_RUN), attrs.get(StudyAttr.UID, ""),
        start_time=time.time(),
        under=nest_under(spec, prep.storage_url),
    )  # fmt: skip
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
        decisions = decisions_for(study, spec, prep.space, prep.data, lease)
        tally = Tally(study, spec, shared=lease.shared)
        queue = getattr(ex, "queue_ahead", None)  # trials the executor can hold until a slot frees
        queued = queue(concurrency) if queue is not None else 0
        driver = Driver(decisions, ex, tracker, concurrency=concurrency, listener=listener, tally=tally, queued=queued)
        finished = driver.run()
        tally.load()  # the final figures, every driver's trials included
        verdict = conclude(study, spec) if finished and conclude is not None else None
        if verdict is not None:
            tracker.record_verdict(verdict)
        status = "FINISHED" if finished else "KILLED"
        ended = driver.ended_at or time.time()
        lost = tracker.end_study(status, tally.metrics(), tally.finished, ended)
        result = RunResult(
            study, finished, driver, tally, budget_reached=driver.budget_reached, mlflow_lost=lost, verdict=verdict
        )
        if lost:
            _repair_at_end(result, spec, tracker, lease, status, ended, say)
        if driver.budget_reached:
            say(
                f"time budget of {duration(spec.time_budget or 0)} reached: no trial started after it, the trials running "
                f"then finished; {tally.finished} of {spec.trials} trials are finished. "
                f"Continue with: {study_command()} resume {spec.name}"
            )
        if not lost:
            mark_tracked(study, lease, repaired)  # a resume checks the runs of later trials only
        lease.beat(ended=True)
        optuna_storage.save_snapshot(study)  # the next `study status` or resume reads the journal from here
        return result
    finally:
        lease.close()


def _repair_at_end(
    result: RunResult, spec: StudySpec, tracker: Tracker, lease: Lease, status: str, ended: float, say: Callable[[str], None]
) -> None:
    """MLflow missed writes during the study: fill it in from Optuna now (the reconciliation
    of ``study sync``), or say in one line how to do it later."""
    study, tally = result.study, result.tally
    try:
        last = beats(study.user_attrs)
        repaired = repair_tracking(study, spec, tracker, lambda r: lease.owns(r, last))
        tracker.close_parent(status, tally.metrics(), tally.finished, ended)  # if closing it was lost too
        best = result.driver.best_file
        run = tracker.trial_runs([best[0]]).get(best[0]) if best is not None else None
        if best is not None and run is not None:  # the weights file may have been lost too: Optuna cannot restore it
            tracker.log_file(*best, run_id=run.run_id)
    except TrackingFailure as e:
        result.mlflow_complete = False
        say(
            f"MLflow ({mask(spec.tracking_uri)}) missed writes during the study and cannot be repaired now ({e}); "
            f"Optuna has every result. Once MLflow works, fill it in with: {study_command()} sync {spec.name}"
        )
        return
    result.mlflow_repaired = len(repaired.created) + len(repaired.fixed)
    say(
        f"MLflow missed writes during the study; filled in from Optuna: {result.mlflow_repaired} run(s) "
        "(an epoch MLflow missed has the objective metric only; such runs are tagged hpstudy.synced)"
    )


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
    conclude: Conclude | None = None,
    **overrides: Any,
) -> RunResult:
    """Python entry point of `study launch`: a spec file, mapping or `StudySpec`, with the
    CLI's overrides (``trials=``, ``concurrency=``, ``storage=``, ``tracking_uri=``); storage
    and tracking URI fall back to ``HPSTUDY_STORAGE`` / ``MLFLOW_TRACKING_URI`` as in the CLI.
    For a comparison pass ``conclude=study.query.verdict_report.conclude`` to state and record
    its verdict (``study.load(name).verdict()`` computes it afterwards either way).

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
    return run_study(prep, executor=ray_executor(address), listener=listener, say=say, conclude=conclude)


class _CallableModule(types.ModuleType):
    """This module, callable as `launch`: ``from study.run import launch`` gives the module
    once Python has imported it under that name (a submodule shadows the package's lazy
    attribute), so ``launch(spec)`` works either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> RunResult:
        return launch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
