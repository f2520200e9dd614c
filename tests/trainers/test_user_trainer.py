"""A user's trainer function as a trial: generator and callback styles stream one epoch at a
time, stopping ends the user's loop, a non-finite objective is divergence, a missing objective
metric is a clear error; plus the scikit-learn example run through the runner."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from trainers import load_dataset
from trainers.user_code import UserCodeError
from trainers.user_trainer import StopTrial, check_trial, iter_user_trial

DATA = load_dataset("spirals", n_samples=100)
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


class Log:
    """What the user's code did: epochs started, whether its cleanup ran, in which thread."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.cleaned_up = False
        self.thread: threading.Thread | None = None


def generator_trial(log: Log, values=None):
    def trial(params, data):
        try:
            for e in range(params["epochs"]):
                log.started.append(e)
                v = values[e] if values else 1.0 / (e + 1)
                yield {"epoch": e, "val_loss": v, "val_acc": 0.5 + 0.01 * e, "n_rows": len(data.y_train)}
        finally:
            log.cleaned_up = True

    return trial


def callback_trial(log: Log, values=None):
    def trial(params, data, report):
        log.thread = threading.current_thread()
        try:
            for e in range(params["epochs"]):
                log.started.append(e)
                v = values[e] if values else 1.0 / (e + 1)
                if e % 2:
                    report({"val_loss": v, "val_acc": np.float32(0.5)})
                else:
                    report(val_loss=v, val_acc=0.5, epoch=e)
        finally:
            log.cleaned_up = True

    return trial


STYLES = {"generator": generator_trial, "callback": callback_trial}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_epochs_stream_one_at_a_time_and_are_counted(style: str) -> None:
    log = Log()
    gen = iter_user_trial(STYLES[style](log), {"epochs": 4}, DATA, objective="val_loss")
    for k in range(1, 5):
        rec = next(gen)
        time.sleep(0.05)  # a callback-style function runs in a thread: give it time to run ahead, if it could
        assert rec.epoch == k and log.started == list(range(k))  # the user's loop waits for the caller
        assert rec.metrics()["val_loss"] == pytest.approx(1.0 / k) and "epoch" not in rec.metrics()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    result = stop.value.value
    assert result.stop_reason == "completed" and result.stopped_epoch == 4 and result.best_epoch == 4
    assert [r.epoch for r in result.history] == [1, 2, 3, 4] and result.final["val_loss"] == 0.25
    assert log.cleaned_up


@pytest.mark.parametrize("style", sorted(STYLES))
def test_closing_stops_the_users_loop(style: str) -> None:
    log = Log()
    gen = iter_user_trial(STYLES[style](log), {"epochs": 100}, DATA, objective="val_loss")
    next(gen), next(gen)
    gen.close()  # what pruning does
    assert log.cleaned_up and log.started == [0, 1]
    if style == "callback":
        assert log.thread is not None and not log.thread.is_alive()


@pytest.mark.parametrize("style", sorted(STYLES))
def test_should_stop_ends_the_run_as_stopped_by_caller(style: str) -> None:
    log = Log()
    gen = iter_user_trial(STYLES[style](log), {"epochs": 50}, DATA, objective="val_acc", should_stop=lambda rec: rec.epoch == 3)
    recs = []
    with pytest.raises(StopIteration) as stop:
        while True:
            recs.append(next(gen))
    assert [r.epoch for r in recs] == [1, 2, 3] and stop.value.value.stop_reason == "stopped_by_caller"
    assert log.cleaned_up and log.started == [0, 1, 2]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_non_finite_objective_is_divergence(style: str) -> None:
    log = Log()
    values = [0.9, 0.5, math.nan, 0.1, 0.1]
    gen = iter_user_trial(STYLES[style](log, values), {"epochs": 5}, DATA, objective="val_loss")
    recs = []
    with pytest.raises(StopIteration) as stop:
        while True:
            recs.append(next(gen))
    assert len(recs) == 3 and math.isnan(recs[-1].values["val_loss"])  # the diverged epoch is reported
    assert stop.value.value.stop_reason == "diverged" and stop.value.value.best_epoch == 2 and log.cleaned_up
    assert log.started == [0, 1, 2]
    # a non-finite metric that is not the objective is just recorded
    gen = iter_user_trial(STYLES[style](Log(), values), {"epochs": 5}, DATA, objective="val_acc")
    assert len(list(_drain(gen))) == 5


