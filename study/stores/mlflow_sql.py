"""MLflow runs written straight into an MLflow SQL tracking store (SQLite or PostgreSQL), and
read back, mostly without importing MLflow.

Two costs of MLflow's own client made the writer the largest cost of a short study on two
cores (benchmarks/orchestration_overhead.py): opening it (importing ``mlflow`` pulls in pandas,
its GenAI and gateway modules: about 2.5 s of CPU with the store's set-up, once per study and
per writer) and its ORM (about 25 ms of CPU per trial's run: four sessions per ``log_batch``,
each loading the run again). `SqlClient` does what the study writer does on every study with
SQLAlchemy Core statements on the store's tables, one transaction each:

- find an experiment by name or id, create one with its tags (a given artifact location);
- create a run as ``SqlAlchemyStore.create_run`` makes it (status RUNNING, artifact URI under
  the experiment's location, the ``mlflow.runName`` tag), find a run by one tag, read a run's
  status and experiment, set its status, set a tag, terminate it;
- metric points deduplicated, a NaN stored as 0 with ``is_nan``, +-inf as +-max float, and
  each key's latest value (``latest_metrics``) the largest by (step, timestamp, value); a param
  never changed (`ParamChanged`, as MLflow refuses it), tags replaced;
- artifacts of a local artifact location (``file://`` or a path) written as files, as MLflow's
  ``LocalArtifactRepository`` lays them out.

MLflow is not imported when the database already carries the schema revision of the installed
MLflow (its ``alembic_version``, compared with the head of MLflow's migration scripts read as
text). A new database, any other call (reconciliation searches, metric histories, restoring a
deleted experiment) and artifacts elsewhere go to an `MlflowClient`, opened on first need; a
new database is created by it (MLflow's migrations) before anything is written. An MLflow
server or any other store keeps the plain `MlflowClient` (`open_client`). This is the one
module that writes MLflow's tables; tests compare what it writes with what `MlflowClient`
writes, call by call.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

#: The MLflow major version whose tables this module writes.
MLFLOW_MAJOR = 3
_MAX_FLOAT = 1.7976931348623157e308
_DIALECTS = ("sqlite", "postgresql")
_CHUNK = 500  # keys per IN (...) list
_RUN_NAME, _USER = "mlflow.runName", "mlflow.user"


class Metric(NamedTuple):
    """A metric point as ``mlflow.entities.Metric`` has it (what `SqlClient.log_batch` takes)."""

    key: str
    value: float
    timestamp: int
    step: int


class Param(NamedTuple):
    key: str
    value: str


class RunTag(NamedTuple):
    key: str
    value: str


class ParamChanged(ValueError):
    """A param logged again with another value (MLflow refuses it with the same words)."""


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str


@dataclass
class RunRecord:
    """What `SqlClient` says of a run: its id, experiment, status, artifact URI and tags."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    artifact_uri: str
    tags: dict[str, str] = field(default_factory=dict)


def mlflow_version() -> str | None:
    """The installed MLflow's version, read without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return None


def sql_store(uri: str) -> bool:
    """Whether `uri` is a SQLite or PostgreSQL tracking store of the MLflow major version this
    module writes (an MLflow server, a file store or another major version is not)."""
    v = mlflow_version()
    return (
        v is not None
        and v.split(".")[0] == str(MLFLOW_MAJOR)
        and uri.startswith(("sqlite:///", "postgresql"))
        and uri.removeprefix("sqlite:///") not in ("", ":memory:")
    )


@cache
def schema_head() -> str | None:
    """The newest schema revision of the installed MLflow: the one revision of its migration
    scripts that no other revises, read as text (importing MLflow costs seconds)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in folder.glob("*.py"):
        text = script.read_text(encoding="utf-8", errors="replace")
        rev = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            revised.update(re.findall(r"['\"](\w+)['\"]", down.group(1)))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def make_engine(uri: str, pooled: bool = True) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(uri) if pooled else sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)


def _revision(engine: Any) -> str | None:
    """The database's MLflow schema revision (None for a database MLflow has not set up)."""
    from sqlalchemy import exc, text

    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except exc.DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def open_client(uri: str) -> Any:
    """What the study writer writes MLflow through: a `SqlClient` for a SQL store (MLflow
    opened only when the database is new or of another revision), else an `MlflowClient`."""
    if not sql_store(uri):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri)
    client = SqlClient(uri)
    if client.current():
        return client
    mlflow_client = client.mlflow()  # creates a new database (or refuses an old one, as MLflow says)
    if client.current():
        return client
    client.close()  # a schema this module does not know: MLflow writes it all
    return mlflow_client


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


