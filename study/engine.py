"""Launch and resume: check everything, then open storage, MLflow and Ray, and drive.

`prepare` does every check that can fail on bad input (spec, storage URL, tracking URI,
space, dataset, sampler, fixed values, enqueued configurations, grid) and writes nothing;
only then does `run` create the Optuna study, the MLflow experiment and start Ray.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import yaml

from study import storage as storage_mod
from study import tracking
from study.decisions import Decisions, is_counted, make_pruner, make_sampler
from study.driver import Driver, Listener
from study.executors import Executor
from study.outcomes import mlflow_status
from study.spec import SpecError, StudySpec, parse_spec
from study.tracking_process import TrackerProcess
from trainers import DataError, Dataset, load_dataset

SPEC_ATTR = "hpstudy.spec"
PARENT_ATTR = "hpstudy.mlflow_parent_run_id"
DRIVER_ATTR = "hpstudy.driver"
UID_ATTR = "hpstudy.uid"  # also a tag of the MLflow parent run, which it finds on resume
#: Fields that may differ between a launch and the study already stored under its name.
RUN_FIELDS = ("trials", "concurrency", "storage", "tracking_uri")


@dataclass
class Prepared:
    """A checked spec with its loaded space and dataset; nothing written yet."""

    spec: StudySpec
    storage_url: str
    space: Any
    data: Dataset


def prepare(spec: StudySpec) -> Prepared:
    """Every check that bad input can fail, before anything is created. Raises SpecError."""
    url = storage_mod.check(spec.storage)
    tracking.check(spec.tracking_uri)
    space = _load_space(spec.space)
    try:
        ds = spec.dataset
        data = load_dataset(ds.name, val=ds.val, test=ds.test, seed=ds.seed, label_column=ds.label_column, **ds.args)
    except DataError as e:
        raise SpecError(f"field dataset: {e}") from None
    make_sampler(spec)
    make_pruner(spec)
    _dry_run(spec, space, data)
    return Prepared(spec, url, space, data)


def _load_space(name: str) -> Any:
    import search_spaces

    try:
        return search_spaces.load(name)
    except search_spaces.SpaceError as e:
        raise SpecError(f"field space: {e}") from None
    except (ImportError, AttributeError, OSError, ValueError) as e:
        raise SpecError(
            f"field space: cannot load {name!r} ({e}); built-in spaces: {', '.join(search_spaces.builtin())}"
        ) from None


def _dry_run(spec: StudySpec, space: Any, data: Dataset) -> None:
    """Sample the space in a throwaway in-memory study: `fixed` must give valid configs,
    every enqueued configuration must be one of the space's, the grid must cover it."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    kw = {"overrides": dict(spec.fixed), "n_inputs": data.n_features, "n_classes": data.n_classes}
    try:
        space.with_fixed(dict(spec.fixed))
    except ValueError as e:
        raise SpecError(f"field fixed: {e}") from None
    for i, params in enumerate(spec.enqueue):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.enqueue_trial(params)
        trial = study.ask()
        try:
            space.suggest(trial, **kw)
        except ValueError as e:
            raise SpecError(f"field enqueue[{i}]: {e}") from None
        unused = sorted(set(params) - set(trial.params))
        if unused:
            raise SpecError(
                f"field enqueue[{i}]: parameter(s) {unused} are not drawn by space {spec.space!r} for this configuration (it drew {sorted(trial.params)})"
            )
    sampler = make_sampler(spec) if spec.sampler.name == "grid" else optuna.samplers.RandomSampler(seed=spec.seed)
    study = optuna.create_study(sampler=sampler, directions=_directions(spec))
    errors = []
    for _ in range(5):
        try:
            space.suggest(study.ask(), **kw)
            return
        except ValueError as e:
            errors.append(str(e))
            if spec.sampler.name == "grid":
                raise SpecError(f"field sampler.grid: {e}") from None
    raise SpecError(f"field fixed: space {spec.space!r} with fixed {spec.fixed} gives no valid configuration: {errors[0]}")


def _directions(spec: StudySpec) -> list[optuna.study.StudyDirection]:
    return [
        optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else optuna.study.StudyDirection.MINIMIZE for d in spec.directions
    ]


# -- storage ---------------------------------------------------------------------------------
def stored_spec(study: optuna.Study) -> dict[str, Any] | None:
    raw = study.user_attrs.get(SPEC_ATTR)
    return json.loads(raw) if isinstance(raw, str) else raw


def _spec_record(spec: StudySpec) -> dict[str, Any]:
    d = spec.model_dump(mode="json")
    d["storage"] = None  # the storage is where this is kept; its URL may carry a password
    d["tracking_uri"] = storage_mod.mask(spec.tracking_uri)
    return d


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if k not in RUN_FIELDS and a.get(k) != b.get(k))


