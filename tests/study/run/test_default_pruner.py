"""The default pruner (a spec naming none): successive halving with rungs derived from the
trials' epochs, pruning through the real engine (in-process executor, Optuna journal, MLflow
SQLite) and recording the rung each trial reached."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from study.run import launch as launching
from study.run.events import Ended, Epoch, Started
from study.run.executor import InProcessExecutor
from study.run.prepare import Prepared, load_space, prepare
from study.run.samplers import make_pruner, trial_epochs
from study.spec import StudySpec, parse_spec


def pruner_of(spec: StudySpec) -> optuna.pruners.BasePruner:
    return make_pruner(spec, load_space(spec.space, spec.base_dir, spec.target))


def epochs_of(spec: StudySpec) -> int | None:
    return trial_epochs(spec, load_space(spec.space, spec.base_dir, spec.target))


def first_pruned_step(pruner: optuna.pruners.BasePruner, good: list[float], bad: list[float], n_bad: int = 1) -> int | None:
    """A fresh maximizing study (a fixed name: Hyperband puts a trial in a bracket by a hash
    of the study's name and the trial's number): `good` completes, then up to `n_bad` trials
    report `bad` epoch by epoch; the epoch the first pruned one is pruned at, or None."""
    study = optuna.create_study(study_name="pruner-test", direction="maximize", pruner=pruner)
    for curve, last in ((good, True), *((bad, False),) * n_bad):
        trial = study.ask()
        for epoch, v in enumerate(curve, 1):
            trial.report(v, epoch)
            if not last and trial.should_prune():
                return epoch
            if last:
                trial.should_prune()  # records the rungs it passes
        study.tell(trial, max(curve))
    return None


@pytest.mark.parametrize(
    ("fixed", "epochs", "first_rung"),
    [({}, 30, 1), ({"epochs": 100}, 100, 3), ({"epochs": 5}, 5, 1)],  # max(1, epochs // 27)
)
def test_default_is_successive_halving_with_its_first_rung_derived_from_epochs(fixed: dict, epochs: int, first_rung: int) -> None:
    spec = parse_spec({"name": "x", "space": "full", "fixed": fixed})
    assert spec.pruner.name == "successive_halving" and spec.sampler.name == "tpe"
    assert epochs_of(spec) == epochs
    good, bad = [0.9] * epochs, [0.1] * epochs
    assert first_pruned_step(pruner_of(spec), good, bad) == first_rung


def test_epochs_come_from_the_space_and_none_when_the_space_samples_them() -> None:
    assert epochs_of(parse_spec({"name": "x", "space": "optimizers"})) == 20
    assert epochs_of(parse_spec({"name": "x", "space": "full", "fixed": {"epochs": 12}})) == 12
    sampled = {"parameters": {"epochs": {"int": [5, 50]}, "lr": {"float": [1e-3, 1e-1], "log": True}}}
    assert epochs_of(parse_spec({"name": "x", "space": sampled})) is None  # Optuna's "auto" then
    assert trial_epochs(parse_spec({"name": "x", "space": "full"})) is None  # no space given: "auto"
    hb = pruner_of(parse_spec({"name": "x", "space": "full", "pruner": "hyperband"}))
    good, bad = [0.9] * 30, [0.1] * 30
    assert first_pruned_step(hb, good, bad, n_bad=8) is not None  # max_resource = 30 epochs: pruning from the first trials


def scripted(number: int, config: Any, data: Any) -> Iterator[Any]:
    """Trial 0 learns (val_loss 1.0 -> 0.1); every later trial is stuck at val_loss 3.0."""
    yield Started(number, {"pid": 0, "host": "here"})
    values = [1.0, 0.5, 0.1] if number == 0 else [3.0, 3.0, 3.0]
    for epoch, v in enumerate(values, 1):
        yield Epoch(number, epoch, {"train_loss": v / 2, "val_loss": v, "val_acc": 1 - v / 10})
    yield Ended(number, "completed", best_epoch=values.index(min(values)) + 1, stopped_epoch=3, n_params=10)


def test_default_pruner_prunes_in_a_study_and_records_the_rung(workdir: Path, tiny_spec: Callable[..., dict]) -> None:
    data = tiny_spec(trials=5, sampler="random")
    del data["pruner"]  # the tiny spec says none; this study takes the default
    prep = prepare(parse_spec(data))

    def executor(p: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(p.data, slots=2, trial_fn=scripted)
        return ex, ex.close

    result = launching.run_study(prep, executor=executor, say=lambda m: None, inline_tracking=True)
    trials = {t.number: t for t in result.study.get_trials()}
    assert trials[0].state == TrialState.COMPLETE
    pruned = [t for t in trials.values() if t.state == TrialState.PRUNED]
    assert {2, 3, 4} <= {t.number for t in pruned}  # 3 epochs: rungs at epochs 1 and 3
    for t in pruned:
        assert t.user_attrs["stop_reason"] == "pruned" and t.user_attrs["pruned_step"] == 1
        assert t.system_attrs["completed_rung_0"] == pytest.approx(3.0)  # Optuna's record of the rung
        assert "completed_rung_1" not in t.system_attrs


def test_a_trial_that_trained_every_epoch_is_never_pruned(workdir: Path, tiny_spec: Callable[..., dict]) -> None:
    """The median pruner's first say falls on the last of the 3 epochs (warm-up 3): the worse
    trials trained every epoch by then, so they complete (with their test metrics) instead of
    ending pruned; the pruner is not asked after a trial's last epoch."""
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 3}
    prep = prepare(parse_spec(tiny_spec(trials=4, sampler="random", concurrency=1, pruner=pruner)))

    def executor(p: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(p.data, slots=1, trial_fn=scripted)
        return ex, ex.close

    result = launching.run_study(prep, executor=executor, say=lambda m: None, inline_tracking=True)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.user_attrs["stop_reason"] for t in trials] == ["completed"] * 4
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.MedianPruner(1, 3))
    study.add_trial(trials[0])
    t = study.ask()
    for epoch in (1, 2, 3):
        t.report(3.0, epoch)
    assert t.should_prune()  # Optuna's pruner would have stopped them at that epoch
