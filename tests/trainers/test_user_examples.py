"""The examples/ folder: the MNIST-1D CNN factory agrees with its spec's space, builds for the
corners of that space and trains through the user-module backend; both specs name files that
exist next to them. (The >= 0.90 test-accuracy target is measured by
examples/mnist1d_search.py, not asserted here.)"""

from __future__ import annotations

import itertools
import os

import pytest
import yaml

from trainers import TrainConfig, field_names, load_dataset, train
from trainers.user_code import load
from trainers.user_model import check_model

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def spec(name: str) -> dict:
    with open(os.path.join(EXAMPLES, name)) as f:
        return yaml.safe_load(f)


def corners(entry: dict) -> list:
    return list(entry["choices"]) if "choices" in entry else list(entry.get("int", entry.get("float")))


def test_the_cnn_spec_splits_into_model_parameters_and_training_options() -> None:
    s = spec("mnist1d_cnn.yaml")
    params = s["space"]["parameters"]
    model_names = sorted(set(params) - set(field_names()))
    assert model_names == ["channels", "kernel_size", "n_blocks"]
    TrainConfig(**s["fixed"], **{k: corners(v)[-1] for k, v in params.items() if k in field_names()})
    grid = [
        dict(zip(model_names, values, strict=True)) for values in itertools.product(*(corners(params[n]) for n in model_names))
    ]
    for p in grid:  # every corner of the space builds and maps [2, 40] to [2, 10]
        info = check_model(s["model"], 40, 10, p, base_dir=EXAMPLES, dropout=0.3)
        assert info.n_dropout_layers == 1 and not info.takes_dropout
        assert info.param_names[-2:] == (f"{3 * p['n_blocks'] + 3}.weight", f"{3 * p['n_blocks'] + 3}.bias")


def test_the_cnn_trains_through_the_user_module_backend() -> None:
    data = load_dataset("gaussian_mixture", n_samples=400, n_features=40, n_classes=10)
    cfg = TrainConfig(optimizer="adamw", lr=5e-3, epochs=3, dropout=0.2, weight_decay=1e-2, monitor="val_acc", batch_size=32)
    result = train(
        cfg,
        data,
        backend="torch",
        model=os.path.join(EXAMPLES, "mnist1d_cnn.py") + ":build",
        model_params={"channels": 8, "kernel_size": 5, "n_blocks": 2},
    )
    assert result.stop_reason == "completed" and len(result.history) == 3
    assert result.history[-1].val_acc > 0.5  # well above chance (0.1) on separable clusters
    assert "grad_norm.1.weight" in result.history[-1].metrics() and result.history[-1].dead_units >= 0


@pytest.mark.parametrize("name,key", [("mnist1d_cnn.yaml", "model"), ("sklearn.yaml", "trainer")])
def test_the_specs_name_functions_next_to_them(name: str, key: str) -> None:
    ref = spec(name)[key]
    code = load(ref, base_dir=EXAMPLES, role=key)
    assert code.path is not None and os.path.dirname(code.path) == EXAMPLES and callable(code.func)
