"""Optuna storage: where a study's trials live (the source of truth), from one URL.

The default is an Optuna journal file: an append-only log of storage operations, so a
driver killed mid-study leaves a readable file, and it costs far less per trial than SQLite
(benchmarks/orchestration_overhead.py measures both).

This is the one module that reaches into Optuna's internals (its storages', and one function
of its TPE sampler: `vectorized_tpe_math`), each use commented and checked against the Optuna
version it was written for (`OPTUNA_MAJOR`); anything else uses Optuna's public API.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import optuna.samplers._tpe._truncnorm  # TPE's log Phi: `vectorized_tpe_math`
import optuna.storages._cached_storage  # internals used below (Optuna 5)
import optuna.study._tell
from optuna.trial import TrialState

from study.record import FINAL_STATES, SPEC_DIR, StudyAttr, TrialAttr, TrialRecord, spec_from_record, stored_spec
from study.spec import SpecError, StudySpec
from study.stores import journal
from study.stores.journal import open_journal, shared
from study.stores.uris import DEFAULT_STORAGE, check_storage, file_path, journal_path, mask, resolve, scheme

#: The Optuna major version the internals below were written against.
OPTUNA_MAJOR = 5
LOCK_GRACE_SECONDS = 5


def _optuna_major() -> int:
    return int(optuna.__version__.split(".", 1)[0])


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Open the storage at `url` (resolved), creating the file or tables if needed."""
    url = resolve(url)
    if scheme(url) == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        path = journal_path(url)
        if url == DEFAULT_STORAGE:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        if _optuna_major() != OPTUNA_MAJOR:  # study.stores.journal reaches into Optuna 5's journal storage
            # a write holds the lock for about a millisecond, so a lock unchanged for 5 s was
            # left by a killed driver (Optuna's default waits 30 s before breaking it)
            lock = JournalFileSymlinkLock(path, grace_period=LOCK_GRACE_SECONDS)
            return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=lock))
        return open_journal(path)
    if _optuna_major() != OPTUNA_MAJOR:
        return optuna.storages.RDBStorage(url)
    return FastRDBStorage(url)


@dataclass(frozen=True)
class Counts:
    """A study's trials counted: by state name, finished ones by stop reason ("-" for none),
    and those a study's target counts (finished, not superseded by a re-run)."""

    states: dict[str, int]
    stop_reasons: dict[str, int]
    counted: int


def _unwrap(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The storage under Optuna's cache. Internals (Optuna 5): `_CachedStorage._backend`."""
    return storage._backend if isinstance(storage, optuna.storages._cached_storage._CachedStorage) else storage


def _fast(study: optuna.Study) -> FastRDBStorage | None:
    """hpstudy's database storage under `study`, if that is its storage (`Study._storage`)."""
    backend = _unwrap(study._storage)
    return backend if isinstance(backend, FastRDBStorage) else None


def counts(study: optuna.Study) -> Counts:
    """The study's `Counts`: grouped in the database (no trial read) for hpstudy's database
    storage, from every trial otherwise (a journal is read whole anyway)."""
    fast = _fast(study)
    if fast is not None:
        return fast.counts(study._study_id)
    trials = study.get_trials(deepcopy=False)
    return Counts(
        states=dict(Counter(t.state.name for t in trials)),
        stop_reasons=dict(Counter(str(t.user_attrs.get(TrialAttr.STOP_REASON, "-")) for t in trials if t.state in FINAL_STATES)),
        counted=sum(TrialRecord.of(t).counted for t in trials),
    )


def top_trials(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The `k` best completed trials by the first objective, ties by number: for hpstudy's
    database storage only those `k` trials are read whole."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    fast = _fast(study)
    if fast is not None:
        return fast.top(study._study_id, k, maximize)
    sign = -1.0 if maximize else 1.0
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))[:k]


def trials_in(study: optuna.Study, states: Iterable[TrialState]) -> list[optuna.trial.FrozenTrial]:
    """The study's trials in `states` (by number); for hpstudy's database storage, read
    without the others (Optuna's cache reads every unfinished and new trial first)."""
    fast = _fast(study)
    if fast is not None:
        return sorted(fast.get_all_trials(study._study_id, deepcopy=False, states=tuple(states)), key=lambda t: t.number)
    return study.get_trials(deepcopy=False, states=tuple(states))