def _driver_alive(study: optuna.Study) -> int | None:
    d = study.user_attrs.get(DRIVER_ATTR) or {}
    pid = d.get("pid")
    if d.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"study" not in f.read():
                return None
    except OSError:
        pass
    return pid


def open_study(prep: Prepared, *, resume: bool) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists (resume, or a launch of the same spec).
    Returns (study, is_new)."""
    spec = prep.spec
    names = storage_mod.study_names(prep.storage_url)
    exists = spec.name in names
    if resume and not exists:
        raise SpecError(
            f"no study {spec.name!r} in storage {storage_mod.mask(prep.storage_url)!r} (studies there: {names or 'none'})"
        )
    storage = storage_mod.open_storage(prep.storage_url)
    if not exists:
        try:
            study = optuna.create_study(
                study_name=spec.name,
                storage=storage,
                sampler=make_sampler(spec),
                pruner=make_pruner(spec),
                directions=_directions(spec),
            )
        except optuna.exceptions.DuplicatedStudyError:  # another driver created it just now
            return open_study(prep, resume=resume)
        study.set_user_attr(SPEC_ATTR, _spec_record(spec))
        study.set_user_attr(UID_ATTR, uuid.uuid4().hex)
        for params in spec.enqueue:
            study.enqueue_trial(params, user_attrs={"enqueued": True})
    else:
        probe = optuna.load_study(study_name=spec.name, storage=storage)
        old = stored_spec(probe) or {}
        diff = _differences(old, _spec_record(spec))
        if diff and not resume:
            raise SpecError(
                f"study {spec.name!r} already exists with a different {', '.join(diff)}; "
                f"run `study resume {spec.name}` to continue it, or give the new study another name"
            )
        pid = _driver_alive(probe) if storage_mod.is_local_file(prep.storage_url) else None
        if pid is not None:  # a database server lets several drivers share a study (see study.decisions)
            raise SpecError(
                f"study {spec.name!r} is being run by process {pid} on this machine; stop it first "
                "(a study in a PostgreSQL or MySQL storage can have several drivers)"
            )
        n = len(probe.get_trials(deepcopy=False))
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec, n), pruner=make_pruner(spec))
    if storage_mod.is_local_file(prep.storage_url):
        study.set_user_attr(DRIVER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
    return study, not exists


def reconcile_tracking(
    study: optuna.Study, tracker: tracking.Tracker | TrackerProcess, mine: Callable[[Any], bool] | None = None
) -> int:
    """Make every trial's MLflow run agree with Optuna: runs left RUNNING get their trial's
    state and stop reason; finished trials without a run get one. Returns runs fixed.
    `mine(trial)`: only those trials (not another live driver's, whose writes are in flight)."""
    runs = tracker.trial_runs()
    fixed = 0
    for t in study.get_trials(deepcopy=False):
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL):
            continue
        if mine is not None and not mine(t):
            continue
        tags = {k: str(v) for k, v in t.user_attrs.items() if k in ("stop_reason", "error", "seed", "retry_of", "reconciled")}
        run = runs.get(t.number)
        if run is None:
            tracker.start_trial(t.number, dict(t.params), {})
            tracker.end_trial(t.number, t.state.name, mlflow_status(t.state), tags, {})
            fixed += 1
        elif run["status"] in ("RUNNING", "SCHEDULED") or run["state"] != t.state.name:
            tracker.fix_run(run["run_id"], t.state.name, mlflow_status(t.state), tags)
            fixed += 1
    return fixed


# -- run -------------------------------------------------------------------------------------
ExecutorFactory = Callable[[Prepared], tuple[Executor, Callable[[], None]]]


def ray_executor(address: str | None) -> ExecutorFactory:
    """A factory starting (or joining) Ray and returning a `RayExecutor` and its cleanup."""

    def make(prep: Prepared) -> tuple[Executor, Callable[[], None]]:
        import ray

        from study.ray_executor import RayExecutor, start_ray

        spec = prep.spec
        started = start_ray(address, threads=max(1, int(spec.resources.cpus)))
        ex = RayExecutor(prep.data, backend=spec.backend, device=spec.device, cpus=spec.resources.cpus, gpus=spec.resources.gpus)

        def cleanup() -> None:
            ex.close()
            if started:
                ray.shutdown()

        return ex, cleanup

    return make


@dataclass
class RunResult:
    """What `run` did: the study, whether it finished (False: interrupted) and the driver."""

    study: optuna.Study
    finished: bool
    driver: Driver