def _drain(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_missing_objective_metric_is_an_error_naming_it_and_what_was_reported(style: str) -> None:
    log = Log()
    gen = iter_user_trial(STYLES[style](log), {"epochs": 3}, DATA, objective="val_f1")
    with pytest.raises(UserCodeError) as info:
        next(gen)
    msg = str(info.value)
    assert "trainer" in msg and "trial" in msg and "test_user_trainer.py" in msg
    assert "epoch 1 reported no 'val_f1' (the objective's metric); it reported [" in msg and "'val_acc', 'val_loss'" in msg
    assert log.cleaned_up
    with pytest.raises(UserCodeError, match=r"reported no 'val_f1'"):
        check_trial(STYLES[style](Log()), {"epochs": 3}, DATA, objective="val_f1")


def test_bad_reports_are_errors() -> None:
    def not_a_dict(params, data):
        yield 0.5

    def not_a_number(params, data):
        yield {"val_loss": "low"}

    def returns_list(params, data):
        return [{"val_loss": 1.0}]

    def both(params, data, report):
        yield {"val_loss": 1.0}

    def silent(params, data, report):
        return None

    def bad_signature(params):
        yield {"val_loss": 1.0}

    cases = {
        not_a_dict: r"epoch 1 reported a float, not a dict of metrics",
        not_a_number: r"epoch 1 reported val_loss='low' \(str\); metrics must be numbers",
        returns_list: r"returned a list; it must yield one dict of metrics per epoch",
        both: r"takes `report` but is a generator",
        silent: r"reported no epoch",
        bad_signature: r"must be def trial\(params, data\) .* its signature is \(params\)",
    }
    for fn, pattern in cases.items():
        with pytest.raises(UserCodeError, match=pattern):
            list(_drain(iter_user_trial(fn, {}, DATA)))


def test_the_users_exception_propagates_unchanged_and_the_dry_run_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "boom.py"
    path.write_text("def trial(params, data, report):\n    report(val_loss=1.0)\n    raise KeyError('lr_max')\n")
    gen = iter_user_trial("boom.py:trial", {}, DATA, base_dir=str(tmp_path))
    assert next(gen).epoch == 1
    with pytest.raises(KeyError) as info:
        next(gen)
    assert any(f.filename == str(path) and f.lineno == 3 for f in __import__("traceback").extract_tb(info.value.__traceback__))
    path.write_text("def trial(params, data):\n    raise KeyError('lr_max')\n    yield {}\n")
    with pytest.raises(UserCodeError) as err:
        check_trial("boom.py:trial", {}, DATA, base_dir=str(tmp_path))
    assert str(err.value) == f"trainer boom.py:trial: the dry run (first epoch) raised KeyError: 'lr_max' ({path}, line 2)"


def test_a_user_swallowing_stop_trial_still_cannot_report_again() -> None:
    reports: list[str] = []

    def stubborn(params, data, report):
        for _ in range(5):
            try:
                report(val_loss=1.0)
                reports.append("ok")
            except StopTrial:
                reports.append("stopped")

    gen = iter_user_trial(stubborn, {}, DATA)
    next(gen)
    gen.close()
    assert reports == ["stopped"] * 5


def test_params_are_a_copy() -> None:
    def mutates(params, data):
        params["lr"] = 99
        yield {"val_loss": 1.0}

    params = {"lr": 0.1}
    list(_drain(iter_user_trial(mutates, params, DATA)))
    assert params == {"lr": 0.1}


def test_the_sklearn_example_streams_epochs_and_stops_when_closed() -> None:
    data = load_dataset("digits")
    ref = os.path.join(EXAMPLES, "sklearn_trainer.py") + ":trial"
    assert set(check_trial(ref, {"epochs": 2}, data, objective="val_loss")) == {"train_loss", "train_acc", "val_loss", "val_acc"}
    gen = iter_user_trial(ref, {"epochs": 30, "eta0": 0.05, "alpha": 1e-4, "seed": 1}, data, objective="val_loss")
    recs = [next(gen) for _ in range(4)]
    gen.close()
    losses = [r.values["val_loss"] for r in recs]
    assert [r.epoch for r in recs] == [1, 2, 3, 4] and losses[-1] < losses[0]
    assert recs[-1].values["val_acc"] > 0.85
