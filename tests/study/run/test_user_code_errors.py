"""Bad user code is bad input: each case of a broken model factory or trainer function is caught
at launch (the model built once, the trainer's first epoch run dry), named in one message with
the file and function, exits 2 and writes nothing (no Optuna storage, no MLflow database)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study.cli import main

DATA = {"name": "gaussian_mixture", "args": {"n_samples": 100, "n_features": 4, "n_classes": 2}}

FILES = {
    "raises.py": "def build(n_inputs, n_classes, hidden=4):\n    raise RuntimeError('no GPU today')\n",
    "notmodule.py": "def build(n_inputs, n_classes):\n    return 42\n",
    "shape.py": "from torch import nn\n\ndef build(n_inputs, n_classes):\n    return nn.Linear(n_inputs, n_classes + 1)\n",
    "broken.py": "def build(n_inputs, n_classes:\n    pass\n",
    "imports.py": "import no_such_package_xyz\n\ndef build(n_inputs, n_classes):\n    pass\n",
    "good.py": "from torch import nn\n\ndef build(n_inputs, n_classes, hidden=4):\n    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))\n",
    "nometric.py": "def trial(params, data):\n    yield {'loss': 1.0}\n",
    "trainraises.py": "def trial(params, data):\n    raise ValueError('bad data shape')\n    yield {}\n",
    "notgen.py": "def trial(params, data):\n    return 0.5\n",
}

CASES = {
    "missing file": ({"model": "missing.py:build"}, r"field model: missing.py:build: file \S+/user/missing.py does not exist"),
    "import error": (
        {"model": "imports.py:build"},
        r"field model: imports.py:build: importing \S+/imports.py raised ModuleNotFoundError: No module named "
        r"'no_such_package_xyz' \(\S+/imports.py, line 1\)",
    ),
    "syntax error": ({"model": "broken.py:build"}, r"broken.py:build: importing \S+ has a syntax error: .*line 1\)"),
    "missing function": (
        {"model": "good.py:buld"},
        r"field model: good.py:buld: no function 'buld' in it; callables defined there: \['build'",
    ),
    "missing module": (
        {"model": "no_such_module_xyz:build"},
        r"field model: no_such_module_xyz:build: no module named 'no_such_module_xyz'",
    ),
    "factory raises": (
        {"model": "raises.py:build"},
        r"field model: raises.py:build: the factory called with \{\} raised RuntimeError: no GPU today \(\S+/raises.py, line 2\)",
    ),
    "not a module": (
        {"model": "notmodule.py:build"},
        r"field model: notmodule.py:build: the factory returned a int, not a torch.nn.Module",
    ),
    "wrong shape": ({"model": "shape.py:build"}, r"shape.py:build: the module maps a \[2, 4\] batch to shape \[2, 3\]"),
    "unknown parameter": (
        {"model": "good.py:build", "space": {"parameters": {"hiden": {"int": [2, 8]}}}},
        r"field model: good.py:build: the factory takes no parameter 'hiden'; its model parameters are \['hidden'\]",
    ),
    "mlp fields for a model": (
        {"model": "good.py:build", "fixed": {"depth": 3}},
        r"field space: \['depth'\] set for a user model, but these TrainConfig fields describe the built-in MLP only",
    ),
    "named norm of no parameter": (
        {"model": "good.py:build", "objective": "grad_norm.conv.weight"},
        r"field objective.metric: 'grad_norm.conv.weight' names no parameter of model good.py:build; its parameters are \['0.weight'",
    ),
    "no objective metric": (
        {"trainer": "nometric.py:trial"},
        r"field trainer: nometric.py:trial: epoch 1 reported no 'val_loss' \(the objective's metric\); it reported \['loss'\]",
    ),
    "trainer raises": (
        {"trainer": "trainraises.py:trial"},
        r"field trainer: trainraises.py:trial: the dry run \(first epoch\) raised ValueError: bad data shape \(\S+/trainraises.py, line 2\)",
    ),
    "trainer is no generator": ({"trainer": "notgen.py:trial"}, r"notgen.py:trial: returned a float; it must yield one dict"),
}


def user_spec(tmp_path: Path, fields: dict[str, object]) -> Path:
    """The user's files and spec in tmp/user; the stores would be in tmp/work, the working folder."""
    user = tmp_path / "user"
    user.mkdir()
    for name, text in FILES.items():
        (user / name).write_text(text)
    (tmp_path / "work").mkdir()
    spec = {"name": "bad-code", "dataset": DATA, **fields}
    (user / "spec.yaml").write_text(yaml.safe_dump(spec))
    return user / "spec.yaml"


def nothing_written(work: Path) -> None:
    assert sorted(p.name for p in work.iterdir()) == [], "nothing may be written: no Optuna storage, no MLflow database"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_user_code_exits_2_naming_file_and_function(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fields, message = CASES[case]
    spec = user_spec(tmp_path, fields)
    monkeypatch.chdir(tmp_path / "work")
    assert main(["launch", str(spec), "--trials", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{spec}: " in err
    assert re.search(message, err), err
    nothing_written(tmp_path / "work")


def test_the_command_exits_2_before_ray_starts(tmp_path: Path) -> None:
    """The `study` command in a fresh interpreter: exit 2, and Ray was never even imported."""
    spec = user_spec(tmp_path, {"model": "raises.py:build"})
    code = (
        f"import sys; from study.cli import main; rc = main(['launch', {str(spec)!r}]); print('ray' in sys.modules); sys.exit(rc)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "work", capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "raised RuntimeError: no GPU today" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout.strip() == "False"
    nothing_written(tmp_path / "work")
