"""Does the study engine keep a cluster busy? Efficiency = ideal time / actual time.

A simulated cluster (`ray.cluster_utils.Cluster`: `--nodes` Ray nodes of `--cpus` logical
CPUs each, all on this machine) runs a study of `--trials` sleep-based trials (`--epochs`
epochs of `--epoch-seconds` each, every epoch reported to Optuna and recorded in MLflow)
at one trial per CPU. The ideal time is trials x trial length / slots (perfect packing,
zero overhead); the actual time is the wall time of the whole study through
`study.run.launch.run_study`. The cluster's workers are warmed by a first, short study on the same executor (its slots, a worker process each, go on to run the measured study's trials), so process
start-up is not counted. Target (issue 5): efficiency >= 0.9 with >= 32 slots.

Also printed, to tell the two kinds of loss apart: how long a trial held its slot on
average (from Optuna's ask to its tell; above the trial's own length this is the per-trial
cost of Ray, the worker and the driver), and the fraction of slot-time that was held (below
100%, slots sat empty between trials or at the start and end of the study).

    python benchmarks/scaling.py [--nodes 4] [--cpus 8] [--trials 128] [--epochs 10] [--epoch-seconds 0.2] [--repeats 3]

With ``--slots S`` (issue 15), one study instead, measured for scale: a cluster of S slots in
nodes of at most 16 logical CPUs, the same sleep trials, and on the finished study:

- efficiency = ideal (trials x trial length / slots) / wall time of the study (`run_study`);
  ``held_s``: a trial's mean time from Optuna's ask to its tell, ``queued_s`` of which it
  waited in Ray's queue (the driver submits a few trials more than the slots, so that a slot
  starts its next trial at once) and ``ran_s`` from its start on a worker to the tell;
  ``busy`` is held time / slot time as in the default mode (above 1 with trials queued);
- ``driver_peak_rss_mb``: VmHWM (peak resident set) of this benchmark process, which runs the
  driver in its main thread (and Ray's driver-side core worker), read from /proc/self/status
  right after the study; ``driver_rss_start_mb`` is its VmRSS when the study started, and
  ``driver_rss_mb_by_finished`` its VmRSS sampled about every second (from the driver's
  `Listener.on_tick`) against the number of finished trials, with ``driver_rss_kb_per_trial``
  the least-squares slope of those samples past the first tenth of the trials (growth per
  finished trial: bounded memory has a slope near 0);
- ``writer_peak_rss_mb``: VmHWM of the MLflow writer process (``python -m study.stores.writer``,
  this process's child) read from /proc/<pid>/status when the driver closes it, after its
  last write (the largest over writers if one was replaced); ``writer_rss_mb_by_finished`` and
  ``writer_rss_kb_per_trial`` as for the driver;
- ``mlflow_trial_runs``, ``mlflow_epoch_points``: counted by SQL on the MLflow store's tables
  (the SQLite file, or with an MLflow server its backend database: ``--mlflow-db`` or env
  ``HPSTUDY_MLFLOW_BACKEND_STORE_URI``): the parent run's children, and the (run, epoch) pairs
  that have every metric of the epoch's record; ``running_left``: trials RUNNING in Optuna
  plus runs RUNNING in the study's MLflow experiment;
- query timings, each the wall time of a fresh process as a user starts it, with env
  ``HPSTUDY_STORAGE`` (and ``MLFLOW_TRACKING_URI``) set: ``study status NAME`` (``status_s``),
  ``study best NAME -k 10`` (``best_s``), ``python -c "import study;
  study.load(NAME, storage=..., tracking_uri=...).best_trials(10)"`` (``best_trials_s``), and
  ``resume_first_dispatch_s``: from starting a process that resumes the study with S more
  trials (`study.run.launch.run_study(resume=True)` joining the cluster, as ``study resume NAME
  --address ...``; imports, journal replay and reconciliation included) until its first trial
  has started on a worker (its `Started` event); that process then stops itself with SIGINT
  (Ctrl-C: its trials are recorded as interrupted). ``resume_phases_s`` says when, in seconds
  from the same start, that process had imported hpstudy, prepared the stored spec, joined
  Ray, submitted its first trial (the journal replayed, MLflow reconciled, a trial asked) and
  seen it start: a new driver is a new Ray job, whose first trial waits for a new worker
  process (a fresh interpreter importing Ray and the trial's code); ``worker_spawned`` is when
  the process that ran that trial started (from /proc; the simulated cluster is on this
  machine) and ``resume_worker_cpu_s`` the CPU seconds it had used by then (far below the
  wall time between, the worker was waiting: for a CPU, on a loaded machine).

The targets (issue 15: efficiency >= 0.95, status and best < 3 s, best_trials(10) < 5 s,
resume dispatch < 10 s) are printed beside the figures, never asserted. With ``--json`` the
last line of stdout is one JSON object with every figure. Storage: by default an Optuna
journal file and an MLflow SQLite file in a temporary folder; ``--storage URL --tracking-uri
URL`` run against a PostgreSQL database and an MLflow server instead (infra/local/start.sh).
The warm-up study always uses a temporary local store.

    python benchmarks/scaling.py --trials 10000 --slots 64 --json
    eval "$(HPSTUDY_LOCAL_COMPONENTS='postgres mlflow' infra/local/start.sh)"
    python benchmarks/scaling.py --trials 10000 --slots 64 --json --storage "$HPSTUDY_STORAGE" --tracking-uri "$MLFLOW_TRACKING_URI"
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this benchmark's own cluster token, set before Ray is imported (see tests/study/conftest.py)
if os.environ.setdefault("RAY_AUTH_MODE", "token") == "token" and "RAY_AUTH_TOKEN_PATH" not in os.environ:
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = """\
name: sleep
description: One learning rate; the trials only sleep.
fixed: {depth: 1, width: 4, epochs: 10}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""
EPOCH_SECONDS = 0.2
EPOCHS = 10
LAST: dict[str, Any] = {}