def run(
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
    spec = prep.spec
    ex, cleanup = (executor or ray_executor(None))(prep)
    try:
        check = getattr(ex, "check_resources", None)
        if check is not None:
            check()  # before anything is written: a trial that can never be placed is bad input
        study, is_new = open_study(prep, resume=resume)

        def keep_parent(run_id: str) -> None:
            if study.user_attrs.get(PARENT_ATTR) != run_id:
                study.set_user_attr(PARENT_ATTR, run_id)

        if inline_tracking:
            tracker: tracking.Tracker | TrackerProcess = tracking.Tracker(spec.tracking_uri, flush_seconds=flush_seconds)
            tracker.on_parent = keep_parent
        else:
            tracker = TrackerProcess(spec.tracking_uri, flush_seconds=flush_seconds, on_parent=keep_parent)
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
    tracker: tracking.Tracker | TrackerProcess,
    ex: Executor,
    *,
    listener: Listener | None,
    say: Callable[[str], None],
) -> RunResult:
    spec = prep.spec
    record = _spec_record(spec)
    attrs = study.user_attrs
    tracker.start_study(
        spec.name, record, yaml.safe_dump(record, sort_keys=False), attrs.get(PARENT_ATTR), attrs.get(UID_ATTR, "")
    )
    shared = None if storage_mod.is_local_file(prep.storage_url) else prep.storage_url
    decisions = Decisions(study, spec, prep.space, prep.data.n_features, prep.data.n_classes, shared_url=shared)
    try:
        return _drive_with(prep, study, is_new, tracker, ex, decisions, listener=listener, say=say)
    finally:
        decisions.close()


def _drive_with(
    prep: Prepared,
    study: optuna.Study,
    is_new: bool,
    tracker: tracking.Tracker | TrackerProcess,
    ex: Executor,
    decisions: Decisions,
    *,
    listener: Listener | None,
    say: Callable[[str], None],
) -> RunResult:
    spec = prep.spec
    if not is_new:
        left = decisions.reconcile()
        beats = decisions.beats() if decisions.shared else {}
        fixed = reconcile_tracking(study, tracker, lambda t: decisions.orphaned(t, beats))
        if left or fixed:
            say(f"reconciled: {len(left)} trial(s) left running re-enqueued; {fixed} MLflow run(s) corrected")
    if spec.is_multi_objective:
        say(
            f"multi-objective study ({', '.join(o.metric for o in spec.all_objectives)}): pruning is off, Optuna prunes single-objective studies only"
        )
    concurrency = min(spec.concurrency or ex.capacity(), spec.trials)
    driver = Driver(decisions, ex, tracker, concurrency=concurrency, listener=listener)
    finished = driver.run()
    trials = study.get_trials(deepcopy=False)
    summary = {"finished": float(sum(is_counted(t) for t in trials))}
    if driver.best is not None:
        summary["best_value"] = driver.best[1][0]
    lost = tracker.end_study("FINISHED" if finished else "KILLED", summary)
    if lost:
        say(
            f"MLflow ({storage_mod.mask(spec.tracking_uri)}) was unreachable for part of the study: {lost} write(s) were "
            f"not delivered (Optuna has every result). Once it is back, fill MLflow in with: study sync {spec.name}"
        )
    if decisions.shared:
        decisions.beat(ended=True)
    else:
        study.set_user_attr(DRIVER_ATTR, {})
    return RunResult(study, finished, driver)


def local_storage_warning(storage_url: str, address: str | None) -> str | None:
    """The warning for a study driven on a Ray cluster whose Optuna storage is a file on
    this machine (journal or SQLite): it works (the driver is the only writer) but cannot be
    shared with a driver elsewhere. None when there is nothing to say."""
    if not address or address == "local" or not storage_mod.is_local_file(storage_url):
        return None
    return (
        f"warning: the Optuna storage {storage_mod.mask(storage_url)!r} is a file on this machine's disk: the study runs on "
        f"the cluster at {address}, but a second driver elsewhere cannot share it, and it is lost with this machine; "
        "use a PostgreSQL URL (--storage or HPSTUDY_STORAGE) to share a study"
    )


def spec_from_storage(name: str, storage: str | None) -> StudySpec:
    """The spec a stored study was launched with (for `study resume NAME`)."""
    url = storage_mod.check(storage, must_exist=True)
    names = storage_mod.study_names(url)
    if name not in names:
        raise SpecError(f"no study {name!r} in storage {storage_mod.mask(url)!r} (studies there: {names or 'none'})")
    study = optuna.load_study(study_name=name, storage=storage_mod.open_storage(url))
    data = stored_spec(study)
    if not data:
        raise SpecError(f"study {name!r} in {storage_mod.mask(url)!r} was not launched by hpstudy (no spec recorded)")
    data["storage"] = storage
    if data.get("objectives"):  # the record dumps the unused default `objective` too
        data.pop("objective", None)
    return parse_spec(data, source=f"stored spec of {name!r}")


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

    >>> from study.engine import launch
    >>> result = launch("study/examples/quickstart.yaml", trials=4)  # doctest: +SKIP
    >>> result.study.best_trial.params  # doctest: +SKIP
    """
    from study.env import with_env_defaults
    from study.spec import load_spec

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
    return run(prep, executor=ray_executor(address), listener=listener, say=say)
