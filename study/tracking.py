"""MLflow recording, written by the driver only (workers never talk to MLflow).

Layout: one experiment per study, named after it; one parent run for the study (the spec as
params and as ``spec.yaml``, progress metrics as the study runs); one child run per trial,
nested under the parent (tag ``mlflow.parentRunId``) and named ``trial-<number>``, with the
trial's configuration as params, every epoch's record as metrics with ``step=epoch``, final
summary metrics, and tags ``trial_number``, ``state``, ``stop_reason``, ``seed``.

Writes are batched: epoch metrics wait in a buffer and go out in `MlflowClient.log_batch`
calls (at most 1000 metrics each) every ``flush_seconds`` and when a trial ends. A run is
terminated with the status matching its trial's Optuna state (see `study.outcomes`), after
its last metrics are written.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from study.spec import SpecError
from study.storage import mask

PARENT_TAG = "mlflow.parentRunId"
ALLOWED = "sqlite:///PATH, http(s)://HOST:PORT (an MLflow server), postgresql://..., file:///PATH"
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100


class TrackingError(SpecError):
    """A bad or unreachable tracking URI."""


class TrackingFailure(RuntimeError):
    """MLflow failed while the study ran (the study stops and can be resumed)."""


def check(uri: str) -> str:
    """Validate a tracking URI without creating anything."""
    shown = mask(uri)
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise TrackingError(f"tracking_uri {shown!r}: needs a file path; allowed: {ALLOWED}")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise TrackingError(f"tracking_uri {shown!r}: folder {parent!r} does not exist")
        if os.path.isdir(path):
            raise TrackingError(f"tracking_uri {shown!r}: {path!r} is a directory, not a database file")
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise TrackingError(f"tracking_uri {shown!r}: {path!r} exists and is not an SQLite database")
        return uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                if r.status != 200:
                    raise TrackingError(f"tracking_uri {shown!r}: /health answered {r.status}, not an MLflow server?")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise TrackingError(f"tracking_uri {shown!r}: MLflow server not reachable ({getattr(e, 'reason', e)})") from None
        return uri
    if uri.startswith(("postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://")):
        from study.storage import _check_server

        try:
            _check_server(uri, shown)
        except SpecError as e:
            raise TrackingError(str(e).replace("storage", "tracking_uri", 1)) from None
        return uri
    if uri.startswith("file:"):
        path = uri.removeprefix("file://").removeprefix("file:")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise TrackingError(f"tracking_uri {shown!r}: folder of {path!r} does not exist")
        return uri
    raise TrackingError(f"tracking_uri {shown!r}: unknown kind of URI; allowed: {ALLOWED}")


def _quiet() -> None:
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'", max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


class Tracker:
    """The driver's MLflow writer for one study."""

    def __init__(self, uri: str, *, flush_seconds: float = 2.0) -> None:
        from mlflow.tracking import MlflowClient

        _quiet()  # after the import: mlflow sets its own logger's level when imported

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.flush_seconds = flush_seconds
        self.experiment_id = ""
        self.parent_id = ""
        self.runs: dict[int, str] = {}  # trial number -> run id
        self.on_parent: Any = None  # called with the parent run's id once it exists
        self._metrics: dict[str, list[Any]] = defaultdict(list)
        self._params: dict[str, list[Any]] = defaultdict(list)
        self._tags: dict[str, list[Any]] = defaultdict(list)
        self._last_flush = time.monotonic()

    # -- study --------------------------------------------------------------------------
    def start_study(
        self, name: str, spec: dict[str, Any], spec_yaml: str, parent_run_id: str | None = None, uid: str = ""
    ) -> str:
        """Create (or reopen, on resume) the experiment and the study's parent run. The
        parent is tagged ``hpstudy.study_uid``, so a resume finds it even if the driver died
        before recording its id in Optuna."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            self.experiment_id = self.client.create_experiment(name, tags={"hpstudy.study": name})
        else:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            self.experiment_id = exp.experiment_id
        if not parent_run_id and uid:
            found = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`hpstudy.study_uid` = '{uid}'", max_results=1
            )
            parent_run_id = found[0].info.run_id if found else None
        if parent_run_id:
            self.parent_id = parent_run_id
            self.client.update_run(parent_run_id, status="RUNNING")
            self.client.set_tag(parent_run_id, "resumed_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
            return self._parent_known()
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"hpstudy.role": "study", "hpstudy.study_uid": uid})
        self.parent_id = run.info.run_id
        self._queue_params(self.parent_id, flatten(spec))
        self.client.log_text(self.parent_id, spec_yaml, "spec.yaml")
        return self._parent_known()

    def _parent_known(self) -> str:
        if self.on_parent is not None:
            self.on_parent(self.parent_id)
        return self.parent_id

    def study_progress(self, metrics: dict[str, float], step: int) -> None:
        self._queue_metrics(self.parent_id, metrics, step)

    def end_study(self, status: str, summary: dict[str, float] | None = None) -> None:
        """Flush everything and close the parent run (FINISHED, or KILLED when interrupted)."""
        if summary:
            self._queue_metrics(self.parent_id, summary, 0)
        self.flush()
        self.client.set_terminated(self.parent_id, status=status)

    # -- trials -------------------------------------------------------------------------
    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str]) -> str:
        all_tags = {PARENT_TAG: self.parent_id, "trial_number": str(number), "state": "RUNNING", **tags}
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}", tags=all_tags)
        self.runs[number] = run.info.run_id
        self._queue_params(run.info.run_id, flatten(params))
        return run.info.run_id

    def tag_trial(self, number: int, tags: dict[str, str]) -> None:
        """Queue tags for a running trial's run (where it runs)."""
        from mlflow.entities import RunTag

        run_id = self.runs.get(number)
        if run_id is not None:
            self._tags[run_id].extend(RunTag(k, str(v)[:4000]) for k, v in tags.items())

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._queue_metrics(self.runs[number], metrics, epoch)

    def end_trial(self, number: int, state: str, status: str, tags: dict[str, str], summary: dict[str, float]) -> None:
        """Write the trial's last metrics, its summary and tags, then terminate its run."""
        from mlflow.entities import RunTag

        run_id = self.runs.pop(number)
        step = int(summary.get("stopped_epoch", 0) or 0)
        self._queue_metrics(run_id, summary, step)
        self._tags[run_id].extend(RunTag(k, str(v)[:4000]) for k, v in {"state": state, **tags}.items())
        self._flush_run(run_id)
        self.client.set_terminated(run_id, status=status)

    def close(self) -> None:
        """Close the store's database connections (SQLite in WAL mode then checkpoints and
        removes its -wal/-shm files)."""
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()

    # -- batching -----------------------------------------------------------------------
    def _queue_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._metrics[run_id].extend(Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None)

    def _queue_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        self._params[run_id].extend(Param(k, v) for k, v in params.items())

    def discard(self) -> None:
        """Drop what is buffered (the server is unreachable; `study sync` fills it in)."""
        self._metrics.clear()
        self._params.clear()
        self._tags.clear()
        self._last_flush = time.monotonic()

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        for run_id in list(set(self._metrics) | set(self._params) | set(self._tags)):
            self._flush_run(run_id)
        self._last_flush = time.monotonic()

    def _flush_run(self, run_id: str) -> None:
        metrics = self._metrics.pop(run_id, [])
        params = self._params.pop(run_id, [])
        tags = self._tags.pop(run_id, [])
        while metrics or params or tags:
            p, params = params[:_MAX_PARAMS], params[_MAX_PARAMS:]
            t, tags = tags[:_MAX_TAGS], tags[_MAX_TAGS:]
            room = _MAX_METRICS - len(p) - len(t)
            m, metrics = metrics[:room], metrics[room:]
            self.client.log_batch(run_id, metrics=m, params=p, tags=t)

    # -- reconciliation -----------------------------------------------------------------
    def trial_runs(self) -> dict[int, dict[str, str]]:
        """Every child run of the current parent by trial number: its run id, status and
        ``state`` tag."""
        out: dict[int, dict[str, str]] = {}
        for run in child_runs(self.client, self.experiment_id, self.parent_id):
            number = run.data.tags.get("trial_number")
            if number is not None and number.isdigit():
                out[int(number)] = {
                    "run_id": run.info.run_id,
                    "status": run.info.status,
                    "state": run.data.tags.get("state", ""),
                }
        return out

    def fix_run(self, run_id: str, state: str, status: str, tags: dict[str, str]) -> None:
        """Set a left-over run's tags and status to its trial's (reconciliation)."""
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:4000]) for k, v in {"state": state, **tags}.items()])
        self.client.set_terminated(run_id, status=status)