def sleep_trial(number: int, config: Any, data: Any) -> Any:
    """`EPOCHS` epochs of `EPOCH_SECONDS` of sleep each, reported like a real trial."""
    from study.run.events import Ended, Epoch, Started

    yield Started(number, {"pid": os.getpid()})
    for epoch in range(1, EPOCHS + 1):
        time.sleep(EPOCH_SECONDS)
        v = 1.0 / (epoch * (1 + config.lr))
        yield Epoch(
            number,
            epoch,
            {
                "train_loss": v,
                "train_acc": 1 - v,
                "val_loss": v,
                "val_acc": 1 - v,
                "lr": config.lr,
                "grad_norm_0": v,
                "grad_norm_1": v,
            },
        )
    yield Ended(number, "completed", best_epoch=EPOCHS, stopped_epoch=EPOCHS, n_params=10)


def run_study(
    work: Path,
    name: str,
    trials: int,
    slots: int,
    trial_fn: Any,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    listener: Any = None,
    strict: bool = True,
    shared: list[Any] | None = None,
) -> float:
    """The wall time of one study of `trials` sleep trials at `slots` in flight (`LAST` gets
    the mean slot hold, the busy fraction and the study). `strict`: every trial must complete.
    `shared`: a list holding the executor to run on (the first study given an empty one
    starts it), which the caller closes: the warm-up's slots (worker processes) go on running
    the measured study's trials, so that the start of 64 processes on 2 cores is not counted."""
    from study.record import TrialAttr
    from study.run.launch import run_study as drive
    from study.run.prepare import Prepared, prepare
    from study.run.ray_executor import RayExecutor
    from study.spec import parse_spec

    (work / "sleep.yaml").write_text(SPACE)
    spec = parse_spec(
        {
            "name": name,
            "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 100, "n_features": 4, "n_classes": 2}},
            "space": str(work / "sleep.yaml"),
            "sampler": {"name": "random", "seed": 0},
            "pruner": "none",
            "trials": trials,
            "concurrency": slots,
            "storage": storage or f"journal:{work / 'optuna.journal'}",
            "tracking_uri": tracking_uri or f"sqlite:///{work / 'mlflow.db'}",
        }
    )
    prep = prepare(spec)

    def executor(p: Prepared) -> Any:
        if shared is not None:
            if not shared:
                shared.append(RayExecutor(p.data, trial_fn=trial_fn))
            return shared[0], lambda: None
        ex = RayExecutor(p.data, trial_fn=trial_fn)
        return ex, ex.close

    t0, w0 = time.perf_counter(), time.time()
    result = drive(prep, executor=executor, listener=listener, say=lambda m: None)
    dt, w1 = time.perf_counter() - t0, time.time()
    done = [t for t in result.study.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in done if t.state.name == "COMPLETE"]
    if strict:
        assert len(done) == trials and len(complete) == trials, "a trial did not complete"
    held = [  # ask to tell, as the driver saw it
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in complete
        if t.datetime_complete is not None and t.datetime_start is not None
    ]
    LAST["held"] = statistics.mean(held) if held else math.nan
    started = [  # (ask, the worker's start, tell): with trials queued in Ray, ask to tell includes the wait
        (t.datetime_start.timestamp(), float(t.user_attrs[TrialAttr.PLACEMENT]["started_at"]), t.datetime_complete.timestamp())
        for t in complete
        if t.datetime_complete is not None and t.datetime_start is not None and TrialAttr.PLACEMENT in t.user_attrs
    ]
    LAST["queued"] = statistics.mean(s - a for a, s, _ in started) if started else math.nan
    LAST["ran"] = statistics.mean(e - s for _, s, e in started) if started else math.nan
    LAST["busy"] = sum(held) / (slots * dt)
    if started:  # where the wall time went besides the trials: before the first start, after the last tell
        starts, tells = sorted(s for _, s, _ in started), sorted(e for _, _, e in started)
        LAST["phases"] = {
            "to_first_start": round(starts[0] - w0, 3),  # open the study, ask, submit, Ray's first lease
            "to_all_slots_busy": round(starts[min(slots, len(starts)) - 1] - w0, 3),  # the ramp
            "last_wave": round(tells[-1] - tells[max(0, len(tells) - slots)], 3),  # the last `slots` tells
            "after_last_tell": round(w1 - tells[-1], 3),  # close: the board, MLflow's end, the snapshot
        }
    LAST["completed"] = len(complete)
    LAST["study"] = result.study
    return dt


