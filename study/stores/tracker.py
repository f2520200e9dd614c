"""MLflow recording, written by the driver only (workers never talk to MLflow).

Layout: one experiment per study, named after it; one parent run for the study (the spec as
params and as ``spec.yaml``, progress metrics as the study runs); one child run per trial,
nested under the parent (tag ``mlflow.parentRunId``) and named ``trial-<number>``, with the
trial's configuration as params, every epoch's record as metrics with ``step=epoch``, final
summary metrics, and tags ``trial_number``, ``state``, ``stop_reason``, ``seed`` (see
`study.record.Tag`).

`Tracker` is what the driver and the reconciliation write through; `MlflowTracker` writes
from the calling thread, `study.stores.writer.TrackerProcess` from the driver's own writer
process. Writes are batched: epoch metrics wait in a buffer and go out in
`MlflowClient.log_batch` calls (at most 1000 metrics each) every ``flush_seconds`` and when a
trial ends. A run is terminated with the status matching its trial's Optuna state, after its
last metrics are written.

Times are the caller's: runs start and end, and metric points are stamped, at the wall-clock
times the driver passes (when Optuna asked for and was told of a trial, when an epoch
finished), never when the write happens. A call that fails for a reason that may pass (a
locked SQLite database, a server restarting) is retried with back-off for up to
``retry_seconds`` (`RetryingClient`). Artifacts of a SQLite store go next to its database, in
``mlartifacts/<study>`` (MLflow's default would be ``./mlruns`` of the working folder).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from study.names import MAX_TEXT, VERDICT_FILE, Tag
from study.stores.mlflow_sql import Metric, Param, RunTag, SqlClient, open_client
from study.stores.uris import artifact_root

if TYPE_CHECKING:  # the writer process imports this module: not Optuna, the spec or the trainers
    from study.record import TrialRecord

_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100


class TrackingFailure(RuntimeError):
    """MLflow failed where its answer is needed (a reconciliation: resume, sync, or the repair
    at the end of a study). Writes during a study never raise it: they are retried, then
    dropped and counted (`study.stores.writer`)."""


@dataclass(frozen=True)
class RunInfo:
    """What reconciliation needs to know of one trial's MLflow run."""

    run_id: str
    status: str  # MLflow run status
    state: str  # tag: the Optuna state it was last given
    stop_reason: str  # tag
    incomplete: bool  # tag hpstudy.incomplete: some of its writes were lost
    metrics: frozenset[str]  # names of the metrics it has


class Tracker(Protocol):
    """Everything the driver writes to MLflow. Both implementations return the same types;
    ``start_study`` delivers the parent run's id through the ``on_parent`` callback given to
    the constructor (at once in-process, later from the writer process). Times are
    ``time.time()`` seconds; None means now."""

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
        """Create (or reopen) the experiment and the study's parent run. ``live=False`` (a
        reconciliation without a driver) finds or creates it without reopening it. ``under``:
        nest the parent run under that run, in its experiment (a confirmation under the
        study it confirms)."""
        ...

    def study_progress(self, metrics: dict[str, float], step: int, at: float | None = None) -> None: ...

    def record_verdict(self, verdict: dict[str, Any]) -> None:
        """What the study concluded, on its parent run: tags ``verdict`` (the outcome),
        ``effect``, ``ci_low``, ``ci_high``, the sentence as the run's description, and the
        whole dict as the artifact ``verdict.json``."""
        ...

    def end_study(self, status: str, summary: dict[str, float] | None, step: int, end_time: float | None = None) -> int:
        """Flush everything and close the parent run; returns how many writes were lost (more
        than 0: MLflow misses part of the study, which a reconciliation can fill in)."""
        ...

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], start_time: float | None = None) -> None: ...

    def tag_trial(self, number: int, tags: dict[str, str]) -> None: ...

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float], at: float | None = None) -> None: ...

    def log_file(self, number: int, path: str, data: bytes, run_id: str | None = None) -> None:
        """A file of running trial `number`'s run (or of the run `run_id`), as the artifact
        `path` (``folder/name``)."""
        ...

    def end_trial(
        self,
        number: int,
        state: str,
        status: str,
        tags: dict[str, str],
        summary: dict[str, float],
        end_time: float | None = None,
    ) -> None: ...

    def maybe_flush(self) -> None: ...

    def flush(self) -> None: ...

    def trial_runs(self, numbers: Sequence[int] | None = None) -> dict[int, RunInfo]:
        """Every child run of the parent by trial number (the newest when a number repeats),
        or those of trials `numbers` only."""
        ...

    def repair_trial(self, record: TrialRecord, metric: str | None, run: RunInfo | None) -> int:
        """Make a trial's run agree with its Optuna record (see `MlflowTracker.repair_trial`);
        returns the epoch points filled in."""
        ...

    def close_parent(self, status: str, summary: dict[str, float], step: int, end_time: float | None = None) -> bool:
        """Close a parent run left RUNNING (no driver is running); True if it was."""
        ...

    def close(self) -> None: ...