def _local_path(uri: str) -> str | None:
    """The folder of a local artifact URI (``file:///...`` or an absolute path), else None."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost") and not parsed.query:
        return urllib.request.url2pathname(parsed.path)
    if not parsed.scheme and os.path.isabs(uri):
        return uri
    return None


def _under(location: str, *parts: str) -> str | None:
    """`parts` appended to the path of `location` as ``mlflow.utils.uri.append_to_uri_path``
    does for a plain location (no query or fragment); None for any other."""
    if "?" in location or "#" in location or not location:
        return None
    return "/".join([location.rstrip("/"), *parts])


class SqlClient:
    """The study writer's MLflow client on a SQL store at the installed MLflow's schema
    revision (`open_client` makes sure; see the module docstring): the calls it makes on every
    study written with SQLAlchemy Core, every other call passed to an `MlflowClient` opened on
    first need (`mlflow`)."""

    def __init__(self, uri: str) -> None:
        from sqlalchemy import column, table

        self.uri = uri
        self.engine = make_engine(uri)
        self._client: Any = None
        self._locations: dict[str, str] = {}  # experiment id -> artifact location
        self._current: bool | None = None
        # runs this client created and has not ended: their params and latest metrics, so a
        # batch need not read them back (no other process writes a run while its writer lives)
        self._known: dict[str, _Known] = {}

        def t(name: str, *cols: str) -> Any:
            return table(name, *(column(c) for c in cols))

        run_cols = "run_uuid name source_type source_name entry_point_name user_id status start_time end_time"
        run_cols += " source_version lifecycle_stage artifact_uri experiment_id deleted_time"
        self._runs = t("runs", *run_cols.split())
        self._tags = t("tags", "key", "value", "run_uuid")
        self._params = t("params", "key", "value", "run_uuid")
        self._metrics = t("metrics", "key", "value", "timestamp", "run_uuid", "step", "is_nan")
        self._latest = t("latest_metrics", "key", "value", "timestamp", "step", "is_nan", "run_uuid")
        exp_cols = "experiment_id name artifact_location lifecycle_stage creation_time last_update_time"
        self._experiments = t("experiments", *exp_cols.split())
        self._experiment_tags = t("experiment_tags", "key", "value", "experiment_id")
        from sqlalchemy.dialects import postgresql, sqlite

        self._insert: Any = sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert

    def current(self) -> bool:
        """Whether the database carries the installed MLflow's schema revision."""
        if self._current is None:
            head = schema_head()
            self._current = head is not None and _revision(self.engine) == head
        return self._current

    def mlflow(self) -> Any:
        """MLflow's own client on the same store (importing MLflow: seconds of CPU)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
            self._current = None
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.mlflow(), name)

    def close(self) -> None:
        """Close the database connections (SQLite in WAL mode then checkpoints and removes its
        -wal/-shm files), MLflow's too if it was opened. MLflow keeps its store on the
        private `MlflowClient._tracking_client` (MLflow 3); nothing to close if that moves."""
        self.engine.dispose()
        store = getattr(getattr(self._client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()

    # -- experiments ---------------------------------------------------------------------------
    def _experiment(self, where: Any) -> Experiment | None:
        from sqlalchemy import select

        c = self._experiments.c
        q = select(c.experiment_id, c.name, c.artifact_location, c.lifecycle_stage).where(where)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else Experiment(str(row[0]), str(row[1]), str(row[2] or ""), str(row[3]))

    def get_experiment_by_name(self, name: str) -> Any:
        return self._experiment(self._experiments.c.name == name)

    def get_experiment(self, experiment_id: str) -> Any:
        exp = self._experiment(self._experiments.c.experiment_id == int(experiment_id))
        return exp if exp is not None else self.mlflow().get_experiment(experiment_id)  # MLflow's error

    def create_experiment(self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None) -> str:
        """A new active experiment named `name` with `tags`; MLflow chooses the location when
        none is given."""
        if not (artifact_location or "").startswith("file:///"):  # MLflow resolves any other
            return str(self.mlflow().create_experiment(name, artifact_location=artifact_location, tags=tags))
        from sqlalchemy import exc

        now = _now_ms()
        row: dict[str, Any] = {"name": name, "artifact_location": artifact_location, "lifecycle_stage": "active"}
        row |= {"creation_time": now, "last_update_time": now}
        try:
            with self.engine.begin() as conn:
                exp_id = conn.execute(
                    self._experiments.insert().values(row).returning(self._experiments.c.experiment_id)
                ).scalar()
                if tags:
                    rows = [{"key": k, "value": str(v), "experiment_id": exp_id} for k, v in tags.items()]
                    conn.execute(self._experiment_tags.insert(), rows)
        except exc.IntegrityError:  # the name is taken (by another process since): MLflow's own error
            return str(self.mlflow().create_experiment(name, artifact_location=artifact_location, tags=tags))
        return str(exp_id)

    def _location(self, experiment_id: str) -> str:
        loc = self._locations.get(experiment_id)
        if loc is None:
            exp = self.get_experiment(experiment_id)
            if exp.lifecycle_stage != "active":
                raise ValueError(f"The experiment {experiment_id} must be in the 'active' state.")
            loc = self._locations[experiment_id] = exp.artifact_location
        return loc

    # -- runs ------------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        run_name: str | None = None,
    ) -> Any:
        """A new RUNNING run with `tags`, as ``MlflowClient.create_run`` makes it (a run
        without a name, MLflow names: it makes that one)."""
        tags = dict(tags or {})
        run_name = run_name or tags.get(_RUN_NAME)
        run_id = uuid.uuid4().hex
        artifacts = _under(self._location(str(experiment_id)), run_id, "artifacts") if run_name else None
        if artifacts is None:
            return self.mlflow().create_run(experiment_id, start_time=start_time, tags=tags, run_name=run_name)
        tags[_RUN_NAME] = str(run_name)
        start = start_time or _now_ms()
        user = tags.get(_USER, "unknown")
        row = {
            "run_uuid": run_id, "name": run_name, "artifact_uri": artifacts, "experiment_id": int(experiment_id),
            "source_type": "UNKNOWN", "source_name": "", "entry_point_name": "", "user_id": user, "status": "RUNNING",
            "start_time": start, "end_time": None, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
        }  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(self._runs.insert(), [row])
            conn.execute(self._tags.insert(), [{"run_uuid": run_id, "key": k, "value": v} for k, v in tags.items()])
        self._known[run_id] = _Known()
        return _Run(RunRecord(run_id, str(experiment_id), "RUNNING", start, artifacts, tags))

    def run(self, run_id: str) -> RunRecord:
        """A run's id, experiment, status, start, artifact URI and tags."""
        from sqlalchemy import select

        r, t = self._runs.c, self._tags.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(r.experiment_id, r.status, r.start_time, r.artifact_uri).where(r.run_uuid == run_id)
            ).first()
            if row is None:
                raise LookupError(f"Run '{run_id}' not found")
            tags = dict(conn.execute(select(t.key, t.value).where(t.run_uuid == run_id)).all())
        return RunRecord(run_id, str(row[0]), str(row[1]), int(row[2] or 0), str(row[3] or ""), tags)

    def run_ids_with_tag(self, experiment_id: str, key: str, value: str) -> list[str]:
        """The active runs of an experiment whose tag `key` is `value`, newest first."""
        from sqlalchemy import select

        r, t = self._runs.c, self._tags.c
        q = (
            select(r.run_uuid)
            .join_from(self._runs, self._tags, t.run_uuid == r.run_uuid)
            .where(r.experiment_id == int(experiment_id), r.lifecycle_stage == "active", t.key == key, t.value == value)
            .order_by(r.start_time.desc(), r.run_uuid)
        )
        with self.engine.connect() as conn:
            return [str(u) for (u,) in conn.execute(q)]

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        if name is not None:
            self.mlflow().update_run(run_id, status=status, name=name)
            return
        if status is not None:
            with self.engine.begin() as conn:
                conn.execute(self._runs.update().where(self._runs.c.run_uuid == run_id).values(status=status))

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        if key == _RUN_NAME:  # MLflow renames the run too
            self.mlflow().set_tag(run_id, key, value)
            return
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End a run: its status (default FINISHED) and end time (default now)."""
        self.log_batch(run_id, end=(status or "FINISHED", end_time or _now_ms()))

    # -- artifacts -------------------------------------------------------------------------------
    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Copy a file into the run's artifacts (a local artifact location), else MLflow's."""
        folder = _local_path(self.run(run_id).artifact_uri)
        if folder is None:
            self.mlflow().log_artifact(run_id, local_path, artifact_path)
            return
        dest = os.path.join(folder, os.path.normpath(artifact_path)) if artifact_path else folder
        os.makedirs(dest, exist_ok=True)
        shutil.copy2(local_path, os.path.join(dest, os.path.basename(local_path)))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        folder, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="hpstudy-") as tmp:
            local = os.path.join(tmp, name)
            with open(local, "w", encoding="utf-8") as f:
                f.write(text)
            self.log_artifact(run_id, local, folder or None)

    # -- one batch of a run's data ------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Any] = (),
        params: Sequence[Any] = (),
        tags: Sequence[Any] = (),
        *,
        end: tuple[str, int] | None = None,
        **_: Any,
    ) -> None:
        """Params, metrics (and their latest values) and tags of one run, and with `end`
        (status, end time in ms) its end, in one transaction."""
        known = self._known.get(run_id)
        held: dict[str, str] = {}
        latest: dict[str, tuple[int, int, float]] = {}
        with self.engine.begin() as conn:
            if params:
                held = self._write_params(conn, run_id, params, known)
            if metrics:
                latest = self._write_metrics(conn, run_id, metrics, known)
            if tags:
                last = {t.key: t.value for t in tags}  # the last value of a key repeated in the batch
                stmt = self._insert(self._tags)
                stmt = stmt.on_conflict_do_update(index_elements=["key", "run_uuid"], set_={"value": stmt.excluded.value})
                conn.execute(stmt, [{"run_uuid": run_id, "key": k, "value": v} for k, v in last.items()])
            if end is not None:
                conn.execute(self._runs.update().where(self._runs.c.run_uuid == run_id).values(status=end[0], end_time=end[1]))
        if known is not None:  # committed: what the run now holds
            known.params.update(held)
            known.latest.update(latest)
        if end is not None:
            self._known.pop(run_id, None)

    def _write_params(self, conn: Any, run_id: str, params: Sequence[Any], known: _Known | None) -> dict[str, str]:
        """Write the params the run lacks (a changed one is refused); the batch's params."""
        from sqlalchemy import select

        new = {p.key: p.value for p in params}
        c = self._params.c
        have: dict[str, str] = {}
        if known is not None:
            have = {k: known.params[k] for k in new if k in known.params}
        else:
            for keys in _chunks(list(new)):
                have.update(conn.execute(select(c.key, c.value).where(c.run_uuid == run_id, c.key.in_(keys))).all())
        changed = [{"key": k, "old_value": have[k], "new_value": v} for k, v in new.items() if k in have and have[k] != v]
        if changed:
            raise ParamChanged(
                f"Changing param values is not allowed. Params were already logged='{changed}' for run ID='{run_id}'."
            )
        rows = [{"run_uuid": run_id, "key": k, "value": v} for k, v in new.items() if k not in have]
        if rows:
            conn.execute(self._params.insert(), rows)
        return new

    def _write_metrics(
        self, conn: Any, run_id: str, metrics: Sequence[Any], known: _Known | None
    ) -> dict[str, tuple[int, int, float]]:
        """Write the metric points and the latest values they change; those latest values."""
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
        if known is not None:
            have = {k: known.latest[k] for k in latest if k in known.latest}
        else:
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
        return {r["key"]: (r["step"], r["timestamp"], r["value"]) for r in fresh + newer}


@dataclass
class _Known:
    """What a run this client created holds: its params and each metric's latest (step,
    timestamp, value), updated once a batch has committed."""

    params: dict[str, str] = field(default_factory=dict)
    latest: dict[str, tuple[int, int, float]] = field(default_factory=dict)


class _Run:
    """A created run as ``MlflowClient.create_run`` returns it, as far as callers read it."""

    def __init__(self, record: RunRecord) -> None:
        self.info = record


# -- reading trial runs back -------------------------------------------------------------------
def sql_reader(uri: str) -> SqlRunReader | None:
    """A `SqlRunReader` when `uri` is a SQLite or PostgreSQL tracking store of the MLflow
    version this module was written for (checked without importing MLflow), else None."""
    return SqlRunReader(uri) if sql_store(uri) else None


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
            self._engine = make_engine(self.uri, pooled=False)
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
