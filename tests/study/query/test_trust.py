"""What the queries say is what the trials did: settings that had no effect are not shown,
fields are named as in TrainConfig (never the space's Optuna names), searched settings are
marked, test metrics are visible (and never used to rank), importance survives pruned trials
before completed ones, the report's equal-budget sentence appears, `study best` fits the
terminal without cutting run ids. Real small studies: Optuna journal, MLflow SQLite,
in-process executor."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import study
from study.cli import main
from study.query.report import build_report
from study.run.executor import InProcessExecutor
from study.run.launch import run_study
from study.run.prepare import Prepared, prepare
from study.spec import parse_spec

STUDY = str(Path(sys.executable).parent / "study")


def _in_process(prep: Prepared):
    return InProcessExecutor(prep.data, slots=2), lambda: None


def _run(raw: dict) -> None:
    result = run_study(prepare(parse_spec(raw, source="test")), executor=_in_process, say=lambda m: None, flush_seconds=0.0)
    assert result.finished


@pytest.fixture(scope="module")
def opt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The built-in optimizers space (conditional momentum, rho, betas; lr under several Optuna
    names), a test split, and an Adam and a momentum trial for sure."""
    d = tmp_path_factory.mktemp("trust")
    raw = {
        "name": "opt",
        "dataset": {"name": "digits", "test": 0.2},
        "space": "optimizers",
        "fixed": {"epochs": 3, "depth": 1, "width": 16},
        "trials": 8,
        "concurrency": 2,
        "pruner": "none",
        "sampler": {"name": "random", "seed": 4},
        "enqueue": [
            {"optimizer": "adam", "lr_adaptive": 3e-3, "beta1": 0.85, "beta2": 0.99},
            {"optimizer": "momentum", "lr_momentum": 0.05, "momentum": 0.7},
        ],
        "storage": f"journal:{d / 'optuna.journal'}",
        "tracking_uri": f"sqlite:///{d / 'mlflow.db'}",
    }
    _run(raw)
    return {"storage": raw["storage"], "dir": str(d)}


@pytest.fixture
def handle(opt):
    return study.load("opt", storage=opt["storage"])


