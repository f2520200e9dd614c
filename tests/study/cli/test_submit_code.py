"""What `study submit` sends for a study of the user's own code: the spec's folder as the job's
working_dir (the code next to the spec travels with it), hpstudy's packages as py_modules, and
a spec text whose relative paths resolve in the job's copy of that folder. (The job itself runs
in tests/cluster/test_submit.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.cli.jobs import ROOT, job_runtime_env, job_spec
from study.spec import SpecError, parse_spec

SERVERS = {"storage": "postgresql://u:secret@db:5432/s", "tracking_uri": "http://mlflow:5000"}


def test_the_job_carries_the_spec_folder_and_hpstudy(tmp_path: Path) -> None:
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "cnn.py").write_text("def build(n_inputs, n_classes): ...\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "model": "nets/cnn.py:build", "space": {"parameters": {}}}))
    text, env = job_spec(str(spec), {**SERVERS, "trials": 3})
    sent = yaml.safe_load(text)
    assert "base_dir" not in sent and "storage" not in sent  # the job's folder is its base; the URL goes by environment
    assert sent["model"] == "nets/cnn.py:build" and sent["trials"] == 3 and parse_spec(sent).backend == "torch"
    renv = job_runtime_env(str(spec), env)
    assert renv["working_dir"] == str(tmp_path)
    assert renv["py_modules"] == [str(ROOT / "study"), str(ROOT / "trainers"), str(ROOT / "search_spaces")]
    assert ".venv" in renv["excludes"] and renv["env_vars"] == env


def test_code_outside_the_spec_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    spec = tmp_path / "user" / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "trainer": "../t.py:trial"}))
    with pytest.raises(SpecError, match=r"field trainer: \S+/t.py is outside the spec's folder"):
        job_spec(str(spec), dict(SERVERS))
