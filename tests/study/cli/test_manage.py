"""`study list`, `study delete`, a spec's relative paths from any working folder (launch and
resume), `--version`, help for every argument, and what .gitignore keeps out. Studies are
real (Optuna journal, MLflow SQLite) and run by `study.cli.main` with the in-process executor
in place of Ray."""

from __future__ import annotations

import argparse
import importlib
import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from study.cli import main, parser, version
from study.run.executor import InProcessExecutor

TINY = """\
name: {name}
dataset: {{name: gaussian_mixture, args: {{n_samples: 200, n_features: 4, n_classes: 3}}}}
space: {space}
fixed: {{epochs: 2}}
trials: {trials}
concurrency: 2
pruner: none
storage: {storage}
tracking_uri: {tracking}
"""

MODULE = '''
def space(trial):
    """Learning rate only, on a one-layer net (a module next to the spec)."""
    return {"depth": 1, "width": 8, "lr": trial.suggest_float("lr", 1e-3, 0.3, log=True)}
'''


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`study launch`/`resume` run their trials in this process instead of on Ray."""

    def factory(address: str | None):
        return lambda prep: (InProcessExecutor(prep.data, slots=2), lambda: None)

    monkeypatch.setattr(importlib.import_module("study.run.launch"), "ray_executor", factory)
    for var in ("HPSTUDY_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)


def _spec(folder: Path, name: str, space: str, trials: int, storage: Path, tracking: Path) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        TINY.format(name=name, space=space, trials=trials, storage=f"journal:{storage}", tracking=f"sqlite:///{tracking}")
    )
    return path


# -- list and delete --------------------------------------------------------------------------------
@pytest.fixture
def two_studies(workdir: Path, in_process: None, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    storage, tracking = workdir / "o.journal", workdir / "mlflow.db"
    for name, trials in (("alpha", 3), ("beta", 2)):
        assert main(["launch", str(_spec(workdir, name, str(workdir / "tiny.yaml"), trials, storage, tracking)), "--quiet"]) == 0
    capsys.readouterr()
    return {"storage": storage, "tracking": tracking}


def test_list_shows_each_study_with_counts_best_and_start(two_studies, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["list", "--storage", str(two_studies["storage"])]) == 0
    out = capsys.readouterr().out
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(two_studies["storage"])))
    for name, n in (("alpha", 3), ("beta", 2)):
        line = next(line for line in out.splitlines() if f" {name} " in line)
        study = optuna.load_study(study_name=name, storage=storage)
        assert f"{n} complete" in line and "val_loss" in line
        assert f"{study.best_value:.4g}" in line
        assert study.trials[0].datetime_start.strftime("%Y-%m-%d %H:%M") in line
    assert out.index(" alpha ") < out.index(" beta ")  # oldest first


def _experiment(tracking: Path, name: str):
    return MlflowClient(f"sqlite:///{tracking}").get_experiment_by_name(name)


def test_delete_asks_and_a_wrong_answer_or_name_deletes_nothing(two_studies, capsys, monkeypatch) -> None:
    storage = str(two_studies["storage"])
    before = two_studies["storage"].read_bytes()
    monkeypatch.setattr("builtins.input", lambda prompt: "alph")  # not the name
    assert main(["delete", "alpha", "--storage", storage]) == 1
    out, err = capsys.readouterr()
    assert "3 trial(s)" in out and "MLflow experiment 'alpha' and its 4 run(s)" in out and "nothing deleted" in err
    assert main(["delete", "gamma", "--storage", storage, "--yes"]) == 2
    err = capsys.readouterr().err
    assert "no study 'gamma'" in err and "'alpha', 'beta'" in err  # names what is there
    assert two_studies["storage"].read_bytes() == before
    assert _experiment(two_studies["tracking"], "alpha").lifecycle_stage == "active"


def test_delete_removes_the_study_from_optuna_and_mlflow_and_the_name_is_free_again(two_studies, capsys, monkeypatch) -> None:
    storage, tracking = str(two_studies["storage"]), two_studies["tracking"]
    client = MlflowClient(f"sqlite:///{tracking}")
    alpha = _experiment(tracking, "alpha")
    alpha_runs = [r.info.run_id for r in client.search_runs([alpha.experiment_id])]
    beta_runs = [r.info.run_id for r in client.search_runs([_experiment(tracking, "beta").experiment_id])]
    assert len(alpha_runs) == 4 and len(beta_runs) == 3  # parent + trials
    monkeypatch.setattr("builtins.input", lambda prompt: "alpha")
    assert main(["delete", "alpha", "--storage", storage]) == 0
    assert "deleted study 'alpha'" in capsys.readouterr().out
    assert [s.study_name for s in optuna.get_all_study_summaries(storage=_journal(storage))] == ["beta"]
    assert _experiment(tracking, "alpha") is None  # the name is free
    assert client.get_experiment(alpha.experiment_id).lifecycle_stage == "deleted"
    assert all(client.get_run(r).info.lifecycle_stage == "deleted" for r in alpha_runs)
    assert all(client.get_run(r).info.lifecycle_stage == "active" for r in beta_runs)
    # a new study of the same name starts clean: no run of the deleted one comes back
    spec = _spec(
        two_studies["storage"].parent,
        "alpha",
        str(two_studies["storage"].parent / "tiny.yaml"),
        2,
        two_studies["storage"],
        tracking,
    )
    assert main(["launch", str(spec), "--quiet"]) == 0
    again = _experiment(tracking, "alpha")
    assert again.experiment_id != alpha.experiment_id and len(client.search_runs([again.experiment_id])) == 3


def _journal(path: str):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))


# -- a spec's relative paths, from any folder -------------------------------------------------------------
def test_module_space_next_to_the_spec_works_from_another_folder_and_on_resume(
    workdir: Path, in_process: None, monkeypatch
) -> None:
    project = workdir / "project"
    project.mkdir()
    (project / "my_space_near_spec.py").write_text(MODULE)
    spec = _spec(project, "near", "my_space_near_spec:space", 2, workdir / "o.journal", workdir / "mlflow.db")
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the spec's folder, and no PYTHONPATH
    import sys

    sys.modules.pop("my_space_near_spec", None)
    assert main(["launch", str(spec), "--quiet"]) == 0
    sys.modules.pop("my_space_near_spec", None)
    third = workdir / "third"
    third.mkdir()
    monkeypatch.chdir(third)
    assert main(["resume", "near", "--storage", f"journal:{workdir / 'o.journal'}", "--trials", "4", "--quiet"]) == 0
    study = optuna.load_study(study_name="near", storage=_journal(str(workdir / "o.journal")))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4 and all(t.user_attrs["config"]["depth"] == 1 for t in done)
    assert study.user_attrs["hpstudy.spec"]["spec_dir"] == str(project)
    sys.modules.pop("my_space_near_spec", None)


# -- --version, help, .gitignore --------------------------------------------------------------------------
def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    from importlib.metadata import version as installed

    assert capsys.readouterr().out.strip() == f"study (hpstudy) {installed('hpstudy')}" == f"study (hpstudy) {version()}"


def _actions(p: argparse.ArgumentParser, path: str = "study"):
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, a


def test_every_positional_argument_and_port_have_help() -> None:
    actions = list(_actions(parser()))
    positionals = [(path, a.dest) for path, a in actions if not a.option_strings]
    assert len(positionals) >= 10
    missing = [(path, a.dest) for path, a in actions if not a.option_strings and not a.help]
    assert not missing, missing
    port = next(a for path, a in actions if path == "study ui" and "--port" in a.option_strings)
    assert port.help and "5000" in port.help


def test_gitignore_keeps_out_reports_and_sqlite_side_files() -> None:
    root = Path(__file__).resolve().parents[3]
    paths = [
        "quickstart-report.html",
        "quickstart-report_figures/curves.png",
        "mlflow.db-wal",
        "mlflow.db-shm",
        "sub/x-report.html",
    ]
    p = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=root, capture_output=True, text=True)
    assert sorted(p.stdout.split()) == sorted(paths)
    p = subprocess.run(["git", "check-ignore", "--no-index", "study/query/report.py"], cwd=root, capture_output=True, text=True)
    assert p.stdout == ""  # the report's code is not ignored