def blank(v: object) -> bool:
    """An empty cell: None or NaN (pandas stores a missing float as NaN)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _study(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([STUDY, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


# -- 1. what a trial used, under field names, searched marked -----------------------------------
def test_trials_show_only_settings_that_had_an_effect(handle) -> None:
    df = handle.trials().set_index("number")
    adam, mom = df[df["optimizer"] == "adam"].iloc[0], df[df["optimizer"] == "momentum"].iloc[0]
    assert adam["beta1"] == pytest.approx(0.85) and adam["beta2"] == pytest.approx(0.99)
    assert blank(adam["momentum"]) and blank(adam["rho"])  # Adam used neither
    assert mom["momentum"] == pytest.approx(0.7) and blank(mom["beta1"]) and blank(mom["eps"])
    assert adam["lr"] == pytest.approx(3e-3) and mom["lr"] == pytest.approx(0.05)  # lr, not lr_adaptive
    assert adam["epochs"] == 3  # fixed settings that apply are shown
    # the stored configuration keeps every value (what TrainConfig resolved)
    rec = handle.optuna.trials[int(adam.name)]
    assert rec.user_attrs["config"]["momentum"] == 0.9


def test_searched_fields_are_marked(handle) -> None:
    df = handle.trials()
    searched = df.attrs["searched"]
    assert {"optimizer", "lr", "momentum", "beta1", "beta2"} <= set(searched)
    assert not {"epochs", "depth", "width", "batch_size", "seed"} & set(searched)
    for _, r in df.iterrows():
        assert set(r["searched"]) <= set(searched) and "lr" in r["searched"]
        assert not any(blank(r[f]) for f in r["searched"])  # a searched field always applied


def test_best_json_has_what_each_trial_used_and_what_was_searched(opt, handle) -> None:
    p = _study("best", "opt", "--storage", opt["storage"], "-k", "8", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["number"]: r for r in json.loads(p.stdout)}
    assert len(rows) == 8
    for n, r in rows.items():
        config = handle.optuna.trials[n].user_attrs["config"]
        if r["optimizer"] in ("adam", "adamw"):
            assert "momentum" not in r and "rho" not in r and r["beta1"] == config["beta1"]
        elif r["optimizer"] in ("momentum", "nesterov"):
            assert "beta1" not in r and "rho" not in r and r["momentum"] == config["momentum"]
        assert "lr_adaptive" not in r and r["lr"] == config["lr"]
        assert r["searched"] == handle.optuna.trials[n].user_attrs["searched"]
        assert r["epochs"] == 3 and "epochs" not in r["searched"]


def test_status_names_settings_as_best_does(opt, capsys) -> None:
    assert main(["status", "opt", "--storage", opt["storage"]]) == 0
    out = capsys.readouterr().out
    best_lines = [line for line in out.splitlines() if line.strip().startswith("#")]
    assert len(best_lines) == 5
    for line in best_lines:
        assert " lr=" in line and "lr_" not in line, line
        if "optimizer=adam " in line or line.endswith("optimizer=adam"):
            assert "momentum=" not in line and "rho=" not in line and "beta1=" in line


# -- 4. test metrics: visible, filterable, never used for selection --------------------------------
def test_test_metrics_are_in_trials_and_best_trials(handle) -> None:
    df = handle.trials()
    assert df["test_acc"].between(0, 1).all() and (df["test_loss"] > 0).all()
    assert df.attrs["test_metrics"] == ["test_loss", "test_acc"] and "never used" in df.attrs["notes"][0]
    best = handle.best_trials(k=8)
    assert best["value"].is_monotonic_increasing  # ranked by val_loss, whatever test_acc says
    cut = float(df["test_acc"].median())
    above = handle.best_trials(k=8, where=f"test_acc > {cut}")
    assert len(above) == int((df["test_acc"] > cut).sum()) >= 1 and (above["test_acc"] > cut).all()


def test_cli_best_filters_on_test_acc_and_says_it_is_not_used(opt, handle) -> None:
    cut = float(handle.trials()["test_acc"].median())
    p = _study("best", "opt", "--storage", opt["storage"], "-k", "8", "--where", f"test_acc > {cut}", env={"COLUMNS": "300"})
    assert p.returncode == 0, p.stderr
    assert "test_acc" in p.stdout and "never used to rank, select or prune" in p.stdout
    p = _study("best", "opt", "--storage", opt["storage"], "-k", "8", "--json", "--where", f"test_acc > {cut}")
    rows = json.loads(p.stdout)
    assert rows and all(r["test_acc"] > cut and r["test_loss"] > 0 for r in rows)


def test_report_shows_test_metrics_and_searched_settings(handle, tmp_path) -> None:
    rep = handle.report(str(tmp_path / "r.html"))
    best = rep.sections[0]
    assert best.title == "Best trials" and best.table is not None
    assert "<th>test_acc</th>" in best.table and "never used to rank, select or prune" in best.text
    assert "Searched settings: optimizer, lr" in best.text and "<th>momentum</th>" in best.table
    assert "lr_adaptive" not in best.table


# -- 9. `study best` fits the terminal and never cuts a run id -------------------------------------
@pytest.mark.parametrize("columns", [60, 80, 200])
def test_best_table_fits_the_terminal_and_keeps_run_ids(opt, handle, columns) -> None:
    p = _study("best", "opt", "--storage", opt["storage"], "-k", "8", env={"COLUMNS": str(columns)})
    assert p.returncode == 0, p.stderr
    assert max(len(line) for line in p.stdout.splitlines()) <= columns
    for run_id in handle.trials()["run_id"]:
        assert run_id in p.stdout  # whole, on one line
    for col in ("optimizer", "lr", "momentum", "beta1", "test_acc"):
        assert f" {col} " in p.stdout or f" {col}\n" in p.stdout or f"┃ {col}" in p.stdout, col


# -- 2. importance when pruned and failed trials come first ------------------------------------------
def test_importance_with_pruned_and_failed_trials_before_completed_ones(workdir: Path) -> None:
    from study.run.samplers import make_pruner, make_sampler
    from study.stores import optuna_storage

    spec = parse_spec(
        {
            "name": "imp",
            "space": "optimizers",
            "storage": f"journal:{workdir / 'o.journal'}",
            "tracking_uri": "sqlite:///mlflow.db",
        }
    )
    url = optuna_storage.check_storage(spec.storage)
    s = optuna_storage.create_study(spec, url, make_sampler(spec), make_pruner(spec))
    dist = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
        "depth": optuna.distributions.IntDistribution(1, 4),
    }
    s.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"lr": 0.5, "depth": 1}, distributions=dist)
    )
    s.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"lr": 0.1, "depth": 2}, distributions=dist))
    for i in range(8):  # best_epoch follows depth exactly; lr is noise
        lr, depth = 10 ** (-3 + (i * 7 % 8) / 4), 1 + i % 4
        s.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "depth": depth}, distributions=dist, value=0.5 + 0.01 * (i * 5 % 8),
                user_attrs={"best_epoch": 2 * depth, "stop_reason": "completed"},
            )
        )  # fmt: skip
    h = study.load("imp", storage=spec.storage)
    imp = h.importance(target="best_epoch", evaluator="mean_decrease_impurity")
    assert set(imp) == {"lr", "depth"} and imp["depth"] > 0.9
    assert set(h.importance()) == {"lr", "depth"}  # the objective too
    assert h.importance(target="stopped_epoch") == {}  # no completed trial carries it


# -- 3. a budget space reaches the trials table and the report ------------------------------------------
BUDGET_SPACE = """\
name: budget-test
description: Depth at an equal parameter budget, for the report test.
fixed: {activation: relu, optimizer: adam, lr: 3.0e-3, batch_size: 64, epochs: 2}
parameters:
  depth: {int: [1, 3]}
  width: {budget: 3000}
