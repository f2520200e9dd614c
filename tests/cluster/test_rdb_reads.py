"""`FastReadRDBStorage` against Optuna's own `RDBStorage`, on SQLite and on a real PostgreSQL:
the trials read back are equal (states, values with infinities, several objectives,
intermediate values with NaN and infinities, params of every distribution, user and system
attrs, times; repeated attribute keys one object), whole and through Optuna's `_CachedStorage` while a study runs (its
incremental reads of new and unfinished trials), and an unknown study is Optuna's KeyError."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from study.stores.optuna_storage import FastReadRDBStorage, open_storage


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    pg = request.getfixturevalue("postgres")
    return str(pg.create_database(f"rdbreads_{abs(hash(str(tmp_path))) % 10**8}"))


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
    assert isinstance(mine, FastReadRDBStorage)
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
