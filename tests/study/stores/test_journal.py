"""hpstudy's journal file against Optuna's: the same journal, replayed by Optuna's own
`JournalFileBackend`, by ours from the start and by ours from a snapshot plus what followed
it, gives equal studies and trials; a snapshot that does not match its journal is ignored;
reading keeps one position, not one per line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from study.stores import journal
from study.stores.optuna_storage import open_storage, save_snapshot


def _fill(storage: Any, name: str, n: int) -> None:
    """Trials of every kind: params of three distributions, user and system attrs, reports
    (a NaN among them), COMPLETE / PRUNED / FAIL / RUNNING, an enqueued trial, a second
    objective."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=["minimize", "maximize"],
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(0),
    )
    study.set_user_attr("spec", {"trials": n, "nested": [1, 2]})
    study.enqueue_trial({"lr": 0.01, "depth": 2, "act": "relu"}, user_attrs={"retry_of": 0})
    for i in range(n):
        t = study.ask()
        t.suggest_float("lr", 1e-4, 1.0, log=True)
        t.suggest_int("depth", 1, 4)
        t.suggest_categorical("act", ["relu", "tanh"])
        t.set_user_attr("config", {"lr": t.params["lr"], "width": [8, 4]})
        study._storage.set_trial_system_attr(t._trial_id, "sys", i)
        for step in range(1, 4):
            study._storage.set_trial_intermediate_value(t._trial_id, step, math.nan if (i, step) == (2, 3) else 1.0 / (i + step))
        if i % 4 == 0:
            study.tell(t, [0.5 / (i + 1), float(i)])
        elif i % 4 == 1:
            study.tell(t, state=TrialState.PRUNED)
        elif i % 4 == 2:
            study.tell(t, state=TrialState.FAIL)
        # i % 4 == 3: left RUNNING


def _state(storage: Any) -> dict[str, Any]:
    studies = {s.study_name: s for s in storage.get_all_studies()}
    return {
        name: (s.user_attrs, s.system_attrs, s.directions, storage.get_all_trials(s._study_id, deepcopy=False))
        for name, s in studies.items()
    }


def _optunas(path: Path) -> dict[str, Any]:
    return _state(JournalStorage(JournalFileBackend(str(path))))


def test_replays_from_the_start_and_from_a_snapshot_equal_optunas(tmp_path: Path) -> None:
    path = tmp_path / "o.journal"
    url = f"journal:{path}"
    ours = open_storage(url)
    _fill(ours, "a", 9)
    _fill(ours, "b", 5)
    optuna.delete_study(study_name="b", storage=ours)
    assert _state(open_storage(url)) == _optunas(path)  # no snapshot yet: a full replay

    assert save_snapshot(optuna.load_study(study_name="a", storage=ours))
    snap = json.loads(Path(journal.snapshot_path(str(path))).read_text())  # JSON, never a pickle
    assert snap["log_number"] == sum(1 for _ in path.open("rb"))
    _fill(ours, "a", 6)  # more after the snapshot: replayed on top of it
    _fill(ours, "c", 3)
    again = open_storage(url)
    assert again._replay_result.log_number_read == sum(1 for _ in path.open("rb"))
    assert _state(again) == _optunas(path)
    trials = optuna.load_study(study_name="a", storage=again).get_trials(deepcopy=False)
    assert len(trials) == 15 and math.isnan(trials[2].intermediate_values[3])
    # the restored storage goes on working: a new trial gets the next id in both views
    optuna.load_study(study_name="c", storage=again).ask()
    assert _state(open_storage(url)) == _optunas(path)


def test_a_snapshot_of_another_journal_is_ignored(tmp_path: Path) -> None:
    first, second = tmp_path / "one.journal", tmp_path / "two.journal"
    for p, n in ((first, 6), (second, 4)):
        st = open_storage(f"journal:{p}")
        _fill(st, "a", n)
    assert save_snapshot(optuna.load_study(study_name="a", storage=open_storage(f"journal:{first}")))
    Path(journal.snapshot_path(str(second))).write_bytes(Path(journal.snapshot_path(str(first))).read_bytes())
    assert _state(open_storage(f"journal:{second}")) == _optunas(second)
    Path(journal.snapshot_path(str(second))).write_text("{not json")
    assert _state(open_storage(f"journal:{second}")) == _optunas(second)


def test_a_journal_rewritten_after_its_snapshot_is_replayed_in_full(tmp_path: Path) -> None:
    path = tmp_path / "o.journal"
    _fill(open_storage(f"journal:{path}"), "a", 6)
    assert save_snapshot(optuna.load_study(study_name="a", storage=open_storage(f"journal:{path}")))
    path.unlink()  # a new journal of the same name, longer than the snapshot's offset
    _fill(open_storage(f"journal:{path}"), "z", 10)
    assert set(_state(open_storage(f"journal:{path}"))) == {"z"}
    assert _state(open_storage(f"journal:{path}")) == _optunas(path)


