"""Trial runs written straight into an MLflow SQL tracking store (SQLite or PostgreSQL).

MLflow's SQLAlchemy store spends about 25 ms of CPU on one trial's run in its ORM: creating
the run, one ``log_batch`` (four sessions, each loading the run again, metrics and their
latest values compared object by object) and terminating it. On a two-core machine that was
the largest cost of a study (benchmarks/orchestration_overhead.py). `FastRunClient` does the
same three writes with SQLAlchemy Core statements on MLflow's own table definitions
(``mlflow.store.tracking.dbmodels.models``) and MLflow's own engine, one transaction each,
and keeps what MLflow's store would write:

- a run row as ``SqlAlchemyStore.create_run`` makes it (status RUNNING, artifact URI under the
  experiment's location, the ``mlflow.runName`` tag);
- metric points deduplicated, a NaN stored as 0 with ``is_nan``, +-inf as +-max float, and
  each key's latest value (``latest_metrics``) the largest by (step, timestamp, value);
- a param never changed (an `MlflowException` as MLflow raises), tags replaced;
- terminating sets the status and end time.

Everything else (and every call for an MLflow server, another database or another MLflow
major version) goes to the `MlflowClient` it wraps. This is the one module that writes
MLflow's tables directly; a test compares its runs with runs written by `MlflowClient`.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

#: The MLflow major version whose tables this module writes.
MLFLOW_MAJOR = 3
_MAX_FLOAT = 1.7976931348623157e308
_DIALECTS = ("sqlite", "postgresql")
_CHUNK = 500  # keys per IN (...) list


def fast_client(client: Any) -> Any:
    """`FastRunClient` around `client` when its store is a SQLite or PostgreSQL database of
    the MLflow version this module was written for; otherwise `client` itself."""
    import mlflow

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is None or engine.dialect.name not in _DIALECTS or int(mlflow.__version__.split(".")[0]) != MLFLOW_MAJOR:
        return client
    return FastRunClient(client, engine)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sanitize(value: float) -> tuple[bool, float]:
    """(is_nan, stored value), as ``SqlAlchemyStore.sanitize_metric_value``."""
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, _MAX_FLOAT if value > 0 else -_MAX_FLOAT
    return False, value


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


class FastRunClient:
    """An `MlflowClient` whose ``create_run``, ``log_batch`` and ``set_terminated`` write the
    store's tables directly (see the module docstring); every other call goes to `client`."""

    def __init__(self, client: Any, engine: Any) -> None:
        from mlflow.store.tracking.dbmodels import models

        self._client = client
        self.engine = engine
        self._runs = models.SqlRun.__table__
        self._tags = models.SqlTag.__table__
        self._params = models.SqlParam.__table__
        self._metrics = models.SqlMetric.__table__
        self._latest = models.SqlLatestMetric.__table__
        self._locations: dict[str, str] = {}  # experiment id -> artifact location
        from sqlalchemy.dialects import postgresql, sqlite

        self._insert: Any = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    # -- runs ------------------------------------------------------------------------------
    def _location(self, experiment_id: str) -> str:
        loc = self._locations.get(experiment_id)
        if loc is None:
            exp = self._client.get_experiment(experiment_id)
            if exp.lifecycle_stage != "active":
                from mlflow.exceptions import MlflowException

                raise MlflowException(f"The experiment {experiment_id} must be in the 'active' state.")
            loc = self._locations[experiment_id] = exp.artifact_location
        return loc

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        run_name: str | None = None,
    ) -> Any:
        """A new RUNNING run with `tags`, as ``MlflowClient.create_run`` makes it."""
        from mlflow.entities import Run, RunData, RunInfo, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER
        from mlflow.utils.uri import append_to_uri_path

        tags = dict(tags or {})
        run_name = run_name or tags.get(MLFLOW_RUN_NAME)
        if not run_name:  # MLflow makes up a name: leave that to it
            return self._client.create_run(experiment_id, start_time=start_time, tags=tags)
        tags[MLFLOW_RUN_NAME] = run_name
        run_id = uuid.uuid4().hex
        start = start_time or _now_ms()
        user = tags.get(MLFLOW_USER, "unknown")
        artifacts = append_to_uri_path(self._location(str(experiment_id)), run_id, "artifacts")
        row = {
            "run_uuid": run_id, "name": run_name, "artifact_uri": artifacts, "experiment_id": int(experiment_id),
            "source_type": "UNKNOWN", "source_name": "", "entry_point_name": "", "user_id": user, "status": "RUNNING",
            "start_time": start, "end_time": None, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
        }  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(self._runs.insert(), [row])
            conn.execute(self._tags.insert(), [{"run_uuid": run_id, "key": k, "value": v} for k, v in tags.items()])
        info = RunInfo(run_id, str(experiment_id), user, "RUNNING", start, None, "active", artifacts, run_name)
        return Run(info, RunData(tags=[RunTag(k, v) for k, v in tags.items()]))

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End a run: its status (default FINISHED) and end time (default now)."""
        stmt = self._runs.update().where(self._runs.c.run_uuid == run_id)
        with self.engine.begin() as conn:
            conn.execute(stmt.values(status=status or "FINISHED", end_time=end_time or _now_ms()))

    # -- one batch of a run's data ------------------------------------------------------------
    def log_batch(
        self, run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (), tags: Sequence[Any] = (), **_: Any
    ) -> None:
        """Params, metrics (and their latest values) and tags of one run, in one transaction."""
        with self.engine.begin() as conn:
            if params:
                self._write_params(conn, run_id, params)
            if metrics:
                self._write_metrics(conn, run_id, metrics)
            if tags:
                last = {t.key: t.value for t in tags}  # the last value of a key repeated in the batch
                stmt = self._insert(self._tags)
                stmt = stmt.on_conflict_do_update(index_elements=["key", "run_uuid"], set_={"value": stmt.excluded.value})
                conn.execute(stmt, [{"run_uuid": run_id, "key": k, "value": v} for k, v in last.items()])

    def _write_params(self, conn: Any, run_id: str, params: Sequence[Any]) -> None:
        from sqlalchemy import select

        new = {p.key: p.value for p in params}
        c = self._params.c
        have: dict[str, str] = {}
        for keys in _chunks(list(new)):
            have.update(conn.execute(select(c.key, c.value).where(c.run_uuid == run_id, c.key.in_(keys))).all())
        changed = [{"key": k, "old_value": have[k], "new_value": v} for k, v in new.items() if k in have and have[k] != v]
        if changed:
            from mlflow.exceptions import MlflowException

            raise MlflowException(
                f"Changing param values is not allowed. Params were already logged='{changed}' for run ID='{run_id}'."
            )
        rows = [{"run_uuid": run_id, "key": k, "value": v} for k, v in new.items() if k not in have]
        if rows:
            conn.execute(self._params.insert(), rows)

    def _write_metrics(self, conn: Any, run_id: str, metrics: Sequence[Any]) -> None:
        from sqlalchemy import select

        points: dict[tuple[str, int, int, float, bool], dict[str, Any]] = {}
        latest: dict[str, dict[str, Any]] = {}
        for m in metrics:
            is_nan, value = _sanitize(float(m.value))
            row = {"run_uuid": run_id, "key": m.key, "value": value, "timestamp": m.timestamp, "step": m.step, "is_nan": is_nan}
            points.setdefault((m.key, m.timestamp, m.step, value, is_nan), row)
            best = latest.get(m.key)
            if best is None or (m.step, m.timestamp, value) > (best["step"], best["timestamp"], best["value"]):
                latest[m.key] = row
        conn.execute(self._insert(self._metrics).on_conflict_do_nothing(), list(points.values()))
        c = self._latest.c
        have: dict[str, tuple[int, int, float]] = {}
        for keys in _chunks(list(latest)):
            q = select(c.key, c.step, c.timestamp, c.value).where(c.run_uuid == run_id, c.key.in_(keys))
            have.update((k, (s, t, v)) for k, s, t, v in conn.execute(q).all())
        fresh = [row for k, row in latest.items() if k not in have]
        newer = [row for k, row in latest.items() if k in have and (row["step"], row["timestamp"], row["value"]) > have[k]]
        if fresh:
            conn.execute(self._latest.insert(), fresh)
        if newer:
            from sqlalchemy import bindparam

            stmt = (
                self._latest.update()
                .where(c.run_uuid == bindparam("b_run"), c.key == bindparam("b_key"))
                .values(
                    value=bindparam("b_value"), timestamp=bindparam("b_ts"), step=bindparam("b_step"), is_nan=bindparam("b_nan")
                )
            )
            conn.execute(
                stmt,
                [
                    {
                        "b_run": run_id,
                        "b_key": r["key"],
                        "b_value": r["value"],
                        "b_ts": r["timestamp"],
                        "b_step": r["step"],
                        "b_nan": r["is_nan"],
                    }
                    for r in newer
                ],
            )


# -- reading trial runs back -------------------------------------------------------------------
def sql_reader(uri: str) -> SqlRunReader | None:
    """A `SqlRunReader` when `uri` is a SQLite or PostgreSQL tracking store of the MLflow
    version this module was written for (checked without importing MLflow), else None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major = int(version("mlflow").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return None
    if major != MLFLOW_MAJOR or not uri.startswith(("sqlite:///", "postgresql")):
        return None
    return SqlRunReader(uri)


class SqlRunReader:
    """A study's trial runs read from the tracking store's tables in two queries, without
    importing MLflow (about two seconds of CPU): what ``MlflowClient.search_runs`` on the
    parent's children gives, for the runs of the trials asked for or all of them. Deleted
    runs are left out, as by search_runs; a NaN metric reads as NaN."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(self.uri, poolclass=sqlalchemy.pool.NullPool)
        return self._engine

    def trial_runs(self, parent_run_id: str, numbers: Sequence[int] | None) -> list[tuple[int, str, str, int, dict[str, float]]]:
        """(trial number, run id, status, start time, latest metrics) of each run nested under
        `parent_run_id` that carries a trial number (of `numbers`, or any)."""
        from sqlalchemy import bindparam, text

        from study.record import Tag

        query = (
            "SELECT r.run_uuid, r.status, r.start_time, n.value FROM runs r"
            " JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = :parent_key AND p.value = :parent"
            " JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = :number_key"
            " WHERE r.lifecycle_stage = 'active'"
        )
        params: dict[str, Any] = {"parent_key": Tag.PARENT, "parent": parent_run_id, "number_key": Tag.TRIAL_NUMBER}
        stmt = text(query)
        if numbers is not None:
            stmt = text(query + " AND n.value IN :numbers").bindparams(bindparam("numbers", expanding=True))
            params["numbers"] = [str(n) for n in numbers]
        with self.engine.connect() as conn:
            runs = [(str(uid), str(status), int(start or 0), str(n)) for uid, status, start, n in conn.execute(stmt, params)]
            metrics: dict[str, dict[str, float]] = {uid: {} for uid, *_ in runs}
            q = text("SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN :ids")
            q = q.bindparams(bindparam("ids", expanding=True))
            for ids in _chunks([uid for uid, *_ in runs]):
                for uid, key, value, is_nan in conn.execute(q, {"ids": list(ids)}):
                    metrics[uid][key] = math.nan if is_nan else float(value)
        return [(int(n), uid, status, start, metrics[uid]) for uid, status, start, n in runs if n.isdigit()]
