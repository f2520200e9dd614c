"""Orders of growth, counted rather than timed: what the driver, its decisions, its executor
and the MLflow writer hold does not grow with the number of finished trials, and the query
side reads a bounded number of MLflow pages for the best few trials of a study, whatever its
size."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from mlflow.entities import Metric

import search_spaces
from study.query.handle import load
from study.run import launch as launching
from study.run.decisions import Decisions
from study.run.driver import Driver
from study.run.events import Ended, Epoch, Event, Started
from study.run.executor import InProcessExecutor
from study.run.lease import Lease
from study.run.prepare import Prepared, prepare
from study.spec import parse_spec
from study.stores.tracker import MlflowTracker
from trainers import from_arrays

SPACE = """\
name: unit
description: Learning rate only.
fixed: {depth: 1, width: 4, epochs: 3}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""


def scripted(curves: Callable[[int], list[float]]) -> Callable[..., Iterator[Event]]:
    """Trials whose val_loss per epoch is `curves(number)` (train_loss half of it)."""

    def fn(number: int, config: Any, data: Any) -> Iterator[Event]:
        yield Started(number, {"pid": 0, "host": "here"})
        values = curves(number)
        for epoch, v in enumerate(values, 1):
            yield Epoch(number, epoch, {"train_loss": v / 2, "val_loss": v, "val_acc": 1 - v / 10})
        best = min(range(len(values)), key=lambda i: values[i]) + 1
        yield Ended(number, "completed", best_epoch=best, stopped_epoch=len(values), n_params=5)

    return fn