_ODD = {"act": "relu", "lr": 0.5, "neg_zero": -0.0, "nan": math.nan, "one": 1, "one_f": 1.0, "flag": True, "none": None}


def _odd_trials(storage: Any) -> list[Any]:
    study = optuna.create_study(study_name="odd", storage=storage, load_if_exists=True)
    for _ in range(2):
        study.enqueue_trial({}, user_attrs={"config": dict(_ODD), "node": "n" * 56, "long": "x" * 100})
        study.tell(study.ask(), 1.0)
    return optuna.load_study(study_name="odd", storage=storage).get_trials(deepcopy=False)


@pytest.mark.parametrize("snapshot", [False, True])
def test_repeated_attribute_keys_and_values_are_one_object_each(tmp_path: Path, snapshot: bool) -> None:
    """Each trial's config repeats the same keys and mostly the same strings: a replay (from
    the journal or from its snapshot) keeps one object for each, not one per trial, and the
    values stay what was written (-0.0 keeps its sign, NaN stays NaN, 1 stays an int, 1.0 a
    float, True a bool, a long string equal)."""
    url = f"journal:{tmp_path / 'o.journal'}"
    _odd_trials(open_storage(url))
    if snapshot:
        assert save_snapshot(optuna.load_study(study_name="odd", storage=open_storage(url)))
    first, second = (t.user_attrs for t in _odd_trials(open_storage(url))[:2])
    a, b = first["config"], second["config"]
    assert [k for k in a if any(k is j for j in b)] == list(_ODD)  # the same key objects
    assert a["act"] is b["act"] and first["node"] is second["node"] and first["long"] == second["long"] == "x" * 100
    assert math.copysign(1.0, a["neg_zero"]) == -1.0 and math.isnan(a["nan"])
    assert (type(a["one"]), type(a["one_f"]), a["flag"], a["none"]) == (int, float, True, None)
    plain = next(t.user_attrs for t in _optunas(tmp_path / "o.journal")["odd"][3])
    assert {k: v for k, v in plain["config"].items() if k != "nan"} == {k: v for k, v in a.items() if k != "nan"}


@pytest.mark.parametrize("trials", [10, 200])
def test_reading_keeps_one_position_whatever_the_journal_length(tmp_path: Path, trials: int) -> None:
    """Optuna's backend keeps a byte offset for every line it read: memory that grows with
    every operation; ours keeps one."""
    st = open_storage(f"journal:{tmp_path / 'o.journal'}")
    _fill(st, "a", trials)
    backend = st._backend
    assert isinstance(backend, journal.JournalFile)
    assert backend._log_number_offset == {} and backend.position()[0] == st._replay_result.log_number_read


_WRITER = """
import sys
import optuna
from study.stores.optuna_storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(study_name="s", storage=open_storage(sys.argv[1]))
for i in range(int(sys.argv[2])):
    t = study.ask()
    for step in range(1, 6):
        t.report(float(step), step)
    study.tell(t, float(i))
"""


def test_processes_appending_at_once_write_whole_operations(tmp_path: Path) -> None:
    """Three processes append to one journal at once (each append one ``write`` under the
    journal's flock): every line is one whole operation and Optuna's own replay has every
    trial with every report."""
    import subprocess
    import sys

    url = f"journal:{tmp_path / 'j.log'}"
    optuna.create_study(study_name="s", storage=open_storage(url))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, "40"]) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    lines = (tmp_path / "j.log").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)
    trials = _optunas(tmp_path / "j.log")["s"][3]
    assert len(trials) == 120 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert sorted(t.number for t in trials) == list(range(120))
    assert all(t.intermediate_values == {s: float(s) for s in range(1, 6)} for t in trials)


def test_an_append_waits_for_the_lock_and_a_killed_holder_leaves_none(tmp_path: Path) -> None:
    """While another process holds the journal's lock, an append waits; when that process is
    killed (SIGKILL, as mid-append) the append goes through: no lock is left behind."""
    import signal
    import subprocess
    import sys
    import threading

    url = f"journal:{tmp_path / 'j.log'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl, os, time; fd = os.open({str(tmp_path / 'j.log')!r}, os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    append = threading.Thread(target=lambda: study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3))
    append.start()
    append.join(timeout=1.0)
    assert append.is_alive() and len((tmp_path / "j.log").read_text().splitlines()) == 1  # waiting: only the study
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    append.join(timeout=60)
    assert not append.is_alive() and len(study.trials) == 3