def user_attr_values(study: optuna.Study, key: str) -> list[Any]:
    """The values user attr `key` takes over the study's trials, each once (a value that is a
    list or dict is compared by its JSON)."""
    fast = _fast(study)
    if fast is not None:
        return fast.user_attr_values(study._study_id, key)
    seen: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False):
        if key in t.user_attrs:
            value = t.user_attrs[key]
            seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


#: `FastRDBStorage` reads the rows of at most this many trials by their ids.
_ID_LIST = 500
#: The states in which a trial may be written (Optuna's `check_trial_is_updatable`).
_UPDATABLE = [TrialState.RUNNING, TrialState.WAITING]


def _pg_insert(table: Any) -> Any:
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table)


def _sqlite_insert(table: Any) -> Any:
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


#: INSERT ... ON CONFLICT DO UPDATE, by database (SQLite has it from 3.24).
_UPSERT = {"postgresql": _pg_insert, **({"sqlite": _sqlite_insert} if sqlite3.sqlite_version_info >= (3, 24, 0) else {})}


class FastRDBStorage(optuna.storages.RDBStorage):
    """Optuna's database storage whose trials are read, and whose running trials' reports,
    params and attrs are written, with SQLAlchemy Core statements instead of its ORM.

    Optuna's ORM builds an object per stored row (a trial's params, values, user and system
    attrs, every epoch's intermediate value), about a millisecond of CPU per trial read, which
    made `study status` and `study best` on a PostgreSQL study of thousands of trials take
    seconds; and each write of a running trial (an epoch's report, a param, an attr: some
    twenty a trial) took 3-4 ms of the driver's CPU in the ORM, which made the driver the
    bottleneck of a PostgreSQL study on many slots. Here a read is six queries, and a write
    one transaction of its check (the trial exists and runs: Optuna's KeyError and
    `UpdateFinishedTrialError` otherwise) and its update-or-insert; several attrs are one
    transaction (`set_trial_user_attrs`). What is stored and read back is Optuna's (tests
    compare both ways on SQLite and PostgreSQL). Creating studies and trials and finishing
    trials are Optuna's own code. Internals (Optuna 5): `RDBStorage._get_trials`, which
    `get_all_trials` and Optuna's `_CachedStorage` (its incremental reads) call,
    `RDBStorage._set_trial_param` (what `_CachedStorage.set_trial_param` calls), and the table
    definitions and stored-value conversions of `optuna.storages._rdb.models`. Attributes'
    keys and short strings are one object each (`study.stores.journal.shared`), as in the
    journal's."""

    # -- reads ---------------------------------------------------------------------------
    def _get_trials(
        self, study_id: int, states: Any, included_trial_ids: set[int], trial_id_greater_than: int
    ) -> list[optuna.trial.FrozenTrial]:
        from optuna.storages._rdb import models
        from sqlalchemy import or_, select

        t = models.TrialModel.__table__.c
        where = [t.study_id == study_id]
        if states is not None:
            where.append(t.state.in_(list(states)))
        if trial_id_greater_than > -1:
            included = [i for i in included_trial_ids if i <= trial_id_greater_than]
            newer = t.trial_id > trial_id_greater_than
            where.append(or_(t.trial_id.in_(included), newer) if included else newer)
        with self.engine.connect() as conn:
            s = models.StudyModel.__table__.c
            if conn.execute(select(s.study_id).where(s.study_id == study_id)).first() is None:
                raise KeyError(models.NOT_FOUND_MSG)
            return self._read(conn, where)

    def get_trial(self, trial_id: int) -> optuna.trial.FrozenTrial:
        from optuna.storages._rdb import models

        with self.engine.connect() as conn:
            found = self._read(conn, [models.TrialModel.__table__.c.trial_id == trial_id])
        if not found:
            raise KeyError(models.NOT_FOUND_MSG)
        return found[0]

    # -- reads of a study's summary (`study status`, `study best`) ----------------------------
    def counts(self, study_id: int) -> Counts:
        """`Counts` by three grouped queries, no trial read."""
        from optuna.storages._rdb import models
        from sqlalchemy import func, select

        t = models.TrialModel.__table__.c
        a = models.TrialUserAttributeModel.__table__.c
        final = list(FINAL_STATES)
        with self.engine.connect() as conn:
            states = {
                (s.name if isinstance(s, TrialState) else str(s)): n
                for s, n in conn.execute(select(t.state, func.count()).where(t.study_id == study_id).group_by(t.state))
            }
            by_key: dict[str, Counter[str]] = {TrialAttr.STOP_REASON: Counter(), TrialAttr.RETRIED: Counter()}
            rows = conn.execute(
                select(a.key, a.value_json, func.count())
                .select_from(models.TrialUserAttributeModel.__table__.join(models.TrialModel.__table__))
                .where(t.study_id == study_id, t.state.in_(final), a.key.in_(list(by_key)))
                .group_by(a.key, a.value_json)
            )
            for key, value, n in rows:
                by_key[key][value] += n
        finished = sum(states.get(s.name, 0) for s in final)
        reasons = Counter({str(json.loads(v)): n for v, n in by_key[TrialAttr.STOP_REASON].items()})
        if finished > reasons.total():
            reasons["-"] += finished - reasons.total()
        retried = sum(n for v, n in by_key[TrialAttr.RETRIED].items() if json.loads(v))  # `TrialRecord.counted` in SQL
        return Counts(states=states, stop_reasons=dict(reasons), counted=finished - retried)

    def top(self, study_id: int, k: int, maximize: bool) -> list[optuna.trial.FrozenTrial]:
        """The `k` best completed trials by the first objective (ties by number): every
        completed trial's value read and ranked, then those `k` trials read."""
        from optuna.storages._rdb import models
        from sqlalchemy import select

        t = models.TrialModel.__table__.c
        v = models.TrialValueModel.__table__.c
        sign = -1.0 if maximize else 1.0
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.trial_id, t.number, v.value, v.value_type)
                .select_from(models.TrialModel.__table__.join(models.TrialValueModel.__table__))
                .where(t.study_id == study_id, t.state == TrialState.COMPLETE, v.objective == 0)
            ).all()
            ranked = sorted(rows, key=lambda r: (sign * models.TrialValueModel.stored_repr_to_value(r[2], r[3]), r[1]))
            ids = [r[0] for r in ranked[:k]]
            found = {tr._trial_id: tr for tr in self._read(conn, [t.trial_id.in_(ids)])} if ids else {}
        return [found[i] for i in ids]

    def user_attr_values(self, study_id: int, key: str) -> list[Any]:
        """The distinct values of user attr `key` over the study's trials."""
        from optuna.storages._rdb import models
        from sqlalchemy import select

        t = models.TrialModel.__table__.c
        a = models.TrialUserAttributeModel.__table__.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(a.value_json)
                .select_from(models.TrialUserAttributeModel.__table__.join(models.TrialModel.__table__))
                .where(t.study_id == study_id, a.key == key)
                .distinct()
            )
            return [json.loads(value) for (value,) in rows]

    def _read(self, conn: Any, where: list[Any]) -> list[optuna.trial.FrozenTrial]:
        """The trials matching `where` (clauses on the trials table), by trial id."""
        from optuna.distributions import json_to_distribution
        from optuna.storages._rdb import models
        from sqlalchemy import select

        t = models.TrialModel.__table__.c

        def rows(model: Any, *cols: str) -> Any:
            """(trial id, cols...) of a trial's table for the trials read, in stored order: by
            their ids when few (a running study's incremental read), else by the same filter."""
            c = model.__table__.c
            key = next(iter(model.__table__.primary_key.columns))
            chosen = list(got) if len(got) <= _ID_LIST else select(t.trial_id).where(*where).scalar_subquery()
            return conn.execute(select(c.trial_id, *(c[k] for k in cols)).where(c.trial_id.in_(chosen)).order_by(key))

        base = conn.execute(
            select(t.trial_id, t.number, t.state, t.datetime_start, t.datetime_complete).where(*where).order_by(t.trial_id)
        ).all()
        if not base:
            return []
        got: dict[int, dict[str, Any]] = {r[0]: {"params": [], "values": {}, "user": {}, "system": {}, "steps": {}} for r in base}
        dists: dict[str, Any] = {}  # one distribution object per distinct JSON
        for tid, name, value, dist in rows(models.TrialParamModel, "param_name", "param_value", "distribution_json"):
            if dist not in dists:
                dists[dist] = json_to_distribution(dist)
            got[tid]["params"].append((shared(name), value, dists[dist]))
        for tid, objective, value, kind in rows(models.TrialValueModel, "objective", "value", "value_type"):
            got[tid]["values"][objective] = models.TrialValueModel.stored_repr_to_value(value, kind)
        inter = models.TrialIntermediateValueModel
        for tid, step, value, kind in rows(inter, "step", "intermediate_value", "intermediate_value_type"):
            got[tid]["steps"][step] = inter.stored_repr_to_intermediate_value(value, kind)
        for model, slot in ((models.TrialUserAttributeModel, "user"), (models.TrialSystemAttributeModel, "system")):
            for tid, key, value in rows(model, "key", "value_json"):
                got[tid][slot][shared(key)] = shared(json.loads(value))
        out = []
        for tid, number, state, start, complete in base:
            g = got[tid]
            values = [g["values"][k] for k in range(len(g["values"]))] if g["values"] else None
            out.append(
                optuna.trial.FrozenTrial(
                    number=number,
                    state=state,
                    value=None,
                    values=values,
                    datetime_start=_local(start),
                    datetime_complete=_local(complete),
                    params={name: d.to_external_repr(v) for name, v, d in g["params"]},
                    distributions={name: d for name, _, d in g["params"]},
                    user_attrs=g["user"],
                    system_attrs=g["system"],
                    intermediate_values=g["steps"],
                    trial_id=tid,
                )
            )
        return out

    # -- writes of a running trial -------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[Any]:
        """A transaction, its errors as Optuna's writes have them: a unique key another
        process wrote at the same time is ignored, any other database error is Optuna's
        `StorageInternalError`."""
        from sqlalchemy import exc

        try:
            with self.engine.begin() as conn:
                yield conn
        except exc.IntegrityError:
            return
        except exc.SQLAlchemyError as e:
            raise optuna.exceptions.StorageInternalError(f"a write to the Optuna database failed: {e}") from e

    def _updatable(self, conn: Any, trial_id: int) -> int:
        """The trial's study id; Optuna's KeyError if there is no such trial, its
        `UpdateFinishedTrialError` if it has finished."""
        from optuna.storages._rdb import models
        from sqlalchemy import select

        t = models.TrialModel.__table__.c
        row = conn.execute(select(t.state, t.study_id).where(t.trial_id == trial_id)).first()
        if row is None:
            raise KeyError(models.NOT_FOUND_MSG)
        self.check_trial_is_updatable(trial_id, row[0])
        return int(row[1])

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        """One statement on PostgreSQL and SQLite: the value inserted (or replaced) only if
        the trial exists and has not finished; when nothing was written, the check says why."""
        from optuna.storages._rdb import models
        from sqlalchemy import insert, literal, select, update

        model = models.TrialIntermediateValueModel
        stored, kind = model.intermediate_value_to_stored_repr(intermediate_value)
        iv, t = model.__table__, models.TrialModel.__table__.c
        if self.engine.name in _UPSERT:
            upsert = _UPSERT[self.engine.name](iv)
            cols = ["trial_id", "step", "intermediate_value", "intermediate_value_type"]
            source = select(
                t.trial_id,
                literal(step),
                literal(stored, iv.c.intermediate_value.type),
                literal(kind, iv.c.intermediate_value_type.type),
            ).where(t.trial_id == trial_id, t.state.in_(_UPDATABLE))
            stmt = upsert.from_select(cols, source).on_conflict_do_update(
                index_elements=[iv.c.trial_id, iv.c.step],
                set_={
                    "intermediate_value": upsert.excluded.intermediate_value,
                    "intermediate_value_type": upsert.excluded.intermediate_value_type,
                },
            )
            with self._writing() as conn:
                if conn.execute(stmt).rowcount:
                    return
                self._updatable(conn, trial_id)  # raises: no such trial, or finished
            return
        with self._writing() as conn:
            self._updatable(conn, trial_id)
            changed = conn.execute(
                update(iv)
                .where(iv.c.trial_id == trial_id, iv.c.step == step)
                .values(intermediate_value=stored, intermediate_value_type=kind)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(iv).values(trial_id=trial_id, step=step, intermediate_value=stored, intermediate_value_type=kind)
                )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_user_attrs(trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attrs of a running trial in one transaction."""
        from optuna.storages._rdb import models
        from sqlalchemy import bindparam, insert, select, update

        table = models.TrialUserAttributeModel.__table__
        c = table.c
        with self._writing() as conn:
            self._updatable(conn, trial_id)
            stored = set(conn.execute(select(c.key).where(c.trial_id == trial_id, c.key.in_(list(attrs)))).scalars())
            old = [{"k": k, "v": json.dumps(v)} for k, v in attrs.items() if k in stored]
            new = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items() if k not in stored]
            if old:
                where = (c.trial_id == trial_id, c.key == bindparam("k"))
                conn.execute(update(table).where(*where).values(value_json=bindparam("v")), old)
            if new:
                conn.execute(insert(table), new)

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: optuna.distributions.BaseDistribution,
        previous_distribution: optuna.distributions.BaseDistribution | None,
    ) -> None:
        from optuna.distributions import check_distribution_compatibility, distribution_to_json, json_to_distribution
        from optuna.storages._rdb import models
        from sqlalchemy import insert, select

        p, t = models.TrialParamModel.__table__, models.TrialModel.__table__.c
        with self._writing() as conn:
            study_id = self._updatable(conn, trial_id)
            if previous_distribution is None:  # the param as another trial of the study has it
                first = conn.execute(
                    select(p.c.distribution_json)
                    .join(models.TrialModel.__table__, p.c.trial_id == t.trial_id)
                    .where(t.study_id == study_id, p.c.param_name == param_name)
                    .limit(1)
                ).first()
                if first is not None:
                    previous_distribution = json_to_distribution(first[0])
            if previous_distribution is not None:
                check_distribution_compatibility(previous_distribution, distribution)
            conn.execute(
                insert(p).values(
                    trial_id=trial_id,
                    param_name=param_name,
                    param_value=param_value_internal,
                    distribution_json=distribution_to_json(distribution),
                )
            )


def _local(when: datetime.datetime | None) -> datetime.datetime | None:
    """A stored naive UTC time as Optuna's RDB storage gives it: naive local time."""
    return None if when is None else when.replace(tzinfo=datetime.UTC).astimezone().replace(tzinfo=None)


def save_snapshot(study: optuna.Study) -> bool:
    """Save the replayed state of a study's journal file beside it, so that the next process
    opening it (`study status`, `study resume`, `study.load`) replays only what follows;
    False for other storages (see `study.stores.journal`)."""
    return _optuna_major() == OPTUNA_MAJOR and journal.save_snapshot(study._storage)


def study_names(url: str | None, storage: optuna.storages.BaseStorage | None = None) -> list[str]:
    """Names of the studies in an existing storage (none if the file does not exist yet);
    `storage`: the storage at `url` already opened (a journal is read once, not twice)."""
    url = resolve(url)
    path = file_path(url)
    if storage is None and path is not None and not os.path.isfile(path):
        return []
    return [s.study_name for s in (storage or open_storage(url)).get_all_studies()]  # not the summaries: they count trials


def no_such_study(name: str, url: str, names: list[str]) -> SpecError:
    return SpecError(f"no study {name!r} in storage {mask(url)!r} (studies there: {names or 'none'})")


def load_stored(name: str, storage: str | None) -> tuple[optuna.Study, StudySpec, str]:
    """An existing study, the spec it was launched with and its storage URL (resolved).
    SpecError when the storage or the study does not exist or was not made by hpstudy."""
    url = check_storage(storage, must_exist=True)
    opened = open_storage(url)
    names = study_names(url, opened)
    if name not in names:
        raise no_such_study(name, url, names)
    study = optuna.load_study(study_name=name, storage=opened)
    spec = spec_from_record(name, stored_spec(study.user_attrs), storage, mask(url))
    return study, spec, url


def load_sibling(study: optuna.Study, name: str, url: str) -> tuple[optuna.Study, StudySpec]:
    """Study `name` in the storage `study` was loaded from (at `url`), through the storage
    already open (a journal file is not read again), with its spec; SpecError if there is
    none. Internals (Optuna 5): `Study._storage`."""
    opened = study._storage
    names = study_names(url, opened)
    if name not in names:
        raise no_such_study(name, url, names)
    other = optuna.load_study(study_name=name, storage=opened)
    return other, spec_from_record(name, stored_spec(other.user_attrs), url, mask(url))


def spec_record(spec: StudySpec) -> dict[str, Any]:
    """The spec as stored with the study: no storage URL (the storage is where it is kept,
    and its URL may carry a password) and the tracking URI with its password masked."""
    d = spec.model_dump(mode="json")
    d["storage"] = None
    d["tracking_uri"] = mask(spec.tracking_uri)
    d[SPEC_DIR] = spec.base_dir
    return d


def create_study(
    spec: StudySpec, url: str, sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner
) -> optuna.Study:
    """A new study with its spec, a fresh uid and the spec's enqueued configurations.
    `optuna.exceptions.DuplicatedStudyError` if another driver created it first."""
    study = optuna.create_study(
        study_name=spec.name, storage=open_storage(url), sampler=sampler, pruner=pruner, directions=spec.directions
    )
    study.set_user_attr(StudyAttr.SPEC, spec_record(spec))
    study.set_user_attr(StudyAttr.UID, uuid.uuid4().hex)
    for params in spec.enqueue:
        study.enqueue_trial(params, user_attrs={"enqueued": True})
    return study


def end_left_running(study: optuna.Study, number: int, attrs: dict[str, Any]) -> None:
    """Set user attrs on a trial another process left RUNNING and mark it FAIL.

    Optuna's public API writes user attrs only through a live `optuna.Trial` of the process
    that asked for it; a resuming driver ends a dead driver's trial through the storage:
    `Study._storage`, `Study._study_id` and `get_trial_id_from_study_id_trial_number` (Optuna 5)."""
    if _optuna_major() != OPTUNA_MAJOR:
        raise RuntimeError(f"hpstudy's reconciliation was written for Optuna {OPTUNA_MAJOR}, found {optuna.__version__}")
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for k, v in attrs.items():
        storage.set_trial_user_attr(trial_id, k, v)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Several user attrs of a running trial in one storage write: one append to a journal
    file (one lock, one write), one transaction in hpstudy's database storage
    (`FastRDBStorage.set_trial_user_attrs`); Optuna writes each alone, as it does here for any
    other storage. Internals (Optuna 5): `Trial.storage`, `Trial._trial_id`,
    `Trial._cached_frozen_trial` (kept as `Trial.set_user_attr` keeps it) and
    `_CachedStorage._backend`."""
    if not attrs:
        return
    backend = _unwrap(trial.storage)
    if (
        _optuna_major() != OPTUNA_MAJOR
        or len(attrs) == 1
        or not isinstance(backend, (optuna.storages.JournalStorage, FastRDBStorage))
    ):
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        return
    if isinstance(backend, FastRDBStorage):
        backend.set_trial_user_attrs(trial._trial_id, attrs)
    else:
        journal.set_trial_user_attrs(backend, trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def tell(study: optuna.Study, trial: optuna.Trial, values: list[float] | None, state: TrialState) -> None:
    """`Study.tell` without the deep copy of the finished trial it returns (about a millisecond
    a trial with a stored configuration): Optuna 5's `optuna.study._tell._tell_with_warning`,
    which `Study.tell` calls, validating and informing the sampler the same way."""
    if _optuna_major() != OPTUNA_MAJOR:
        study.tell(trial, values, state=state)
        return
    optuna.study._tell._tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)


def vectorized_tpe_math() -> bool:
    """Optuna's TPE computes log Phi (the log of the normal CDF, for its truncated normal
    kernels) one number at a time in Python (``optuna.samplers._tpe._truncnorm._log_ndtr``, a
    ``np.frompyfunc`` over a scalar function): half the CPU of an ask at a hundred trials of the
    ``full`` space (38 ms, 18 ms without). SciPy's ``scipy.special.log_ndtr`` is the same
    function vectorized in C, and the more accurate of the two (they differ by at most 6e-8
    relative, near 6). Installed once per process, for Optuna 5 with SciPy present (it comes
    with scikit-learn); returns whether SciPy's is in place. The draws of a seeded TPE differ
    from plain Optuna's in the last digits, so a seed replays hpstudy's own studies, not
    Optuna's."""
    truncnorm = optuna.samplers._tpe._truncnorm
    if getattr(truncnorm._log_ndtr, "hpstudy", False):
        return True
    if _optuna_major() != OPTUNA_MAJOR or importlib.util.find_spec("scipy") is None:
        return False
    from scipy.special import log_ndtr

    def _log_ndtr(a: np.ndarray) -> np.ndarray:
        return np.asarray(log_ndtr(np.asarray(a, dtype=float)), dtype=float)

    _log_ndtr.hpstudy = True  # type: ignore[attr-defined]
    truncnorm._log_ndtr = _log_ndtr
    return True
