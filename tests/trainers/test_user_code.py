"""Loading user code and the launch check of a model factory: every bad case is one
`UserCodeError` (a ValueError) naming the file and function, with the user's exception type,
message and line where there is one."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import torch

from trainers import TrainConfig, load_dataset, train
from trainers.user_code import UserCodeError, load
from trainers.user_model import check_model

GOOD = """
from torch import nn

def build(n_inputs, n_classes, hidden=8):
    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
"""


def write(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code).lstrip("\n"))
    return path


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UserCodeError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_a_file_reference_resolves_against_the_base_folder_with_its_sha256(tmp_path: Path) -> None:
    path = write(tmp_path, "models/net.py", GOOD)
    code = load("models/net.py:build", base_dir=str(tmp_path))
    assert code.path == str(path) and code.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(code.func(4, 3), torch.nn.Module)
    info = check_model("models/net.py:build", 4, 3, {"hidden": 5}, base_dir=str(tmp_path))
    assert info.n_params == 4 * 5 + 5 + 5 * 3 + 3 and info.param_names == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert info.sha256 == code.sha256 and info.where == "models/net.py:build"
    path.write_text(GOOD.replace("hidden=8", "hidden=9"))  # a changed file is read again, with a new hash
    again = load("models/net.py:build", base_dir=str(tmp_path))
    assert again.sha256 != code.sha256 and again.func(4, 3)[0].out_features == 9


def test_a_module_reference_is_imported_and_the_base_folder_is_tried(tmp_path: Path) -> None:
    write(tmp_path, "umpkg_a1/__init__.py", "")
    mod = write(tmp_path, "umpkg_a1/nets.py", GOOD)
    code = load("umpkg_a1.nets:build", base_dir=str(tmp_path))
    assert code.path == str(mod) and code.sha256 == hashlib.sha256(mod.read_bytes()).hexdigest()
    msg = error_of(load, "umpkg_nowhere.nets:build", base_dir=str(tmp_path))
    assert "model umpkg_nowhere.nets:build: no module named 'umpkg_nowhere.nets'" in msg


def test_a_file_can_import_its_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "um_helpers_b2.py", "WIDTH = 6\n")
    write(
        tmp_path,
        "net.py",
        "from um_helpers_b2 import WIDTH\nfrom torch import nn\ndef build(n_inputs, n_classes):\n    return nn.Linear(n_inputs, WIDTH)\n",
    )
    assert load("net.py:build", base_dir=str(tmp_path)).func(3, 2).out_features == 6


def test_missing_file(tmp_path: Path) -> None:
    msg = error_of(load, "nope.py:build", base_dir=str(tmp_path))
    assert f"model nope.py:build: file {tmp_path / 'nope.py'} does not exist (resolved against {tmp_path})" == msg


def test_bad_reference_format() -> None:
    assert "model must be FILE.py:function or package.module:function, got 'net.py'" in error_of(load, "net.py")
    assert "the function a Python identifier" in error_of(load, "net.py:2build")


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "broken.py", "import torch\n\ndef build(n_inputs, n_classes:\n    pass\n")
    msg = error_of(load, "broken.py:build", base_dir=str(tmp_path))
    assert msg.startswith(f"model broken.py:build: importing {tmp_path / 'broken.py'} has a syntax error")
    assert f"({tmp_path / 'broken.py'}, line 3)" in msg


def test_import_error_names_the_exception_and_line(tmp_path: Path) -> None:
    write(tmp_path, "needs.py", "import torch\nimport um_not_a_module_c3\n")
    msg = error_of(load, "needs.py:build", base_dir=str(tmp_path))
    assert "raised ModuleNotFoundError: No module named 'um_not_a_module_c3'" in msg
    assert f"({tmp_path / 'needs.py'}, line 2)" in msg and "model needs.py:build" in msg
    write(tmp_path, "zero.py", "x = 1\ny = x / 0\n")
    msg = error_of(load, "zero.py:trial", base_dir=str(tmp_path), role="trainer")
    assert msg.startswith("trainer zero.py:trial: importing") and "ZeroDivisionError: division by zero" in msg
    assert "zero.py, line 2)" in msg


def test_missing_function_and_not_callable(tmp_path: Path) -> None:
    write(tmp_path, "other.py", "def make(n_inputs, n_classes):\n    pass\nbuild = 3\n")
    msg = error_of(load, "other.py:builder", base_dir=str(tmp_path))
    assert msg == "model other.py:builder: no function 'builder' in it; callables defined there: ['make']"
    assert error_of(load, "other.py:build", base_dir=str(tmp_path)) == "model other.py:build: 'build' is a int, not a function"


def test_factory_raising(tmp_path: Path) -> None:
    write(tmp_path, "raises.py", "def build(n_inputs, n_classes, hidden=4):\n    raise RuntimeError('no GPU today')\n")
    msg = error_of(check_model, "raises.py:build", 4, 3, {"hidden": 2}, base_dir=str(tmp_path))
    assert msg.startswith("model raises.py:build: the factory called with {'hidden': 2} raised RuntimeError: no GPU today")
    assert f"({tmp_path / 'raises.py'}, line 2)" in msg


def test_factory_returning_something_else(tmp_path: Path) -> None:
    write(tmp_path, "notmod.py", "def build(n_inputs, n_classes):\n    return {'layers': 2}\n")
    msg = error_of(check_model, "notmod.py:build", 4, 3, base_dir=str(tmp_path))
    assert msg == "model notmod.py:build: the factory returned a dict, not a torch.nn.Module"


def test_wrong_output_shape_and_forward_errors(tmp_path: Path) -> None:
    write(
        tmp_path,
        "shape.py",
        "from torch import nn\ndef build(n_inputs, n_classes):\n    return nn.Linear(n_inputs, n_classes + 1)\n",
    )
    msg = error_of(check_model, "shape.py:build", 4, 3, base_dir=str(tmp_path))
    assert msg == (
        "model shape.py:build: the module maps a [2, 4] batch to shape [2, 4]; it must return logits of shape "
        "[batch, n_classes] = [2, 3]"
    )
    write(
        tmp_path,
        "fwd.py",
        """
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(5, 3)
            def forward(self, x):
                return self.lin(x)
        def build(n_inputs, n_classes):
            return Net()
        """,
    )
    msg = error_of(check_model, "fwd.py:build", 4, 3, base_dir=str(tmp_path))
    assert msg.startswith(
        "model fwd.py:build: the module's forward pass on a [2, 4] float batch raised RuntimeError: mat1 and mat2"
    )
    assert f"({tmp_path / 'fwd.py'}, line 7)" in msg
    write(
        tmp_path,
        "tup.py",
        """
        from torch import nn
        class Pair(nn.Linear):
            def forward(self, x):
                return super().forward(x), x
        def build(n_inputs, n_classes):
            return Pair(n_inputs, n_classes)
        """,
    )
    msg = error_of(check_model, "tup.py:build", 4, 3, base_dir=str(tmp_path))
    assert msg == "model tup.py:build: the module's forward returned a tuple; it must return a logits tensor [batch, 3]"


def test_unknown_and_missing_parameter_names(tmp_path: Path) -> None:
    write(tmp_path, "net.py", GOOD.replace("hidden=8", "hidden=8, *, blocks"))
    msg = error_of(check_model, "net.py:build", 4, 3, {"hiden": 3, "blocks": 1}, base_dir=str(tmp_path))
    assert msg.startswith(
        "model net.py:build: the factory takes no parameter 'hiden'; its model parameters are ['blocks', 'hidden']"
    )
    msg = error_of(check_model, "net.py:build", 4, 3, {"hidden": 3}, base_dir=str(tmp_path))
    assert msg == "model net.py:build: the factory needs parameter(s) ['blocks'], which the trial does not set"
    write(
        tmp_path,
        "kw.py",
        "from torch import nn\ndef build(n_inputs, n_classes, **params):\n    return nn.Linear(n_inputs, n_classes)\n",
    )
    assert check_model("kw.py:build", 4, 3, {"anything": 1}, base_dir=str(tmp_path)).n_params == 15  # **kwargs takes any name
    msg = error_of(check_model, "kw.py:build", 4, 3, {"n_classes": 1}, base_dir=str(tmp_path))
    assert "['n_classes'] are the input and class counts hpstudy passes" in msg


def test_a_module_without_trainable_parameters(tmp_path: Path) -> None:
    write(
        tmp_path,
        "frozen.py",
        "from torch import nn\ndef build(n_inputs, n_classes):\n    return nn.Linear(n_inputs, n_classes).requires_grad_(False)\n",
    )
    assert (
        error_of(check_model, "frozen.py:build", 4, 3, base_dir=str(tmp_path))
        == "model frozen.py:build: the module has no trainable parameters"
    )


def test_the_launch_check_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    write(tmp_path, "net.py", GOOD)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_model("net.py:build", 4, 3, base_dir=str(tmp_path))
    assert torch.equal(torch.rand(3), expected)


def test_training_a_bad_reference_raises_the_same_error(tmp_path: Path) -> None:
    data = load_dataset("spirals", n_samples=100)
    with pytest.raises(UserCodeError, match=r"model .*nope.py:build: file .* does not exist"):
        train(TrainConfig(epochs=1), data, backend="torch", model=str(tmp_path / "nope.py") + ":build")
    with pytest.raises(ValueError, match=r"a user model is trained by the torch backend; backend must be 'torch', got 'numpy'"):
        train(TrainConfig(epochs=1), data, backend="numpy", model=str(tmp_path / "nope.py") + ":build")
    path = write(tmp_path, "net.py", GOOD)
    result = train(TrainConfig(epochs=2), data, backend="torch", model=f"{path}:build", model_params={"hidden": 4})
    assert result.stop_reason == "completed" and result.n_params == 2 * 4 + 4 + 4 * 2 + 2
