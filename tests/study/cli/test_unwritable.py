"""Storage or tracking in a folder that takes no files (``/proc``): bad input before anything
starts. Exit 2, one line naming the path, nothing written, Ray never imported; the same
through the Python entry point `study.run.launch`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli import main

GOOD = "name: s\ndataset: {name: spirals, args: {n_samples: 200}}\nspace: optimizers\nfixed: {epochs: 2}\ntrials: 2\n"

CASES = [
    (["--storage", "sqlite:////proc/x.db"], "storage 'sqlite:////proc/x.db': cannot create a file in folder '/proc'"),
    (["--storage", "journal:/proc/x.journal"], "storage 'journal:/proc/x.journal': cannot create a file in folder '/proc'"),
    (["--storage", "/proc/x.db"], "storage 'sqlite:////proc/x.db': cannot create a file in folder '/proc'"),
    (["--tracking-uri", "sqlite:////proc/mlflow.db"], "tracking_uri 'sqlite:////proc/mlflow.db': cannot create a file in folder"),
    (["--tracking-uri", "file:///proc/mlruns"], "tracking_uri 'file:///proc/mlruns': cannot create a file in folder '/proc'"),
    (["--time-budget", "soon"], "field time_budget: must be a duration"),
]


@pytest.mark.parametrize(("flags", "message"), CASES, ids=[m for _, m in CASES])
def test_unwritable_stores_exit_2_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(GOOD)
    assert main(["launch", "spec.yaml", "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_the_command_refuses_before_ray_is_even_imported(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(GOOD + "tracking_uri: sqlite:////proc/mlflow.db\n")
    code = "import sys; from study.cli import main; rc = main(['launch', 'spec.yaml']); print('ray' in sys.modules, rc)"
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["False", "2"], p.stdout + p.stderr
    assert "/proc" in p.stderr and "Traceback" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["spec.yaml"]


def test_the_python_entry_point_refuses_them_too(tmp_path: Path) -> None:
    spec = {"name": "s", "dataset": {"name": "spirals", "args": {"n_samples": 200}}, "space": "optimizers", "trials": 2}
    code = (
        "import json, sys\n"
        "from study.run import launch\n"
        "from study.spec import SpecError\n"
        "out = {}\n"
        f"for kw in ({{'storage': 'journal:/proc/x.journal'}}, {{'tracking_uri': 'sqlite:////proc/m.db'}}):\n"
        "    try:\n"
        f"        launch({spec!r}, **kw)\n"
        "    except SpecError as e:\n"
        "        out[next(iter(kw))] = str(e)\n"
        "out['ray'] = 'ray' in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "journal:/proc/x.journal" in out["storage"] and "cannot create a file in folder '/proc'" in out["storage"]
    assert "sqlite:////proc/m.db" in out["tracking_uri"] and out["ray"] is False
    assert list(tmp_path.iterdir()) == []