def quiet_mlflow(on_retry: Callable[[str], None] | None = None) -> None:
    """MLflow's, alembic's and SQLAlchemy's loggers at WARNING (after importing mlflow, which
    sets its own logger's level). MLflow's database layer logs a traceback for every database
    error, which the caller handles (retries, or reports in one line), and retries opening a
    locked database on its own: its records go to `on_retry` (one line) instead of the
    terminal. No "View run ... at" lines on stdout for runs on a server."""
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.CRITICAL)
    db = logging.getLogger("mlflow.store.db.utils")
    db.propagate = False
    db.handlers = [_Retries(on_retry)]
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


class _Retries(logging.Handler):
    """MLflow's own retries of a database it cannot open, as one-line reasons."""

    def __init__(self, on_retry: Callable[[str], None] | None) -> None:
        super().__init__(logging.WARNING)
        self.on_retry = on_retry

    def emit(self, record: logging.LogRecord) -> None:
        errors = [a for a in record.args or () if isinstance(a, BaseException)] if isinstance(record.args, tuple) else []
        if self.on_retry is not None and errors and "retried" in record.getMessage():
            self.on_retry(describe(errors[0]))


#: MLflow error codes of failures that may pass: retried.
_TRANSIENT_CODES = ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "ABORTED")


def transient(e: BaseException) -> bool:
    """Whether a failed MLflow call may succeed if tried again (a locked or unreachable store),
    as opposed to a request the store rejects."""
    errors = sys.modules.get("mlflow.exceptions")  # none raised where MLflow was never imported
    if errors is not None and isinstance(e, errors.MlflowException):
        return e.error_code in _TRANSIENT_CODES
    return isinstance(e, (OSError, TimeoutError)) or type(e).__name__ == "OperationalError"


def describe(e: BaseException) -> str:
    """An error in one line: the first line of its root cause (``database is locked``, not
    the SQL statement MLflow's wrapper adds)."""
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    for line in str(root).strip().splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(root).__name__


