"""Storage and tracking URI from the environment (flag > spec > env > default), passwords never
shown, and the one-time warning for a local storage file driven on a cluster."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.cli.runs import print_summary, show_status
from study.run.launch import local_storage_warning
from study.spec import SpecError, parse_spec
from study.stores.optuna_storage import open_storage
from study.stores.uris import STORAGE_ENV, TRACKING_ENV, with_env_defaults

BASE = {"name": "s", "dataset": "digits", "space": "optimizers"}


@pytest.mark.parametrize(
    ("spec_extra", "storage_flag", "tracking_flag", "env", "want_storage", "want_tracking"),
    [
        ({}, None, None, {}, None, "sqlite:///mlflow.db"),  # the defaults
        ({}, None, None, {STORAGE_ENV: "e.journal", TRACKING_ENV: "sqlite:///e.db"}, "e.journal", "sqlite:///e.db"),
        ({"storage": "s.journal", "tracking_uri": "sqlite:///s.db"}, None, None,
         {STORAGE_ENV: "e.journal", TRACKING_ENV: "sqlite:///e.db"}, "s.journal", "sqlite:///s.db"),  # spec over env
        ({}, "f.journal", "sqlite:///f.db", {STORAGE_ENV: "e.journal", TRACKING_ENV: "sqlite:///e.db"},
         None, "sqlite:///mlflow.db"),  # a flag: left for with_overrides, env not used
        ({"tracking_uri": "http://u:***@h:5000"}, None, None, {TRACKING_ENV: "http://u:pw@h:5000"},
         None, "http://u:pw@h:5000"),  # a stored, masked URI takes the env's when it is the same one
        ({"tracking_uri": "http://u:***@h:5000"}, None, None, {TRACKING_ENV: "http://v:pw@other:5000"},
         None, "http://u:***@h:5000"),  # ... and not another server's
    ],
)  # fmt: skip
def test_env_fills_in_what_flag_and_spec_leave_out(
    monkeypatch: pytest.MonkeyPatch,
    spec_extra: dict[str, Any],
    storage_flag: str | None,
    tracking_flag: str | None,
    env: dict[str, str],
    want_storage: str | None,
    want_tracking: str,
) -> None:
    for var in (STORAGE_ENV, TRACKING_ENV):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = with_env_defaults(parse_spec({**BASE, **spec_extra}), storage_flag, tracking_flag)
    assert (spec.storage, spec.tracking_uri) == (want_storage, want_tracking)


def test_local_storage_warning_only_for_a_file_on_a_cluster() -> None:
    assert local_storage_warning("journal:x.journal", None) is None
    assert local_storage_warning("journal:x.journal", "local") is None
    assert local_storage_warning("postgresql+psycopg2://u:pw@h/db", "auto") is None
    for url in ("journal:x.journal", "sqlite:///x.db"):
        msg = local_storage_warning(url, "10.0.0.1:6379")
        assert msg and "this machine's disk" in msg and "second driver" in msg


def test_report_masks_a_password_in_the_tracking_uri(capsys: pytest.CaptureFixture[str]) -> None:
    study = optuna.create_study()
    spec = parse_spec({**BASE, "tracking_uri": "http://admin:s3cret-pw@127.0.0.1:5000"})
    print_summary(SimpleNamespace(study=study, mlflow_complete=True, mlflow_lost=0, mlflow_repaired=0), spec)
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out and "http://admin:***@127.0.0.1:5000" in out


@pytest.mark.integration
def test_launch_takes_storage_and_tracking_from_env_and_warns_once(
    ray_address: str, workdir: Path, tiny_spec: Any, study_cli: str
) -> None:
    spec = tiny_spec(trials=2)
    for key in ("storage", "tracking_uri"):
        spec.pop(key)
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, STORAGE_ENV: f"journal:{workdir / 'env.journal'}", TRACKING_ENV: f"sqlite:///{workdir / 'mlflow.db'}"}
    p = subprocess.run(
        [study_cli, "launch", "spec.yaml", "--address", ray_address, "--quiet"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("this machine's disk") == 1
    assert not (workdir / ".hpstudy").exists()  # not the default journal
    study = optuna.load_study(study_name="tiny-study", storage=open_storage(env[STORAGE_ENV]))
    assert len(study.get_trials()) == 2
    client = MlflowClient(env[TRACKING_ENV])
    exp = client.get_experiment_by_name("tiny-study")
    assert len(client.search_runs([exp.experiment_id])) == 3  # parent + 2 trials
    # `status` finds the study through the environment too
    s = subprocess.run([study_cli, "status", "tiny-study"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
    assert s.returncode == 0 and "2 finished of 2" in s.stdout, s.stderr


def test_status_without_env_or_flag_uses_the_default_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    args = SimpleNamespace(name="nope", storage=None, job=None)
    with pytest.raises(SpecError, match="optuna.journal"):
        show_status(args)  # type: ignore[arg-type]