# -- --slots: one study measured for scale (issue 15) ---------------------------------------
#: Issue 15's targets, printed beside the figures (never asserted).
TARGETS = {"efficiency": 0.95, "status_s": 3.0, "best_s": 3.0, "best_trials_s": 5.0, "resume_first_dispatch_s": 10.0}
NODE_CPUS = 16  # logical CPUs per simulated node at most
METRIC_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "grad_norm_0", "grad_norm_1")  # `sleep_trial`'s record


def node_cpus(slots: int) -> list[int]:
    """`slots` split as evenly as possible into nodes of at most `NODE_CPUS` CPUs."""
    n = -(-slots // NODE_CPUS)
    return [slots // n + (1 if i < slots % n else 0) for i in range(n)]


def status_kb(pid: int | str, field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/<pid>/status in kB; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def writer_pid() -> int | None:
    """The pid of this process's live MLflow writer child (``python -m study.stores.writer``)."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            if stat[stat.rindex(")") + 2 :].split()[1] != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"study.stores.writer" in f.read():
                    return int(entry)
        except (OSError, ValueError):
            continue
    return None


class WriterPeak:
    """VmHWM of each MLflow writer process, read when the driver closes it (after its last
    write, before it exits): `TrackerProcess.close` is wrapped for the measured study."""

    def __init__(self) -> None:
        self.kb: dict[int, int] = {}

    def __enter__(self) -> WriterPeak:
        from study.stores.writer import TrackerProcess

        self._close = close = TrackerProcess.close

        def measured_close(tracker: Any) -> None:
            hwm = status_kb(tracker.pid, "VmHWM")
            if hwm is not None:
                self.kb[tracker.pid] = hwm
            close(tracker)

        TrackerProcess.close = measured_close  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_: Any) -> None:
        from study.stores.writer import TrackerProcess

        TrackerProcess.close = self._close  # type: ignore[method-assign]


def rss_meter(every: float = 1.0) -> Any:
    """A `Listener` sampling the VmRSS of this process (the driver) and of the MLflow writer
    about every `every` seconds, against the number of finished trials."""
    from study.run.driver import Listener, Snapshot

    class RssMeter(Listener):
        def __init__(self) -> None:
            self.samples: list[tuple[int, float | None, float | None]] = []
            self.writer_kb: dict[int, int] = {}  # VmHWM last read, by writer pid
            self._next = 0.0
            self._writer: int | None = None

        def on_tick(self, snapshot: Snapshot) -> None:
            now = time.monotonic()
            if now < self._next:
                return
            self._next = now + every
            if self._writer is None or status_kb(self._writer, "VmRSS") is None:
                self._writer = writer_pid()
            writer = None
            if self._writer is not None:
                writer = status_kb(self._writer, "VmRSS")
                hwm = status_kb(self._writer, "VmHWM")
                if hwm is not None:
                    self.writer_kb[self._writer] = hwm
            self.samples.append((snapshot.finished, mb(status_kb("self", "VmRSS")), mb(writer)))

    return RssMeter()


def spread(samples: list[tuple[int, float | None, float | None]], col: int, points: int = 11) -> list[list[Any]]:
    """About `points` [finished trials, MB] pairs, evenly over the run."""
    if not samples:
        return []
    picks = sorted({round(i * (len(samples) - 1) / (points - 1)) for i in range(points)})
    return [[samples[i][0], samples[i][col]] for i in picks]


def slope_kb(samples: list[tuple[int, float | None, float | None]], col: int, trials: int) -> float | None:
    """Least-squares slope of the sampled RSS (column `col`) against finished trials, in kB per
    trial, over the samples after the first tenth of the trials (start-up: imports, caches)."""
    pts: list[tuple[float, float]] = [(f, r) for f, *cols in samples if f >= trials / 10 and (r := cols[col - 1]) is not None]
    if len(pts) < 3 or len({f for f, _ in pts}) < 2:
        return None
    mf, mr = statistics.fmean(f for f, _ in pts), statistics.fmean(r for _, r in pts)
    cov = sum((f - mf) * (r - mr) for f, r in pts)
    return round(1024 * cov / sum((f - mf) ** 2 for f, _ in pts), 2)


def mlflow_counts(db_url: str, parent_run_id: str, epochs: int) -> dict[str, int]:
    """Trial runs under the parent run, (run, epoch) pairs with every metric of the epoch's
    record, and RUNNING runs in the parent's experiment: SQL on the MLflow store's tables."""
    from sqlalchemy import bindparam, create_engine, text

    children = "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = :parent"
    queries = {
        "runs": text(f"SELECT COUNT(*) FROM runs WHERE lifecycle_stage = 'active' AND run_uuid IN ({children})"),
        "points": text(
            "SELECT COUNT(*) FROM (SELECT run_uuid, step FROM metrics "
            f"WHERE run_uuid IN ({children}) AND key IN :keys AND step BETWEEN 1 AND :epochs "
            "GROUP BY run_uuid, step HAVING COUNT(DISTINCT key) = :n) AS complete_epochs"
        ).bindparams(bindparam("keys", expanding=True)),
        "running": text(
            "SELECT COUNT(*) FROM runs WHERE status = 'RUNNING' AND lifecycle_stage = 'active' "
            "AND experiment_id = (SELECT experiment_id FROM runs WHERE run_uuid = :parent)"
        ),
    }
    args = {"parent": parent_run_id, "keys": list(METRIC_KEYS), "epochs": epochs, "n": len(METRIC_KEYS)}
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {k: int(conn.execute(q, {n: args[n] for n in q.compile().params}).scalar() or 0) for k, q in queries.items()}
    finally:
        engine.dispose()


def timed(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> tuple[float | None, str]:
    """Wall seconds of a fresh process running `cmd` (None if it failed) and its output's tail."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    dt = time.perf_counter() - t0
    tail = (proc.stderr + proc.stdout)[-4000:]  # stdout last: its last line is a probe's JSON
    return (dt if proc.returncode == 0 else None), tail


def study_cli() -> list[str]:
    """The ``study`` command of this interpreter's environment."""
    exe = Path(sys.executable).parent / "study"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "study.cli"]


def query_timings(name: str, trials: int, slots: int, address: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """The query side on the finished study, each in a fresh process (see the module docstring)."""
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    load = (
        "import os, study; "
        f"h = study.load({name!r}, storage=os.environ['HPSTUDY_STORAGE'], tracking_uri=os.environ['MLFLOW_TRACKING_URI']); "
        f"df = h.best_trials(10); assert len(df) == {min(10, trials)}, len(df)"
    )
    for key, cmd in (
        ("status_s", [*study_cli(), "status", name]),
        ("best_s", [*study_cli(), "best", name, "-k", "10"]),
        ("best_trials_s", [sys.executable, "-c", load]),
    ):
        out[key], tail = timed(cmd, env, cwd)
        if out[key] is None:
            errors[key] = tail
    probe = [
        sys.executable, str(Path(__file__).resolve()), "--resume-probe", name, "--address", address,
        "--trials", str(trials + slots), "--epochs", str(EPOCHS), "--epoch-seconds", str(EPOCH_SECONDS),
    ]  # fmt: skip
    t0 = time.time()
    seconds, tail = timed(probe, env, cwd)
    out["resume_first_dispatch_s"] = None
    if seconds is not None:
        probe_out = next(json.loads(x) for x in reversed(tail.strip().splitlines()) if x.startswith("{"))
        marks = probe_out["marks"]
        out["resume_worker_cpu_s"] = probe_out["worker_cpu_s"]
        if marks.get("first_start") is not None:
            out["resume_first_dispatch_s"] = marks["first_start"] - t0
            out["resume_phases_s"] = {k: round(v - t0, 3) for k, v in marks.items() if v is not None}
    if out["resume_first_dispatch_s"] is None:
        errors["resume_first_dispatch_s"] = tail
    if errors:
        out["errors"] = errors
    return out


def process_times(pid: Any) -> tuple[float, float] | None:
    """When process `pid` of this machine started (wall-clock seconds) and the CPU seconds it
    has used (user + system), from /proc; None if unknown."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:  # not /proc/stat's btime: whole seconds, up to 1 s early
            uptime = float(f.read().split()[0])
    except (OSError, TypeError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return time.time() - (uptime - int(fields[19]) / tick), (int(fields[11]) + int(fields[12])) / tick


def resume_probe(args: argparse.Namespace) -> None:
    """``--resume-probe NAME`` (a fresh process started by `query_timings`): resume the study
    with ``--trials`` as its target on the cluster at ``--address``, stop at the first trial
    start (SIGINT, as Ctrl-C) and print the wall-clock times of its phases as JSON."""
    marks: dict[str, float | None] = {
        "imported": None,
        "prepared": None,
        "ray_joined": None,
        "first_submit": None,
        "first_start": None,
    }
    cpu: dict[str, float] = {}  # CPU seconds the worker that ran the first trial had used when it started
    from study.run.driver import Listener
    from study.run.launch import run_study as drive
    from study.run.launch import spec_from_storage
    from study.run.prepare import Prepared, prepare
    from study.run.ray_executor import RayExecutor, start_ray
    from study.stores.uris import with_env_defaults

    marks["imported"] = time.time()
    storage = os.environ["HPSTUDY_STORAGE"]  # as the CLI reads it
    spec = with_env_defaults(spec_from_storage(args.resume_probe, storage), storage, None).with_overrides(trials=args.trials)
    prep = prepare(spec)
    marks["prepared"] = time.time()

    def executor(p: Prepared) -> Any:
        start_ray(args.address)
        ex = RayExecutor(p.data, trial_fn=sleep_trial)
        marks["ray_joined"] = time.time()
        submit = ex.submit

        def first_submit(*a: Any, **kw: Any) -> None:  # the study is open, reconciled and asked: Ray gets the trial
            marks["first_submit"] = marks["first_submit"] or time.time()
            submit(*a, **kw)

        ex.submit = first_submit  # type: ignore[method-assign]
        return ex, ex.close

    class FirstStart(Listener):
        def on_trial_start(self, number: int, info: dict[str, Any]) -> None:
            if marks["first_start"] is None:
                marks["first_start"] = time.time()
                os.kill(os.getpid(), signal.SIGINT)  # the driver's Ctrl-C: stop, trials recorded as interrupted
                times = process_times(info.get("pid"))
                if times is not None:
                    marks["worker_spawned"], cpu["worker"] = times

    drive(prep, resume=True, executor=executor, listener=FirstStart(), say=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"marks": marks, "worker_cpu_s": cpu.get("worker")}), flush=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One study of `args.trials` on a cluster of `args.slots` slots, measured (see the module docstring)."""
    import logging

    import optuna
    import ray
    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    from study.record import StudyAttr
    from study.stores.uris import is_server, mask

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    layout = node_cpus(args.slots)
    trial_seconds = EPOCHS * EPOCH_SECONDS
    ideal = args.trials * trial_seconds / args.slots
    server = args.tracking_uri is not None and is_server(args.tracking_uri)
    mlflow_db = args.mlflow_db or (os.environ.get("HPSTUDY_MLFLOW_BACKEND_STORE_URI") if server else None)
    out: dict[str, Any] = {"trials": args.trials, "slots": args.slots, "nodes": layout, "epochs": EPOCHS}
    out["epoch_seconds"], out["cores"], out["load_avg_start"] = EPOCH_SECONDS, os.cpu_count(), os.getloadavg()
    node_args: dict[str, Any] = {"object_store_memory": 256 << 20}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": layout[0], "include_dashboard": False, **node_args})
    for cpus in layout[1:]:
        cluster.add_node(num_cpus=cpus, **node_args)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        cluster.wait_for_nodes()
        say(
            f"cluster: {len(ray.nodes())} nodes {layout}, {ray.cluster_resources().get('CPU')} CPUs ({os.cpu_count()} real cores)"
        )
        with tempfile.TemporaryDirectory(prefix="hpscale-") as d:
            work = Path(d)
            (work / "warmup").mkdir()
            MlflowClient(f"sqlite:///{work / 'warmup' / 'mlflow.db'}").search_experiments()
            shared: list[Any] = []  # the warm-up's slots run the study: every worker process started once
            run_study(work / "warmup", "warmup", args.slots, args.slots, sleep_trial, shared=shared)
            up = shared[0].prestart(args.slots)  # slots start a few at a time: the warm-up may have needed fewer
            say(f"warm-up done: {up} slots up")
            storage = args.storage or f"journal:{work / 'optuna.journal'}"
            tracking = args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
            if args.tracking_uri is None:
                MlflowClient(tracking).search_experiments()  # create (migrate) the database before the clock starts
                mlflow_db = tracking
            name = "scaling" if args.storage is None else f"scaling-{time.strftime('%Y%m%d-%H%M%S')}"
            out.update(storage=mask(storage), tracking_uri=mask(tracking), study=name)
            meter = rss_meter()
            out["driver_rss_start_mb"] = mb(status_kb("self", "VmRSS"))
            with WriterPeak() as writer:
                wall = run_study(
                    work, name, args.trials, args.slots, sleep_trial,
                    storage=storage, tracking_uri=tracking, listener=meter, strict=False, shared=shared,
                )  # fmt: skip
            shared[0].close()  # its slots free the CPUs the resume below needs
            out["driver_peak_rss_mb"] = mb(status_kb("self", "VmHWM"))
            peaks = {**meter.writer_kb, **writer.kb}
            out["writer_peak_rss_mb"] = mb(max(peaks.values())) if peaks else None
            out["writer_processes"] = len(peaks)
            out.update(ideal_s=round(ideal, 3), wall_s=round(wall, 3), efficiency=round(ideal / wall, 4))
            out.update(held_s=round(LAST["held"], 4), busy=round(LAST["busy"], 4), completed=LAST["completed"])
            out.update(queued_s=round(LAST["queued"], 4), ran_s=round(LAST["ran"], 4), phases_s=LAST.get("phases"))
            out["driver_rss_mb_by_finished"] = spread(meter.samples, 1)
            out["writer_rss_mb_by_finished"] = spread(meter.samples, 2)
            out["driver_rss_kb_per_trial"] = slope_kb(meter.samples, 1, args.trials)
            out["writer_rss_kb_per_trial"] = slope_kb(meter.samples, 2, args.trials)
            study = LAST["study"]
            out["optuna_running"] = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
            parent = study.user_attrs.get(StudyAttr.PARENT_RUN)
            counts = mlflow_counts(mlflow_db, parent, EPOCHS) if mlflow_db and parent else None
            if counts is None:
                say("MLflow not counted: give --mlflow-db (the MLflow server's backend store URL) to count its runs by SQL")
            out["mlflow_trial_runs"] = None if counts is None else counts["runs"]
            out["mlflow_epoch_points"] = None if counts is None else counts["points"]
            out["mlflow_running"] = None if counts is None else counts["running"]
            out["running_left"] = out["optuna_running"] + (counts["running"] if counts else 0)
            if args.storage is None:
                out["journal_mb"] = round((work / "optuna.journal").stat().st_size / 2**20, 1)
            if args.tracking_uri is None:
                out["mlflow_db_mb"] = round(sum(f.stat().st_size for f in work.glob("mlflow.db*")) / 2**20, 1)
            del LAST["study"], study
            print(f"the study's figures before the queries: {json.dumps(out, default=str)}", file=sys.stderr, flush=True)
            env = {**os.environ, "HPSTUDY_STORAGE": storage, "MLFLOW_TRACKING_URI": tracking}
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
            out.update(query_timings(name, args.trials, args.slots, cluster.address, env, work))
    finally:
        ray.shutdown()
        cluster.shutdown()
    out["load_avg_end"] = os.getloadavg()
    out["targets"] = TARGETS
    return out


def say(text: str) -> None:
    print(text, flush=True)


def report(out: dict[str, Any]) -> None:
    """The figures in words, each beside its target."""

    def fig(v: Any, unit: str = " s") -> str:
        return "failed" if v is None else f"{v:.2f}{unit}"

    def vs(key: str, below: bool = True) -> str:
        v, t = out.get(key), TARGETS[key]
        if v is None:
            return f"(target {'<' if below else '>='} {t:g})"
        met = v < t if below else v >= t
        return f"(target {'<' if below else '>='} {t:g}: {'met' if met else 'NOT met'})"

    trial_s = out["epochs"] * out["epoch_seconds"]
    say(
        f"\n{out['trials']} trials of {trial_s:g} s on {out['slots']} slots (nodes {out['nodes']}, {out['cores']} real cores; "
        f"load average {out['load_avg_start'][0]:.1f} at the start): ideal {out['ideal_s']:.1f} s, wall {out['wall_s']:.1f} s, "
        f"efficiency {out['efficiency']:.3f} {vs('efficiency', below=False)}; {out['completed']} completed; on average a trial "
        f"took {out['held_s']:.3f} s from Optuna's ask to its tell ({out['queued_s']:.3f} s queued in Ray until its worker "
        f"started it, {out['ran_s']:.3f} s from then to the tell)"
    )
    say(
        f"driver peak RSS {out['driver_peak_rss_mb']} MB (VmHWM of this process; {out['driver_rss_start_mb']} MB at the start), "
        f"by finished trials: {out['driver_rss_mb_by_finished']}; slope {out['driver_rss_kb_per_trial']} kB per trial"
    )
    say(
        f"MLflow writer peak RSS {out['writer_peak_rss_mb']} MB (VmHWM, {out['writer_processes']} process(es)), "
        f"by finished trials: {out['writer_rss_mb_by_finished']}; slope {out['writer_rss_kb_per_trial']} kB per trial"
    )
    say(
        f"MLflow: {out['mlflow_trial_runs']} trial runs (expected {out['trials']}), {out['mlflow_epoch_points']} complete epoch "
        f"records (expected {out['trials'] * out['epochs']}); RUNNING left: {out['optuna_running']} in Optuna, "
        f"{out['mlflow_running']} in MLflow"
    )
    say(
        f"study status {fig(out.get('status_s'))} {vs('status_s')}; study best -k 10 {fig(out.get('best_s'))} {vs('best_s')}; "
        f"study.load(...).best_trials(10) {fig(out.get('best_trials_s'))} {vs('best_trials_s')}; resume: first trial started "
        f"after {fig(out.get('resume_first_dispatch_s'))} {vs('resume_first_dispatch_s')}; its phases {out.get('resume_phases_s', '')}, "
        f"the worker's CPU seconds by then {out.get('resume_worker_cpu_s')}"
    )
    for key, tail in out.get("errors", {}).items():
        say(f"{key} failed:\n{tail}")


def main() -> None:
    global EPOCH_SECONDS, EPOCHS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--cpus", type=int, default=8, help="logical CPUs per node (one trial each)")
    p.add_argument("--trials", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--epoch-seconds", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--slots", type=int, help="one study on a cluster of this many slots, measured for scale (issue 15)")
    p.add_argument("--json", action="store_true", help="with --slots: one JSON object with every figure on the last line")
    p.add_argument("--storage", help="with --slots: Optuna storage URL (default: a journal file in a temporary folder)")
    p.add_argument("--tracking-uri", help="with --slots: MLflow tracking URI (default: a SQLite file in a temporary folder)")
    p.add_argument(
        "--mlflow-db",
        help="with an MLflow server: its backend store URL, to count runs by SQL (default: env HPSTUDY_MLFLOW_BACKEND_STORE_URI)",
    )
    p.add_argument("--resume-probe", help=argparse.SUPPRESS)
    p.add_argument("--address", help=argparse.SUPPRESS)
    args = p.parse_args()
    EPOCH_SECONDS, EPOCHS = args.epoch_seconds, args.epochs
    if args.resume_probe:
        resume_probe(args)
        return
    if args.slots is None:
        for flag in ("json", "storage", "tracking_uri", "mlflow_db"):
            if getattr(args, flag):
                p.error(f"--{flag.replace('_', '-')} needs --slots")
        cluster_efficiency(args)
        return
    if args.slots < 1 or args.trials < 1:
        p.error(f"--slots and --trials must be at least 1, got {args.slots} and {args.trials}")
    if (args.storage is None) != (args.tracking_uri is None):
        p.error("--storage and --tracking-uri go together (a server run needs both)")
    out = measure(args)
    report(out)
    if args.json:
        print(json.dumps(out), flush=True)


def cluster_efficiency(args: argparse.Namespace) -> None:
    """The default mode: median efficiency of `--repeats` studies on `--nodes` x `--cpus` slots."""
    import logging

    import optuna
    import ray
    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    slots = args.nodes * args.cpus
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus, "include_dashboard": False})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=args.cpus)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        cluster.wait_for_nodes()
        print(
            f"cluster: {len(ray.nodes())} nodes, {ray.cluster_resources().get('CPU')} CPUs ({os.cpu_count()} real cores)",
            flush=True,
        )
        trial_seconds = EPOCHS * EPOCH_SECONDS
        ideal = args.trials * trial_seconds / slots
        ratios = []
        shared: list[Any] = []  # the warm-up's slots (worker processes) run every measured study
        for rep in range(args.repeats + 1):
            with tempfile.TemporaryDirectory(prefix="hpscale-") as d:
                work = Path(d)
                MlflowClient(f"sqlite:///{work / 'mlflow.db'}").search_experiments()
                if rep == 0:  # warm-up: start every worker process once
                    run_study(work, "warmup", slots, slots, sleep_trial, shared=shared)
                    print(f"warm-up done: {shared[0].prestart(slots)} slots up", flush=True)
                    continue
                actual = run_study(work, "scaling", args.trials, slots, sleep_trial, shared=shared)
            ratios.append(ideal / actual)
            print(
                f"run {rep}/{args.repeats}: ideal {ideal:.2f} s, actual {actual:.2f} s, efficiency {ideal / actual:.3f}; "
                f"a trial held its slot {LAST['held']:.3f} s on average (ask to tell), slots busy {LAST['busy']:.1%} of the time",
                flush=True,
            )
        print(
            f"\n{args.trials} trials of {trial_seconds:g} s on {slots} slots ({args.nodes} nodes x {args.cpus} CPUs): "
            f"median efficiency {statistics.median(ratios):.3f} (target >= 0.9)"
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