class NullTracker:
    """Records nothing (the loop's own bookkeeping is what is counted here)."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return lambda *args, **kwargs: None


def make(tmp_path: Path, trial_fn: Callable[..., Iterator[Event]], trials: int) -> tuple[Driver, optuna.Study]:
    """The driver on Optuna in memory and the in-process executor, 3 trials in flight."""
    (tmp_path / "unit.yaml").write_text(SPACE)
    spec = parse_spec(
        {"name": "unit", "space": str(tmp_path / "unit.yaml"), "trials": trials, "pruner": "none", "sampler": "random"}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(30, 6)), np.arange(30) % 3)
    decisions = Decisions(study, spec, search_spaces.load(spec.space), 6, 3, Lease(study, None))
    executor = InProcessExecutor(data, slots=3, trial_fn=trial_fn)
    return Driver(decisions, executor, NullTracker(), concurrency=3, tick=0.0), study  # type: ignore[arg-type]


def launch(tiny_spec: Any, trial_fn: Callable[..., Iterator[Event]], resume: bool = False, **changes: Any) -> launching.RunResult:
    """The tiny study in-process with real journal storage and MLflow (written inline)."""

    def executor(prep: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(prep.data, slots=2, trial_fn=trial_fn)
        return ex, ex.close

    prep = prepare(parse_spec(tiny_spec(**changes)))
    return launching.run_study(prep, resume=resume, executor=executor, say=lambda m: None, inline_tracking=True)


def held(obj: Any) -> int:
    """Entries in every dict, list and set directly on `obj`: its per-trial bookkeeping."""
    return sum(len(v) for v in vars(obj).values() if isinstance(v, (dict, list, set)))


def test_the_loop_holds_nothing_of_a_finished_trial(tmp_path: Path) -> None:
    """After a study, the driver, its decisions and its executor hold as many entries (counts
    by stop reason, at most a trial in flight's finished generator) for 40 trials as for 4:
    nothing per finished trial."""
    sizes = []
    for trials in (4, 40):
        driver, study = make(tmp_path, scripted(lambda n: [1.0 / (n + 1), 0.5 / (n + 1)]), trials=trials)
        assert driver.run()
        assert len(study.trials) == trials and not driver.running and driver.decisions.counted == trials
        sizes.append({"driver": held(driver), "decisions": held(driver.decisions), "executor": held(driver.executor)})
    assert sizes[0] == sizes[1] and sizes[1]["executor"] <= driver.concurrency, sizes


def _tracker(tmp_path: Path, empty_mlflow_db: Path) -> MlflowTracker:
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", flush_seconds=3600.0)
    tracker.start_study("growth", {"trials": 1}, None, "uid")
    tracker.flush()
    return tracker


def _buffered(tracker: MlflowTracker) -> int:
    return sum(len(v) for d in (tracker._metrics, tracker._params, tracker._tags) for v in d.values())


@pytest.mark.parametrize("trials", [3, 30])
def test_the_mlflow_writer_keeps_only_the_trials_in_flight(tmp_path: Path, empty_mlflow_db: Path, trials: int) -> None:
    """Three trials in flight at a time: the writer's run ids and buffers hold at most those
    three trials' unwritten data, and nothing once every trial ended, however many ran."""
    tracker = _tracker(tmp_path, empty_mlflow_db)
    most_buffered = most_runs = 0
    for first in range(0, trials, 3):
        batch = range(first, min(first + 3, trials))
        for n in batch:
            tracker.start_trial(n, {"lr": 0.1, "depth": 2}, {"seed": "1"})
        for epoch in range(1, 6):
            for n in batch:
                tracker.log_epoch(n, epoch, {"val_loss": 1.0 / epoch, "train_loss": 0.5 / epoch})
        most_buffered = max(most_buffered, _buffered(tracker))
        most_runs = max(most_runs, len(tracker.runs))
        for n in batch:
            tracker.end_trial(n, "COMPLETE", "FINISHED", {"stop_reason": "completed"}, {"objective": 0.2, "stopped_epoch": 5.0})
    assert most_runs == 3 and most_buffered == 3 * (2 + 5 * 2)  # 2 params, 5 epochs x 2 metrics a trial
    assert not tracker.runs and _buffered(tracker) == 0
    held_by_client = held(tracker.client) if hasattr(tracker.client, "_locations") else 0
    assert held_by_client <= 1  # the experiment's artifact location, nothing per run
    history = tracker.client.get_metric_history(tracker.client.search_runs([tracker.experiment_id])[0].info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5] and all(isinstance(m, Metric) for m in history)
    tracker.close()


class CountingClient:
    """An `MlflowClient` that counts its ``search_runs`` calls and the pages they return."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.searches: list[int] = []  # max_results of each call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def search_runs(self, *args: Any, **kwargs: Any) -> Any:
        self.searches.append(kwargs.get("max_results", 0))
        return self._client.search_runs(*args, **kwargs)


@pytest.mark.parametrize("via", ["mlflow", "tables"])
def test_best_trials_read_a_page_per_trial_shown_not_the_study(workdir: Path, tiny_spec: Any, via: str) -> None:
    """The best 3 of 24 trials: through MLflow's API at most 3 small searches (none reading
    the parent's whole list of children); from the store's tables 2 queries. The same run ids
    as the full listing; filtering on gap_at_best (kept in Optuna) reads no more; a filter on
    a column only MLflow has reads the whole list once."""
    from sqlalchemy import event

    curves = scripted(lambda n: [1.0, 0.5 + (n % 7) / 20, 0.6])
    launch(tiny_spec, curves, trials=24)
    handle = load("tiny-study", storage=f"journal:{workdir / 'optuna.journal'}")
    if via == "mlflow":
        handle.reader._sql = None
    every = {n: r.run_id for n, r in handle.runs().items()}
    assert len(every) == 24
    statements: list[str] = []
    if handle.reader._sql is not None:
        event.listen(handle.reader._sql.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for where in (None, "gap_at_best > 0.2"):
        counting = CountingClient(handle.reader.client)
        handle.reader._client = counting
        statements.clear()
        best = handle.best_trials(k=3, where=where)
        assert len(best) == 3 and [every[int(n)] for n in best["number"]] == best["run_id"].tolist()
        assert best["gap_at_best"].notna().all()
        if via == "mlflow":
            assert 0 < len(counting.searches) <= 3 and max(counting.searches) < 1000, counting.searches
        else:
            assert not counting.searches and len(statements) == 2, statements
    counting = CountingClient(handle.reader.client)
    handle.reader._client = counting
    handle.best_trials(k=3, where="run_status == 'FINISHED'")  # a column only MLflow has: the whole list, once
    assert counting.searches == ([1000] if via == "mlflow" else [])


def test_the_study_status_figures_need_no_mlflow(workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`study status` reads Optuna only: it works with the MLflow database gone."""
    launch(tiny_spec, scripted(lambda n: [1.0, 0.5]), trials=5)
    from study.query.status import summarize
    from study.stores.optuna_storage import load_stored

    (workdir / "mlflow.db").unlink()
    study, spec, _ = load_stored("tiny-study", f"journal:{workdir / 'optuna.journal'}")
    s = summarize(study, spec.trials)
    assert s["finished"] == 5 and len(s["best"]) == 5


def test_a_resume_checks_the_runs_of_trials_after_the_mark_only(
    workdir: Path, tiny_spec: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean end marks how far MLflow is complete; a resume looks up the runs of the trials
    after the mark only (one by one), not every run of the study; `study sync` checks all."""
    from mlflow.tracking import MlflowClient

    from study.record import StudyAttr
    from study.run.reconcile import sync
    from study.stores.optuna_storage import load_stored

    storage = f"journal:{workdir / 'optuna.journal'}"
    curves = scripted(lambda n: [1.0, 0.5])
    launch(tiny_spec, curves, trials=10)
    study = load_stored("tiny-study", storage)[0]
    assert study.user_attrs[StudyAttr.TRACKED] == 9

    study.set_user_attr(StudyAttr.TRACKED, 6)  # as if the driver that ran 7..9 had been killed
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = load("tiny-study", storage=storage).runs()
    for n in (3, 8):  # runs lost: one before the mark, one after it
        client.delete_run(runs[n].run_id)
    asked: list[Any] = []
    original = MlflowTracker.trial_runs

    def counting(self: MlflowTracker, numbers: Any = None) -> Any:
        asked.append(numbers)
        return original(self, numbers)

    monkeypatch.setattr(MlflowTracker, "trial_runs", counting)
    launch(tiny_spec, curves, trials=12, resume=True)
    assert asked == [[7, 8, 9]]  # the three trials after the mark, looked up one by one
    after = load("tiny-study", storage=storage).runs()
    assert 8 in after and 3 not in after and sorted(after) == [n for n in range(12) if n != 3]
    assert load_stored("tiny-study", storage)[0].user_attrs[StudyAttr.TRACKED] == 11

    assert sync("tiny-study", storage, f"sqlite:///{workdir / 'mlflow.db'}").created == [3]  # a sync checks every trial
    assert sorted(load("tiny-study", storage=storage).runs()) == list(range(12))
