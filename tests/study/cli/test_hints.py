"""The commands a study's hints print (``study best NAME``, ``study resume NAME``, ``study
sync NAME``) are typed as they will work here: ``study`` when PATH finds this one, else its
path (``.venv/bin/study`` after ``make study``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from study.cli.runs import print_summary
from study.run.launch import study_command
from study.spec import parse_spec


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `study` executable in ./.venv/bin of a working folder, run by that path."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "study"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/study", "launch", "spec.yaml"])
    return bin_dir


def test_not_on_path_the_hint_is_the_path_that_was_run(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert study_command() == ".venv/bin/study"
    elsewhere = venv.parent.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not below the working folder: the absolute path
    monkeypatch.setattr(sys, "argv", [str(venv / "study")])
    assert study_command() == str(venv / "study")


def test_a_working_folder_removed_under_the_run_gives_the_absolute_path(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray job runs in an unpacked working_dir that can be removed while the study runs."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [str(venv / "study")])
    gone = venv.parent.parent / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert study_command() == str(venv / "study")


def test_on_path_the_hint_is_study(venv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{venv}{os.pathsep}/usr/bin")
    assert study_command() == "study"


def test_the_summary_prints_the_hints_with_that_command(venv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = parse_spec({"name": "quickstart", "tracking_uri": "sqlite:///mlflow.db"})
    result = SimpleNamespace(study=optuna.create_study(), mlflow_complete=True, mlflow_lost=0, mlflow_repaired=0)
    print_summary(result, spec, study_command())
    out = capsys.readouterr().out
    assert "  .venv/bin/study ui quickstart" in out and "Best trials: .venv/bin/study best quickstart" in out
    assert "Every epoch of every trial is in MLflow" in out


def test_the_summary_says_only_what_is_true_of_mlflow(capsys: pytest.CaptureFixture[str]) -> None:
    spec = parse_spec({"name": "s", "tracking_uri": "http://127.0.0.1:5000"})
    study = optuna.create_study()
    print_summary(SimpleNamespace(study=study, mlflow_complete=False, mlflow_lost=7, mlflow_repaired=0), spec, "study")
    out = capsys.readouterr().out
    assert "Every epoch" not in out and "MLflow (http://127.0.0.1:5000) is missing part of this study" in out
    assert "study sync s" in out
    print_summary(SimpleNamespace(study=study, mlflow_complete=True, mlflow_lost=7, mlflow_repaired=3), spec, "study")
    out = capsys.readouterr().out
    assert "Every epoch" not in out and "Every trial is in MLflow (3 run(s) filled in from Optuna" in out
