"""Storage URLs, tracking URIs (checked without creating anything), the stop-reason table,
seeds, objective values, samplers and pruners."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study import storage, tracking
from study.decisions import make_pruner, make_sampler, objective_values, trial_seed
from study.outcomes import MLFLOW_STATUS, STOP_REASONS, Outcome
from study.spec import SpecError, parse_spec


def test_resolve_and_mask() -> None:
    assert storage.resolve(None) == storage.DEFAULT_URL == "journal:.hpstudy/optuna.journal"
    assert storage.resolve("runs/s.journal") == "journal:runs/s.journal"
    assert storage.resolve("s.db") == "sqlite:///s.db"
    assert storage.resolve("postgresql://u:pw@h/db").endswith("://u:pw@h/db")
    assert storage.mask("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert storage.mask("sqlite:///x.db") == "sqlite:///x.db"


def test_storage_check_creates_nothing(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    assert storage.check(None) == storage.DEFAULT_URL
    assert storage.check(f"sqlite:///{tmp_path / 'o.db'}")
    assert storage.check(f"journal:{tmp_path / 'o.journal'}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("journal:/no/such/folder/x.journal", "does not exist"),
        ("sqlite:////no/such/folder/x.db", "does not exist"),
        ("sqlite:///:memory:", "needs a file path"),
        ("redis://localhost/0", "unknown kind of URL"),
        ("postgresql://u:secret@127.0.0.1:1/db", "cannot connect"),
    ],
)
def test_bad_storage_url(url: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        storage.check(url)
    assert "secret" not in str(info.value)


def test_storage_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("hello")
    with pytest.raises(SpecError, match="not an SQLite database"):
        storage.check(f"sqlite:///{tmp_path / 'notes.db'}")
    with pytest.raises(SpecError, match="is a directory"):
        storage.check(f"journal:{tmp_path}")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:////no/such/folder/mlflow.db", "does not exist"),
        ("http://127.0.0.1:1", "not reachable"),
        ("databricks", "unknown kind of URI"),
        ("s3://bucket/x", "unknown kind of URI"),
    ],
)
def test_bad_tracking_uri(uri: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        tracking.check(uri)


def test_stop_reason_table_is_consistent() -> None:
    assert set(STOP_REASONS) == {
        "completed",
        "early_stopped",
        "pruned",
        "diverged",
        "failed",
        "timeout",
        "worker_died",
        "interrupted",
    }
    for reason in STOP_REASONS:
        values = [1.0] if reason in ("completed", "early_stopped") else None
        o = Outcome(reason, values=values)
        assert o.mlflow_status == MLFLOW_STATUS[o.state]
        assert (o.mlflow_status == "FINISHED") == (o.state == TrialState.COMPLETE)
    with pytest.raises(ValueError, match="needs its objective"):
        Outcome("completed")
    with pytest.raises(ValueError, match="stop reason must be one of"):
        Outcome("exploded")


def test_trial_seed_depends_on_study_seed_and_number() -> None:
    seeds = {trial_seed(s, n) for s in range(3) for n in range(50)}
    assert len(seeds) == 150
    assert trial_seed(7, 3) == trial_seed(7, 3)


def test_objective_values_best_and_last() -> None:
    history = {
        1: {"val_loss": 0.9, "val_acc": 0.5, "train_loss": 0.8},
        2: {"val_loss": 0.4, "val_acc": 0.8, "train_loss": 0.3},
        3: {"val_loss": 0.6, "val_acc": 0.85, "train_loss": 0.1},
    }
    summary = {"best_epoch": 2, "stopped_epoch": 3, "n_params": 123}
    best = parse_spec({"name": "x"})
    assert objective_values(best, history, summary) == ([0.4], "")
    last = parse_spec({"name": "x", "objective": {"metric": "val_acc", "scope": "last"}})
    assert objective_values(last, history, summary) == ([0.85], "")
    multi = parse_spec({"name": "x", "objectives": ["val_loss", "n_params"]})
    assert objective_values(multi, history, summary) == ([0.4, 123.0], "")
    deep = parse_spec({"name": "x", "objective": "grad_norm_5"})
    values, why = objective_values(deep, history, summary)
    assert values is None and "grad_norm_5" in why
    nan = {**history, 2: {"val_loss": float("nan")}}
    values, why = objective_values(best, nan, summary)
    assert values is None and "nan" in why


@pytest.mark.parametrize(
    ("sampler", "cls"),
    [
        ("tpe", "TPESampler"),
        ("random", "RandomSampler"),
        ("gp", "GPSampler"),
        ("cmaes", "CmaEsSampler"),
        ("nsga2", "NSGAIISampler"),
    ],
)
def test_samplers(sampler: str, cls: str) -> None:
    assert type(make_sampler(parse_spec({"name": "x", "sampler": sampler}))).__name__ == cls


def test_grid_sampler_and_resume_seed() -> None:
    spec = parse_spec({"name": "x", "sampler": {"name": "grid", "grid": {"lr": [0.1, 0.01]}}})
    assert isinstance(make_sampler(spec), optuna.samplers.GridSampler)
    r = parse_spec({"name": "x", "sampler": "random"})
    draws = [
        make_sampler(r, n).sample_independent(None, None, "x", optuna.distributions.FloatDistribution(0, 1)) for n in (0, 0, 5)
    ]  # type: ignore[arg-type]
    assert draws[0] == draws[1] != draws[2]  # a resumed study does not replay the first run's draws


@pytest.mark.parametrize(
    ("pruner", "cls"),
    [
        ("none", "NopPruner"),
        ("median", "PercentilePruner"),
        ({"name": "percentile", "percentile": 25}, "PercentilePruner"),
        ("successive_halving", "SuccessiveHalvingPruner"),
        ("hyperband", "HyperbandPruner"),
        ({"name": "patient", "wrapped": "median"}, "PatientPruner"),
    ],
)
def test_pruners(pruner: object, cls: str) -> None:
    assert type(make_pruner(parse_spec({"name": "x", "pruner": pruner}))).__name__ == cls
    multi = parse_spec({"name": "x", "pruner": pruner, "objectives": ["val_loss", "n_params"]})
    assert type(make_pruner(multi)).__name__ == "NopPruner"
