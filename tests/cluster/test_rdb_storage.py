"""`FastRDBStorage` against Optuna's own `RDBStorage`, on SQLite and on a real PostgreSQL:
a running trial's writes (reports, params, user attrs one or several at a time) store what
Optuna's store, with Optuna's errors for a finished or unknown trial and an incompatible
param, and a param written twice ignored as Optuna ignores it; the trials read back are
equal (states, values with infinities, several objectives, intermediate values with NaN and
infinities, params of every distribution, user and system attrs, times; repeated attribute
keys one object), whole and through Optuna's `_CachedStorage` while a study runs (its
incremental reads of new and unfinished trials), and an unknown study is Optuna's KeyError."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from study.stores.optuna_storage import FastRDBStorage, open_storage, set_user_attrs


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """New empty databases of one kind: ``database(name)`` returns its storage URL."""

    def make(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        pg = request.getfixturevalue("postgres")
        return str(pg.create_database(f"rdb_{name}_{abs(hash(str(tmp_path))) % 10**8}"))

    return make


@pytest.fixture
def url(database: Callable[[str], str]) -> str:
    return database("reads")


def _fill(storage: Any, n: int) -> optuna.Study:
    study = optuna.create_study(
        study_name="s", storage=storage, directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(0)
    )
    study.enqueue_trial({"lr": 0.01, "depth": 2, "act": "relu"}, user_attrs={"retry_of": 0})
    for i in range(n):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1.0, log=True)
        t.suggest_int("depth", 1, 4)
        t.suggest_categorical("act", ["relu", "tanh"])
        t.set_user_attr("config", {"lr": t.params["lr"], "width": [8, 4], "none": None})
        study._storage.set_trial_system_attr(t._trial_id, "sys", i)
        for step, v in enumerate([1.0 / (i + 1), math.nan, math.inf, -math.inf][: 1 + i % 4], start=1):
            study._storage.set_trial_intermediate_value(t._trial_id, step, v)
        if i % 4 == 0:
            study.tell(t, [0.5 / (i + 1), math.inf if i == 4 else float(i)])
        elif i % 4 == 1:
            study.tell(t, state=TrialState.PRUNED)
        elif i % 4 == 2:
            study.tell(t, state=TrialState.FAIL)
        # i % 4 == 3: left RUNNING
    return study


def _seen(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[Any, ...]]:
    """Every field, NaN made comparable."""

    def nan(d: dict[int, float]) -> dict[int, Any]:
        return {k: "nan" if math.isnan(v) else v for k, v in d.items()}

    return [
        (t.number, t._trial_id, t.state, t.values, t.datetime_start, t.datetime_complete, t.params, t.distributions,
         t.user_attrs, t.system_attrs, nan(t.intermediate_values))
        for t in trials
    ]  # fmt: skip


@pytest.mark.parametrize("id_list", [500, 0])  # rows fetched by a list of trial ids, or by the trials' filter
def test_trials_read_by_sql_equal_optunas(url: str, id_list: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from study.stores import optuna_storage

    monkeypatch.setattr(optuna_storage, "_ID_LIST", id_list)
    _fill(optuna.storages.RDBStorage(url), 13)
    mine = open_storage(url)
    assert isinstance(mine, FastRDBStorage)
    theirs = optuna.storages.RDBStorage(url)
    sid = theirs.get_study_id_from_name("s")
    for states in (None, (TrialState.COMPLETE,), (TrialState.RUNNING, TrialState.WAITING)):
        expected = theirs.get_all_trials(sid, deepcopy=False, states=states)
        assert _seen(mine.get_all_trials(sid, deepcopy=False, states=states)) == _seen(expected)
        assert expected  # each filter has trials to compare
    newest = theirs.get_all_trials(sid, deepcopy=False)[-4:]
    kept = {newest[0]._trial_id}  # Optuna's cache: an unfinished trial it holds, and every trial after a given id
    got = mine._get_trials(sid, None, kept, newest[1]._trial_id)
    assert _seen(got) == _seen([newest[0], *newest[2:]])
    with pytest.raises(KeyError):
        mine.get_all_trials(sid + 1000)
    # what every trial repeats is one object, not one per trial (the driver holds these)
    first, second = (t.user_attrs["config"] for t in mine.get_all_trials(sid, deepcopy=False)[1:3])
    assert all(any(k is j for j in second) for k in first) and first["none"] is None and first["width"] == [8, 4]


def test_a_running_study_reads_the_same_through_optunas_cache(url: str) -> None:
    """A study run on the fast storage (Optuna wraps it in `_CachedStorage`, which reads only
    new and unfinished trials) sees what a fresh plain reader sees, at every step."""
    study = optuna.create_study(
        study_name="c", storage=open_storage(url), sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
    )
    plain = optuna.storages.RDBStorage(url)
    running = []
    for i in range(8):
        t = study.ask()
        t.suggest_float("x", -1, 1)
        t.report(float(i), 1)
        running.append(t)
        if i % 3 == 2:
            for r in running[:-1]:
                study.tell(r, r.params["x"] ** 2)
            running = running[-1:]
        fresh = plain.get_all_trials(study._study_id, deepcopy=False)
        assert _seen(study.get_trials(deepcopy=False)) == _seen(fresh)


def _write(storage: Any) -> None:
    """Every write of a running trial, through Optuna's API: params of three kinds, reports
    (NaN and infinities among them, one step reported twice), user attrs one at a time and
    several at once (one overwritten), a system attr; some trials told, one failed."""
    study = optuna.create_study(study_name="w", storage=storage, sampler=optuna.samplers.RandomSampler(0))
    for i in range(5):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1.0, log=True)
        t.suggest_int("depth", 1, 4)
        t.suggest_categorical("act", ["relu", "tanh"])
        for step, v in enumerate([0.5 / (i + 1), math.nan, math.inf, -math.inf][: 1 + i % 4], start=1):
            t.report(v, step)
        study._storage.set_trial_intermediate_value(t._trial_id, 1, 0.25)  # again: replaces step 1
        t.set_user_attr("a", {"x": [1, 2], "none": None})
        set_user_attrs(t, {"a": 3, "b": "text", "c": [0.5, None]})
        study._storage.set_trial_system_attr(t._trial_id, "sys", i)
        if i % 3 == 0:
            study.tell(t, 1.0 / (i + 1))
        elif i % 3 == 1:
            study.tell(t, state=TrialState.FAIL)


def test_a_running_trials_writes_store_what_optunas_do(database: Callable[[str], str]) -> None:
    theirs, mine = database("theirs"), database("mine")
    _write(optuna.storages.RDBStorage(theirs))
    fast = open_storage(mine)
    assert isinstance(fast, FastRDBStorage)
    _write(fast)

    def stored(url: str) -> list[tuple[Any, ...]]:  # read back by Optuna itself; times differ
        plain = optuna.storages.RDBStorage(url)
        trials = plain.get_all_trials(plain.get_study_id_from_name("w"), deepcopy=False)
        return [row[:4] + row[6:] for row in _seen(trials)]

    assert stored(mine) == stored(theirs)
    assert len(stored(mine)) == 5


def test_writes_refuse_what_optuna_refuses(url: str) -> None:
    study = optuna.create_study(study_name="e", storage=open_storage(url))
    done = study.ask()
    done.suggest_float("lr", 0.1, 1.0)
    study.tell(done, 1.0)
    running = study.ask()
    fresh = open_storage(url)  # no cache: the param's distribution is read from the database
    assert isinstance(fresh, FastRDBStorage)
    for write in (
        lambda tid: fresh.set_trial_intermediate_value(tid, 1, 0.5),
        lambda tid: fresh.set_trial_user_attrs(tid, {"a": 1, "b": 2}),
        lambda tid: fresh.set_trial_param(tid, "depth", 2, optuna.distributions.IntDistribution(1, 4)),
    ):
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            write(done._trial_id)
        with pytest.raises(KeyError):
            write(running._trial_id + 1000)
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        fresh.set_trial_param(running._trial_id, "lr", 0, optuna.distributions.CategoricalDistribution(["a", "b"]))
    with pytest.raises(KeyError):
        fresh.get_trial(running._trial_id + 1000)
    fresh.set_trial_user_attrs(running._trial_id, {"a": 1, "b": 2})
    assert fresh.get_trial(running._trial_id).user_attrs == {"a": 1, "b": 2}
    plain = optuna.storages.RDBStorage(url)
    assert plain.get_trial(running._trial_id).params == {}  # nothing half-written
    # a param written again (another process at the same time) is ignored, as Optuna ignores it
    depth = optuna.distributions.IntDistribution(1, 4)
    for storage, value in ((fresh, 3), (plain, 2), (fresh, 1)):
        storage.set_trial_param(running._trial_id, "depth", value, depth)
    assert plain.get_trial(running._trial_id).params == {"depth": 3}


def _summary_study(storage: Any, direction: str) -> optuna.Study:
    """Trials in every state, values with ties and infinities, stop reasons (one missing),
    re-run trials (``retried``) and ``searched`` lists as the driver writes them."""
    study = optuna.create_study(study_name="sum", storage=storage, direction=direction, sampler=optuna.samplers.RandomSampler(0))
    values = [0.3, 0.1, math.inf, 0.1, -math.inf, 0.2, 0.3, 0.05]
    for i in range(24):
        t = study.ask()
        t.suggest_float("lr", 0.01, 1.0)
        t.set_user_attr("searched", ["lr"] if i % 3 else ["lr", "depth"])
        t.set_user_attr("config", {"lr": t.params["lr"], "depth": 1 + i % 3})
        t.report(float(i), 1)
        if i % 5 == 4:
            continue  # RUNNING
        if i != 7:
            t.set_user_attr("stop_reason", ["completed", "early_stopped", "pruned", "failed"][i % 4])
        if i in (2, 8):
            t.set_user_attr("retried", True)
        if i == 10:
            t.set_user_attr("retried", False)
        if i % 4 == 2:
            study.tell(t, state=TrialState.PRUNED)
        elif i % 4 == 3:
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, values[i % len(values)])
    study.enqueue_trial({"lr": 0.5})  # left WAITING
    return study


def _kept(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[Any, ...]]:
    """What a study in two storages has alike (not ids or times)."""
    return [(t.number, t.state, t.values, t.params, t.user_attrs, t.intermediate_values) for t in trials]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_summary_reads_equal_those_of_every_trial(
    url: str, tmp_path: Path, direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`counts`, `top_trials`, `trials_in` and `user_attr_values` in the database (grouped
    queries; only the `k` best trials read whole) give what the same study gives in a journal
    file, where they are computed from every trial; `study status`'s summary too."""
    from study.query.status import summarize
    from study.stores.optuna_storage import counts, top_trials, trials_in, user_attr_values

    fast = _summary_study(open_storage(url), direction)
    plain = _summary_study(open_storage(f"journal:{tmp_path / 'j.log'}"), direction)
    assert counts(fast) == counts(plain)
    c = counts(fast)
    assert c.states == {"COMPLETE": 10, "PRUNED": 5, "FAIL": 5, "RUNNING": 4, "WAITING": 1}
    assert c.stop_reasons["-"] == 1 and c.counted == 20 - 2  # trials 2 and 8 re-run
    read: list[int] = []
    real = FastRDBStorage._read

    def counted_read(self: Any, conn: Any, where: list[Any]) -> Any:
        got = real(self, conn, where)
        read.append(len(got))
        return got

    monkeypatch.setattr(FastRDBStorage, "_read", counted_read)
    for k in (1, 3, 6, 50):
        assert _kept(top_trials(fast, k)) == _kept(top_trials(plain, k)), k
        assert read[-1] == min(k, 10)  # the k shown, not every completed trial
    top = top_trials(fast, 10)
    sign = 1 if direction == "minimize" else -1
    assert [(sign * t.value, t.number) for t in top] == sorted((sign * t.value, t.number) for t in top)  # type: ignore[operator]
    assert _kept(trials_in(fast, [TrialState.RUNNING])) == _kept(trials_in(plain, [TrialState.RUNNING]))
    assert read[-1] == 4  # the running trials only
    assert sorted(map(str, user_attr_values(fast, "searched"))) == sorted(map(str, user_attr_values(plain, "searched")))
    assert sorted(user_attr_values(fast, "searched")) == [["lr"], ["lr", "depth"]]
    a, b = summarize(fast, 30), summarize(plain, 30)
    assert _kept(a.pop("best")) == _kept(b.pop("best")) and a == b