"""


def test_budget_reaches_the_trials_table_and_the_report_sentence(workdir: Path) -> None:
    (workdir / "budget.yaml").write_text(BUDGET_SPACE)
    raw = {
        "name": "budget",
        "dataset": "digits",
        "space": str(workdir / "budget.yaml"),
        "trials": 3,
        "concurrency": 2,
        "pruner": "none",
        "enqueue": [{"depth": 1}, {"depth": 3}],
        "storage": f"journal:{workdir / 'o.journal'}",
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    _run(raw)
    h = study.load("budget", storage=raw["storage"])
    df = h.trials()
    assert (df["n_params_budget"] == 3000).all()
    assert all(abs(n - 3000) <= 0.05 * 3000 for n in df["n_params"])  # the width spent the budget
    assert {"depth", "width"} <= set(df.attrs["searched"])
    rep = build_report("budget", df, h.curves(), workdir / "b.html", objective="val_loss")
    text = next(s.text for s in rep.sections if s.title == "Depth vs width")
    assert "3 of these 3 trials derive their width from an equal parameter budget (3,000 parameters)" in text
    assert not math.isnan(df["value"].iloc[0])


def test_filtering_on_test_metrics_of_a_study_without_a_test_split_says_why(workdir: Path, tiny_spec) -> None:
    raw = tiny_spec(trials=2)
    _run(raw)
    h = study.load("tiny-study", storage=raw["storage"])
    assert h.trials()["test_acc"].isna().all()
    with pytest.raises(ValueError, match=r"no trial of 'tiny-study' has test_acc \(its dataset has no test split"):
        h.best_trials(where="test_acc > 0.5")