class RetryingClient:
    """An `MlflowClient` whose calls are retried with back-off (0.25 s doubling to 8 s) while
    they fail for a reason that may pass, for up to `retry_seconds` in all. `on_retry(reason)`
    is called before each retry; `probe()` (optional: is the server up?) stops the retries at
    once when it says no (an outage, handled by the caller)."""

    def __init__(
        self,
        client: Any,
        retry_seconds: float = 60.0,
        on_retry: Callable[[str], None] | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        self._client = client
        self.retry_seconds = retry_seconds
        self.on_retry = on_retry
        self.probe = probe

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            deadline = time.monotonic() + self.retry_seconds
            delay = 0.25
            while True:
                try:
                    return attr(*args, **kwargs)
                except Exception as e:
                    if not transient(e) or time.monotonic() + delay > deadline or (self.probe is not None and not self.probe()):
                        raise
                    if self.on_retry is not None:
                        self.on_retry(describe(e))
                    time.sleep(delay)
                    delay = min(delay * 2, 8.0)

        return call


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping to ``{"a.b": "value"}`` strings, as MLflow params."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def child_runs(client: Any, experiment_id: str, parent_id: str) -> Iterator[Any]:
    """Every MLflow run nested under run `parent_id` (paged search, 1000 a page)."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`{Tag.PARENT}` = '{parent_id}'", max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def trial_run_pages(client: Any, experiment_id: str, parent_id: str, number: int) -> list[Any]:
    """The runs of trial `number` under the parent (more than one when it was re-created)."""
    where = f"tags.`{Tag.PARENT}` = '{parent_id}' and tags.`{Tag.TRIAL_NUMBER}` = '{number}'"
    return list(client.search_runs([experiment_id], filter_string=where, max_results=100))


def run_info(run: Any) -> RunInfo:
    tags = run.data.tags
    return RunInfo(
        run.info.run_id, run.info.status, tags.get(Tag.STATE, ""), tags.get(Tag.STOP_REASON, ""),
        tags.get(Tag.INCOMPLETE) == "true", frozenset(run.data.metrics),
    )  # fmt: skip


def jsonable(x: Any) -> Any:
    """Plain JSON: non-finite floats as null, tuples and numpy values as lists and numbers."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def verdict_tags(verdict: dict[str, Any]) -> dict[str, str]:
    """The parent run's tags of a verdict (`Tracker.record_verdict`)."""
    tags = {Tag.VERDICT: str(verdict.get("outcome"))}
    for tag, key in ((Tag.EFFECT, "effect"), (Tag.CI_LOW, "ci_low"), (Tag.CI_HIGH, "ci_high")):
        v = jsonable(verdict.get(key))
        tags[tag] = "n/a" if v is None else f"{v:.6g}"
    if verdict.get("text"):
        tags[Tag.NOTE] = str(verdict["text"])[:MAX_TEXT]
    return tags


def _ms(when: Any) -> int | None:
    return int(when.timestamp() * 1000) if when is not None else None


def _ms_at(t: float | None) -> int:
    return int((time.time() if t is None else t) * 1000)


class MlflowTracker:
    """The driver's MLflow writer for one study, writing from the calling thread."""

    def __init__(
        self,
        uri: str,
        *,
        flush_seconds: float = 2.0,
        on_parent: Callable[[str], None] | None = None,
        retry_seconds: float = 60.0,
        on_retry: Callable[[str], None] | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        quiet_mlflow(on_retry)
        self.uri = uri
        # a database store written by SQL (study.stores.mlflow_sql), every call retried
        opened = open_client(uri)
        self.sql: SqlClient | None = opened if isinstance(opened, SqlClient) else None
        self.client: Any = RetryingClient(opened, retry_seconds, on_retry, probe)
        self.flush_seconds = flush_seconds
        self.experiment_id = ""
        self.parent_id = ""
        self.name = ""
        self.under: str | None = None  # the run this study's parent is nested under
        self.runs: dict[int, str] = {}  # trial number -> run id
        self.on_parent = on_parent
        self._metrics: dict[str, list[Any]] = defaultdict(list)
        self._params: dict[str, list[Any]] = defaultdict(list)
        self._tags: dict[str, list[Any]] = defaultdict(list)
        self.last_flush = time.monotonic()

    # -- study --------------------------------------------------------------------------
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
        """The parent is tagged ``hpstudy.study_uid``, so a resume finds it even if the
        driver died before recording its id in Optuna. A new experiment keeps its artifacts
        next to a SQLite store (`study.stores.uris.artifact_root`) and opens in the MLflow UI's
        runs view (tag ``mlflow.experimentKind``). ``under``: in that run's experiment, nested
        under it (a confirmation's parent under the confirmed study's)."""
        self.name, self.under = name, under
        exp = self.client.get_experiment_by_name(name) if under is None else None
        if under is not None:
            self.experiment_id = self._run_of(under).experiment_id
        elif exp is None:
            root = artifact_root(self.uri)
            self.experiment_id = self.client.create_experiment(
                name,
                artifact_location=f"{root}/{name}" if root else None,
                tags={Tag.STUDY: name, Tag.EXPERIMENT_KIND: Tag.KIND_TRAINING},
            )
        else:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            self.experiment_id = exp.experiment_id
        if not parent_run_id and uid:
            if self.sql is not None:
                found = self.client.run_ids_with_tag(self.experiment_id, Tag.STUDY_UID, uid)
            else:
                where = f"tags.`{Tag.STUDY_UID}` = '{uid}'"
                found = [r.info.run_id for r in self.client.search_runs([self.experiment_id], filter_string=where, max_results=1)]
            parent_run_id = found[0] if found else None
        if parent_run_id:
            self.parent_id = parent_run_id
            if live:
                self.client.update_run(parent_run_id, status="RUNNING")
                self.client.set_tag(parent_run_id, Tag.RESUMED_AT, time.strftime("%Y-%m-%dT%H:%M:%S"))
        else:
            tags = {Tag.ROLE: "study", Tag.STUDY_UID: uid, **({} if live else {Tag.SYNCED: "true"})}
            if under is not None:
                tags[Tag.PARENT] = under
            run = self.client.create_run(self.experiment_id, start_time=_ms_at(start_time), run_name=name, tags=tags)
            self.parent_id = run.info.run_id
            self._queue_params(self.parent_id, flatten(spec))
            self.client.log_text(self.parent_id, yaml.safe_dump(spec, sort_keys=False), "spec.yaml")
            if not live:
                self.flush()
        if self.on_parent is not None:
            self.on_parent(self.parent_id)

    def study_progress(self, metrics: dict[str, float], step: int, at: float | None = None) -> None:
        self._queue_metrics(self.parent_id, metrics, step, _ms_at(at))

    def record_verdict(self, verdict: dict[str, Any]) -> None:
        """Also on the run this study is nested under (a confirmation's study): a tag
        ``hpstudy.confirmation.<name>`` with the outcome and ``confirmations/<name>.json``."""
        text = json.dumps(jsonable(verdict), indent=1)
        self._queue_tags(self.parent_id, verdict_tags(verdict))
        self._flush_run(self.parent_id)
        self.client.log_text(self.parent_id, text, VERDICT_FILE)
        if self.under is not None:
            self.client.set_tag(
                self.under, f"{Tag.CONFIRMATION}.{self.name}", f"{verdict.get('outcome')}: {verdict.get('text', '')}"[:MAX_TEXT]
            )
            self.client.log_text(self.under, text, f"confirmations/{self.name}.json")

    def end_study(self, status: str, summary: dict[str, float] | None, step: int, end_time: float | None = None) -> int:
        """Flush everything and close the parent run (FINISHED, or KILLED when interrupted)."""
        if summary:
            self._queue_metrics(self.parent_id, summary, step, _ms_at(end_time))
        self.flush()
        self.client.set_terminated(self.parent_id, status=status, end_time=_ms_at(end_time))
        return 0

    def close_parent(self, status: str, summary: dict[str, float], step: int, end_time: float | None = None) -> bool:
        if self._run_of(self.parent_id).status != "RUNNING":
            return False
        self.end_study(status, summary, step, end_time)
        return True

    # -- trials -------------------------------------------------------------------------
    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], start_time: float | None = None) -> None:
        all_tags = {Tag.PARENT: self.parent_id, Tag.TRIAL_NUMBER: str(number), Tag.STATE: "RUNNING", **tags}
        run = self.client.create_run(self.experiment_id, start_time=_ms_at(start_time), run_name=f"trial-{number}", tags=all_tags)
        self.runs[number] = run.info.run_id
        self._queue_params(run.info.run_id, flatten(params))

    def adopt_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], start_time: float | None = None) -> None:
        """Take over the run of a trial another writer started (its newest run under the
        parent), or start one if that writer never created it."""
        runs = [
            r
            for r in child_runs(self.client, self.experiment_id, self.parent_id)
            if r.data.tags.get(Tag.TRIAL_NUMBER) == str(number)
        ]
        if runs:
            self.runs[number] = max(runs, key=lambda r: r.info.start_time).info.run_id
        else:
            self.start_trial(number, params, tags, start_time)

    def tag_trial(self, number: int, tags: dict[str, str]) -> None:
        """Queue tags for a running trial's run (where it runs)."""
        run_id = self.runs.get(number)
        if run_id is not None:
            self._queue_tags(run_id, tags)

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float], at: float | None = None) -> None:
        self._queue_metrics(self.runs[number], metrics, epoch, _ms_at(at))

    def log_file(self, number: int, path: str, data: bytes, run_id: str | None = None) -> None:
        """`data` as the artifact `path` of trial `number`'s run, or of the run `run_id`
        (through a temporary file)."""
        folder, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="hpstudy-") as tmp:
            local = os.path.join(tmp, name)
            with open(local, "wb") as f:
                f.write(data)
            self.client.log_artifact(run_id or self.runs[number], local, folder or None)

    def end_trial(
        self,
        number: int,
        state: str,
        status: str,
        tags: dict[str, str],
        summary: dict[str, float],
        end_time: float | None = None,
    ) -> None:
        """Write the trial's last metrics, its summary and tags, then terminate its run."""
        run_id = self.runs.pop(number)
        step = int(summary.get("stopped_epoch", 0) or 0)
        self._queue_metrics(run_id, summary, step, _ms_at(end_time))
        self._queue_tags(run_id, {Tag.STATE: state, **tags})
        self._flush_run(run_id, end=(status, _ms_at(end_time)))

    def close(self) -> None:
        """Close the store's database connections (SQLite in WAL mode then checkpoints and
        removes its -wal/-shm files). MLflow keeps its store on the private
        `MlflowClient._tracking_client` (MLflow 3); nothing to close if that moves."""
        if self.sql is not None:
            self.sql.close()
            return
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()

    def _run_of(self, run_id: str) -> Any:
        """A run's experiment id and status (``.experiment_id``, ``.status``)."""
        return self.client.run(run_id) if self.sql is not None else self.client.get_run(run_id).info

    # -- batching -----------------------------------------------------------------------
    def _queue_metrics(self, run_id: str, metrics: dict[str, float], step: int, ts: int | None = None) -> None:
        ts = int(time.time() * 1000) if ts is None else ts
        self._metrics[run_id].extend(Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None)

    def _queue_params(self, run_id: str, params: dict[str, str]) -> None:
        self._params[run_id].extend(Param(k, v) for k, v in params.items())

    def _queue_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._tags[run_id].extend(RunTag(k, str(v)[:MAX_TEXT]) for k, v in tags.items())

    def discard(self) -> None:
        """Drop what is buffered (the server is unreachable; `study sync` fills it in)."""
        self._metrics.clear()
        self._params.clear()
        self._tags.clear()
        self.last_flush = time.monotonic()

    def maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        for run_id in list(set(self._metrics) | set(self._params) | set(self._tags)):
            self._flush_run(run_id)
        self.last_flush = time.monotonic()

    def _flush_run(self, run_id: str, end: tuple[str, int] | None = None) -> None:
        """What is queued for a run, in batches; with `end` (status, end time in ms) the run
        is terminated after them (on a SQL store in the same transaction as the last)."""
        metrics = self._metrics.pop(run_id, [])
        params = self._params.pop(run_id, [])
        tags = self._tags.pop(run_id, [])
        batches = []
        while metrics or params or tags:
            p, params = params[:_MAX_PARAMS], params[_MAX_PARAMS:]
            t, tags = tags[:_MAX_TAGS], tags[_MAX_TAGS:]
            room = _MAX_METRICS - len(p) - len(t)
            m, metrics = metrics[:room], metrics[room:]
            batches.append((m, p, t))
        for i, (m, p, t) in enumerate(batches):
            if self.sql is not None:
                self.client.log_batch(run_id, metrics=m, params=p, tags=t, end=end if i == len(batches) - 1 else None)
                continue
            from mlflow import entities  # MLflow's own client takes its own entities

            ms, ps, ts = [entities.Metric(*x) for x in m], [entities.Param(*x) for x in p], [entities.RunTag(*x) for x in t]
            self.client.log_batch(run_id, metrics=ms, params=ps, tags=ts)
        if end is not None and (self.sql is None or not batches):
            self.client.set_terminated(run_id, status=end[0], end_time=end[1])

    # -- reconciliation -----------------------------------------------------------------
    def trial_runs(self, numbers: Sequence[int] | None = None) -> dict[int, RunInfo]:
        """All the parent's children (every page), or one small search per trial of `numbers`."""
        if numbers is None:
            runs: Iterable[Any] = child_runs(self.client, self.experiment_id, self.parent_id)
        else:
            runs = (r for n in numbers for r in trial_run_pages(self.client, self.experiment_id, self.parent_id, n))
        out: dict[int, tuple[int, RunInfo]] = {}
        for run in runs:
            number = run.data.tags.get(Tag.TRIAL_NUMBER, "")
            if number.isdigit() and (int(number) not in out or run.info.start_time > out[int(number)][0]):
                out[int(number)] = (run.info.start_time, run_info(run))
        return {n: info for n, (_, info) in out.items()}

    def repair_trial(self, record: TrialRecord, metric: str | None, run: RunInfo | None) -> int:
        """Make trial `record`'s run agree with Optuna: create it when missing (its stored
        configuration as params, its real start time), log the objective metric's epochs that
        Optuna has and MLflow lacks (Optuna keeps that one metric per epoch; the others of an
        undelivered epoch are lost, and the run is tagged ``hpstudy.synced``), the summary
        metrics it lacks, its tags, and terminate it with its state's status and real end
        time. Returns the epoch points filled in."""
        synced = run is None
        if run is None:
            tags = {Tag.PARENT: self.parent_id, Tag.TRIAL_NUMBER: str(record.number), Tag.SYNCED: "true", **record.tags()}
            created = self.client.create_run(
                self.experiment_id, start_time=_ms(record.started), run_name=f"trial-{record.number}", tags=tags
            )
            run_id, have = created.info.run_id, frozenset[str]()
            self._queue_params(run_id, flatten(record.run_params()))
        else:
            run_id, have = run.run_id, run.metrics
        points = 0
        if metric is not None and record.intermediate:
            logged = {m.step for m in self.client.get_metric_history(run_id, metric)} if run is not None else set()
            ts = _ms(record.completed or record.started) or 0
            missing = {step: v for step, v in sorted(record.intermediate.items()) if step not in logged}
            for step, v in missing.items():
                self._queue_metrics(run_id, {metric: v}, int(step), ts)
            points = len(missing)
            synced = synced or points > 0
        summary = {k: v for k, v in record.summary_metrics(metric).items() if k not in have}
        self._queue_metrics(run_id, summary, int(record.attrs.get("stopped_epoch", 0) or 0), _ms(record.completed) or 0)
        tags = record.tags()
        if synced:
            tags[Tag.SYNCED] = "true"
        if run is not None and run.incomplete:
            tags[Tag.INCOMPLETE] = "false"
        self._queue_tags(run_id, tags)
        from study.record import mlflow_status

        self._flush_run(run_id, end=(mlflow_status(record.state), _ms(record.completed) or _ms_at(None)))
        return points
