"""A comparison on the driver (fast tier): cells as trials, shared runs trained once, the lr
tuning phase before the verdict's runs, resume, measures stored when a run ends, the verdict
from the stored record. In-memory Optuna, the in-process executor with scripted trials whose
curves follow from their configuration, and test_driver's FakeTracker; no Ray, no MLflow."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import search_spaces
from study.comparison import TUNE_SEED_BASE
from study.query.verdict_report import judge
from study.record import Outcome, StopReason, TrialAttr, TrialRecord
from study.run.design import CellDecisions, Design
from study.run.driver import Driver, Listener, Snapshot
from study.run.events import Ended, Epoch, Event, Failed, Started
from study.run.executor import InProcessExecutor, WorkerDied
from study.run.lease import Lease
from study.spec import SpecError, StudySpec, parse_spec
from trainers import TrainConfig, from_arrays


def _load_driver_tests() -> Any:
    """test_driver.py as a module (its FakeTracker: the Tracker Protocol in memory)."""
    name = "hpstudy_test_driver"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_driver.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


FakeTracker = _load_driver_tests().FakeTracker
DATA = from_arrays(np.random.default_rng(0).normal(size=(30, 6)), np.arange(30) % 3)
BEST_LR = {"sgd": 0.1, "adam": 0.01}  # where the scripted training loss is lowest


def final_loss(config: TrainConfig) -> float:
    """The scripted run's final training loss: lowest at its optimizer's best lr, lower with
    dropout (a known effect of -0.2 per 0.5 of dropout), a little seed noise."""
    noise = (config.seed % 7) / 700
    return 0.5 + abs(math.log10(config.lr / BEST_LR.get(config.optimizer, 0.1))) - 0.4 * config.dropout + noise


class Scripted:
    """Trials whose curve falls linearly to `final_loss(config)`; records what it trained."""

    def __init__(self, fail: set[int] = frozenset(), diverge: set[int] = frozenset(), die: set[int] = frozenset()) -> None:
        self.trained: list[TrainConfig] = []
        self.fail, self.diverge, self.die = set(fail), set(diverge), set(die)

    def __call__(self, number: int, config: TrainConfig, data: Any) -> Iterator[Event]:
        yield Started(number, {"pid": 0, "host": "here"})
        if number % 2:  # odd trials run one poll behind, so one is in flight when an even one ends
            yield Started(number, {"pid": 0, "host": "here"})
        if number in self.die:
            self.die.discard(number)
            raise WorkerDied("node lost")
        self.trained.append(config)
        if number in self.fail:
            yield Failed(number, "ValueError: boom")
            return
        end = final_loss(config)
        for epoch in range(1, config.epochs + 1):
            loss = math.nan if number in self.diverge and epoch == config.epochs else end + (config.epochs - epoch) * 0.1
            yield Epoch(number, epoch, {"train_loss": loss, "val_loss": loss + 0.1, "train_acc": 0.5, "val_acc": 0.4})
        reason = "diverged" if number in self.diverge else "completed"
        yield Ended(number, reason, best_epoch=config.epochs, stopped_epoch=config.epochs, n_params=10)


def spec_of(compare: dict[str, Any], **changes: Any) -> StudySpec:
    return parse_spec({"name": "cmp", "fixed": {"depth": 1, "width": 4, "epochs": 3}, "compare": compare, **changes})


def make(
    spec: StudySpec, trial_fn: Scripted, study: optuna.Study | None = None, listener: Listener | None = None
) -> tuple[Driver, optuna.Study, Any]:
    study = study or optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    decisions = CellDecisions(study, spec, search_spaces.load(spec.space), 6, 3, Lease(study, None))
    tracker = FakeTracker()
    executor = InProcessExecutor(DATA, slots=2, trial_fn=trial_fn)
    return Driver(decisions, executor, tracker, concurrency=2, listener=listener, tick=0.0), study, tracker


def records(study: optuna.Study) -> list[TrialRecord]:
    return [TrialRecord.of(t) for t in study.get_trials()]


DROPOUT = {
    "claim": "Dropout lowers the final training loss",
    "factor": {"dropout": [0.0, 0.5]},
    "baseline": 0.0,
    "measure": "final:train_loss",
    "expect": "lower",
    "seeds": 4,
    "also": [{"claim": "It lowers the area under the curve too", "measure": "auc:train_loss", "expect": "lower"}],
}


def test_every_cell_is_one_trial_with_its_seed_arms_and_measures() -> None:
    spec = spec_of(DROPOUT)
    assert spec.trials == 8 and spec.pruner.name == "none"  # 2 arms x 4 seeds, never pruned
    fn = Scripted()
    driver, study, tracker = make(spec, fn)
    assert driver.run()
    rs = records(study)
    assert len(rs) == 8 and all(r.state == TrialState.COMPLETE for r in rs)
    cells = {(tuple(r.attrs[TrialAttr.ARMS]), r.seed) for r in rs}
    assert cells == {((f"dropout={d}",), s) for d in (0.0, 0.5) for s in range(4)}
    assert [r.seed for r in rs] == [0, 0, 1, 1, 2, 2, 3, 3]  # seed-major: a partial run still pairs
    for r in rs:
        config = r.config
        assert config is not None and config.seed == r.seed and config.epochs == 3
        m = r.attrs[TrialAttr.MEASURES]
        assert m["final:train_loss"] == pytest.approx(final_loss(config))
        assert m["auc:train_loss"] == pytest.approx(final_loss(config) + 0.1)  # mean of end+0.2, end+0.1, end
        assert r.attrs[TrialAttr.PHASE] == "main"
        assert tracker.ended[r.number][2]["measures"] == str(m)  # also a tag of its MLflow run
    v = judge(rs, spec)
    assert v["outcome"] == "supported" and v["effect"] == pytest.approx(-0.2) and v["seeds"] == [0, 1, 2, 3]
    assert v["method"] == "paired t-interval" and v["also"][0]["outcome"] == "supported" and v["lrs"] is None
    assert v["runs"] == {"finished": 8, "planned": 8}


def test_arms_differing_only_in_their_measure_share_one_run() -> None:
    compare = {
        "claim": "the last epoch is as good as the best",
        "levels": {"best": {}, "last": {"measure": "final:train_loss"}, "dropout": {"dropout": 0.5}},
        "baseline": "best",
        "treatment": "last",
        "measure": "min:train_loss",
        "expect": "equal",
        "min_effect": 0.01,
        "seeds": 3,
    }
    spec = spec_of(compare)
    assert spec.trials == 6  # {best, last} is one run per seed, dropout another
    fn = Scripted()
    driver, study, _ = make(spec, fn)
    assert driver.run()
    rs = records(study)
    assert len(fn.trained) == len(rs) == 6
    assert sorted(tuple(r.attrs[TrialAttr.ARMS]) for r in rs) == [("best", "last")] * 3 + [("dropout",)] * 3
    levels = {lv["level"]: lv for lv in judge(rs, spec)["levels"]}
    assert levels["last"]["effect"] == 0.0  # the curve falls to its end: its minimum is the last epoch
    assert levels["dropout"]["effect"] == pytest.approx(-0.2) and levels["dropout"]["outcome"] == "contradicted"


TUNED = {
    "claim": "Adam reaches a lower training loss than SGD",
    "factor": {"optimizer": ["sgd", "adam"]},
    "baseline": "sgd",
    "measure": "final:train_loss",
    "expect": "lower",
    "seeds": 3,
    "tune_lr": {"grid": [0.001, 0.01, 0.1], "seeds": 2, "select": "final:train_loss"},
}


def test_tune_lr_tunes_first_then_runs_each_arm_at_its_chosen_lr() -> None:
    spec = spec_of(TUNED)
    assert spec.trials == 2 * 3 * 2 + 2 * 3
    fn = Scripted()
    driver, study, _ = make(spec, fn)
    assert driver.run()
    rs = records(study)
    tune = [r for r in rs if r.attrs[TrialAttr.PHASE] == "tune"]
    main = [r for r in rs if r.attrs[TrialAttr.PHASE] == "main"]
    assert len(tune) == 12 and len(main) == 6 and max(r.number for r in tune) < min(r.number for r in main)
    assert {r.seed for r in tune} == {TUNE_SEED_BASE, TUNE_SEED_BASE + 1} and {r.seed for r in main} == {0, 1, 2}
    assert {(r.attrs[TrialAttr.ARMS][0], r.config.lr) for r in tune} == {  # type: ignore[union-attr]
        (f"optimizer={o}", lr) for o in ("sgd", "adam") for lr in (0.001, 0.01, 0.1)
    }
    for r in main:
        assert r.config is not None and r.config.lr == BEST_LR[r.config.optimizer]
    v = judge(rs, spec)
    assert v["lrs"] == {"optimizer=sgd": 0.1, "optimizer=adam": 0.01}
    assert v["seeds"] == [0, 1, 2]  # the verdict never reads a tuning seed


class StopAfter(Listener):
    def __init__(self, n: int) -> None:
        self.n, self.ended, self.driver = n, 0, None

    def on_trial_end(self, number: int, outcome: Outcome, snapshot: Snapshot) -> None:
        self.ended += 1
        if self.ended == self.n and self.driver is not None:
            self.driver.request_stop()


@pytest.mark.parametrize("stop_after", [5, 13])  # in the tuning phase; after it, with the lrs chosen
def test_a_resume_redoes_no_finished_cell_and_rederives_the_lrs(stop_after: int) -> None:
    spec = spec_of(TUNED)
    first, listener = Scripted(), StopAfter(stop_after)
    driver, study, _ = make(spec, first, listener=listener)
    listener.driver = driver
    assert not driver.run()  # interrupted: the trial in flight is recorded as such and re-enqueued
    done_before = {r.attrs[TrialAttr.CELL] for r in records(study) if r.counted}
    assert stop_after <= len(done_before) <= stop_after + 1  # the other trial in flight may end in the same poll
    asked_before = len(study.trials)
    second = Scripted()
    driver2, _, _ = make(spec, second, study=study)  # a new driver on the same storage: a resume
    assert driver2.run()
    rs = records(study)
    counted = [r for r in rs if r.counted]
    keys = [r.attrs[TrialAttr.CELL] for r in counted]
    assert len(keys) == len(set(keys)) == spec.trials  # every cell once
    assert len(second.trained) == spec.trials - len(done_before)  # only what was left is trained
    assert not done_before & {r.attrs[TrialAttr.CELL] for r in rs if r.number >= asked_before}
    for r in counted:
        if r.attrs[TrialAttr.PHASE] == "main":
            assert r.config is not None and r.config.lr == BEST_LR[r.config.optimizer]
    interrupted = [r for r in rs if r.stop_reason is StopReason.INTERRUPTED]
    assert interrupted and all(r.attrs[TrialAttr.RETRIED] for r in interrupted)
    reruns = [r for r in rs if r.attrs.get(TrialAttr.RETRY_OF) is not None]
    by_number = {r.number: r for r in rs}
    for r in reruns:  # a re-run takes over the cell of the trial it re-runs
        assert r.attrs[TrialAttr.CELL] == by_number[r.attrs[TrialAttr.RETRY_OF]].attrs[TrialAttr.CELL]
    assert judge(rs, spec)["lrs"] == {"optimizer=sgd": 0.1, "optimizer=adam": 0.01}


def test_failed_died_and_diverged_runs() -> None:
    spec = spec_of({**DROPOUT, "measure": "epochs_to:train_loss<=0.3", "expect": "lower", "also": []})
    fn = Scripted(fail={1}, diverge={2}, die={3})
    driver, study, _ = make(spec, fn)
    assert driver.run()
    rs = {r.number: r for r in records(study)}
    assert rs[1].stop_reason is StopReason.FAILED and TrialAttr.MEASURES not in rs[1].attrs
    assert rs[2].stop_reason is StopReason.DIVERGED and rs[2].attrs[TrialAttr.MEASURES] == {"epochs_to:train_loss<=0.3": 4.0}
    assert rs[3].stop_reason is StopReason.WORKER_DIED and not rs[3].counted
    (rerun,) = [r for r in rs.values() if r.attrs.get(TrialAttr.RETRY_OF) == 3]
    assert rerun.attrs[TrialAttr.CELL] == rs[3].attrs[TrialAttr.CELL] and rerun.state == TrialState.COMPLETE
    assert sum(r.counted for r in rs.values()) == spec.trials == 8
    v = judge(list(rs.values()), spec)
    level = v["levels"][0]
    assert level["seeds"] == [1, 2, 3]  # trial 1 (seed 0, dropout 0.5) failed: seed 0 leaves the paired design
    assert level["excluded"] == {"dropout=0.0": [0], "dropout=0.5": [0]}


def test_a_measure_that_cannot_be_taken_is_recorded_with_why() -> None:
    spec = spec_of({**DROPOUT, "measure": "grad_norm_3@1", "also": []})
    driver, study, _ = make(spec, Scripted())
    assert driver.run()
    r = records(study)[0]
    assert r.attrs[TrialAttr.MEASURES] == {"grad_norm_3@1": None}
    assert "has no 'grad_norm_3'" in r.attrs[TrialAttr.MEASURE_ERRORS]["grad_norm_3@1"]
    v = judge(records(study), spec)
    assert v["outcome"] == "inconclusive" and "too few seeds" in v["levels"][0]["reason"]


def test_a_param_budget_design_counts_and_resolves_widths() -> None:
    compare = {
        "claim": "deeper",
        "factor": {"depth": [1, 3]},
        "baseline": 1,
        "param_budget": 200,
        "measure": "val_acc",
        "expect": "higher",
        "seeds": 2,
    }
    spec = spec_of(compare)
    design = Design(spec.compare, spec.fixed, (6, 3))  # type: ignore[arg-type]
    assert design.total == spec.trials == 4
    widths = {r.arms[0]: r.overrides["width"] for r in design.main(None)}
    assert widths["depth=1"] > widths["depth=3"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pruner": "median"}, "a comparison never prunes"),
        ({"trials": 3}, "trials: a comparison trains each of its 8 runs once"),
        ({"space": "optimizers"}, "space: a comparison's runs are its arms"),
        ({"enqueue": [{"lr": 0.1}]}, "enqueue and objectives do not apply"),
    ],
)
def test_a_comparison_spec_refuses_what_does_not_apply(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_of(DROPOUT, **changes)


def test_pruner_none_is_accepted_and_the_count_survives_overrides() -> None:
    spec = spec_of(DROPOUT, pruner={"name": "none"})
    assert spec.with_overrides(concurrency=3).trials == 8
    assert spec_of({**DROPOUT, "seeds": 6}).trials == 12
