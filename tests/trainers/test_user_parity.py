"""A user's module means what the built-in MLP means: an MLP written as a user module
(``nn.Linear`` + activation, weights copied from the built-in initialisation) trained by the
user-module backend gives the built-in torch backend's history.

Two tiers, as in test_torch_parity.py:

1. float64, tight (rtol 1e-9): both backends built directly in float64 and driven epoch by
   epoch with the same mini-batch orders and learning rates. ``nn.Linear`` computes
   ``x @ W.T + b`` where the MLP computes ``addmm(b, x, W)``: the same function, rounding
   apart (measured: at most 5e-16 relative over 5 epochs), so any difference of meaning
   (which tensors are weights, where decay or clipping happens, a penalty) shows far above
   the tolerance.
2. float32 through `trainers.train` (loop, schedules, early stopping, restore_best and the
   test split included): rtol 1e-4, the tolerance test_torch_parity.py justifies for float32
   runs of the same function; measured here: at most 8e-8 relative.

Each case also runs once with its regularizer (l1, l2 or weight_decay) removed and checks
that the history moves by more than 10x the tolerance: the option is live, so the
comparison can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainers import TrainConfig, load_dataset, train
from trainers.numpy_mlp import MLP
from trainers.schedules import Plateau
from trainers.torch_mlp import TorchBackend
from trainers.torch_module import ModuleBackend

DATA = load_dataset("gaussian_mixture", n_samples=600, n_features=12, n_classes=3, label_noise=0.1, test=0.2)

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}

#: name -> (config, the regularizer field that must be live, or None)
CASES = {
    "sgd-l2-step": (dict(optimizer="sgd", lr=0.1, l2=1e-2, schedule="step", step_size=2, gamma=0.5), "l2"),
    "momentum-l1-cosine-warmup": (
        dict(optimizer="momentum", lr=0.05, l1=1e-3, schedule="cosine", warmup_epochs=1, activation="tanh"),
        "l1",
    ),
    "adam-wd-clip-exponential": (
        dict(optimizer="adam", lr=3e-3, weight_decay=0.5, max_grad_norm=0.5, schedule="exponential", gamma=0.8),
        "weight_decay",
    ),
    "adamw-wd-mse-plateau": (
        dict(
            optimizer="adamw", lr=3e-3, weight_decay=0.3, loss="mse", schedule="reduce_on_plateau", plateau_patience=1, gamma=0.5
        ),
        "weight_decay",
    ),
    "nesterov-sigmoid-l2": (dict(optimizer="nesterov", lr=0.2, activation="sigmoid", l2=1e-2), "l2"),
    "rmsprop-deep": (dict(optimizer="rmsprop", lr=1e-3, depth=3, width=(32, 16, 8)), None),
    "adagrad-wd": (dict(optimizer="adagrad", lr=0.05, weight_decay=0.2), "weight_decay"),
}


def mlp_factory(cfg: TrainConfig):
    """A user factory building the config's MLP from nn.Linear layers, initialised with the
    built-in MLP's weights (``W`` is (in, out) there, (out, in) in nn.Linear)."""

    def build(n_inputs: int, n_classes: int) -> nn.Module:
        ref = MLP(cfg, n_inputs, n_classes)
        layers: list[nn.Module] = []
        for i in range(ref.n_layers):
            lin = nn.Linear(ref.sizes[i], ref.sizes[i + 1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(ref.W[i].T.copy()))
                lin.bias.copy_(torch.from_numpy(ref.b[i].copy()))
            layers.append(lin)
            if i < ref.n_layers - 1:
                layers.append(ACTIVATIONS[cfg.activation]())
        return nn.Sequential(*layers)

    return build


def user_config(cfg: TrainConfig) -> TrainConfig:
    """The same training options for the user module (architecture fields at defaults)."""
    return cfg.replace(depth=2, width=64, activation="relu")


def _drive(backend, cfg: TrainConfig, orders: list[np.ndarray]) -> list[dict]:
    """The loop's per-epoch work, by hand, so both backends see identical orders and rates."""
    plateau, out = Plateau(cfg), []
    for epoch, order in enumerate(orders, start=1):
        lr = plateau.lr(epoch)
        batch_loss, finite, grad = backend.fit_epoch(order, lr)
        tr = backend.evaluate("train")
        va = backend.evaluate("val")
        plateau.update(va[0])
        out.append(
            dict(
                lr=lr,
                batch_loss=batch_loss,
                finite=finite,
                grad=grad,
                norms=backend.weight_norms(),
                train=tr[:2],
                val=va[:2],
                dead=va[2],
                sparsity=backend.sparsity(),
            )  # fmt: skip
        )
    return out


def _weights_only(values: list[float], names: tuple[str, ...]) -> list[float]:
    return [v for v, n in zip(values, names, strict=True) if n.endswith("weight")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_histories_match_the_builtin_torch_backend(case: str) -> None:
    cfg = TrainConfig(epochs=5, batch_size=32, seed=3, **CASES[case][0])
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(DATA.y_train)) for _ in range(cfg.epochs)]
    ref = _drive(TorchBackend(cfg, DATA, dtype=torch.float64), cfg, orders)
    user = ModuleBackend(user_config(cfg), DATA, mlp_factory(cfg), dtype=torch.float64)
    got = _drive(user, cfg, orders)
    assert user.param_names == tuple(f"{2 * i}.{k}" for i in range(len(cfg.widths) + 1) for k in ("weight", "bias"))
    for r, g in zip(ref, got, strict=True):
        assert g["lr"] == r["lr"] and g["finite"] and r["finite"]
        np.testing.assert_allclose(g["batch_loss"], r["batch_loss"], rtol=1e-9)
        np.testing.assert_allclose(g["train"], r["train"], rtol=1e-9)
        np.testing.assert_allclose(g["val"], r["val"], rtol=1e-9)
        np.testing.assert_allclose(_weights_only(g["grad"], user.param_names), r["grad"], rtol=1e-9)
        np.testing.assert_allclose(_weights_only(g["norms"], user.param_names), r["norms"], rtol=1e-9)
        assert g["sparsity"] == r["sparsity"]
        if cfg.activation == "relu":
            assert g["dead"] == r["dead"]


def _losses(result) -> np.ndarray:
    return np.array([[h.train_loss, h.val_loss, h.batch_loss] for h in result.history])


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_runs_through_train_match_and_the_regularizer_is_live(case: str) -> None:
    options, live = CASES[case]
    cfg = TrainConfig(epochs=6, batch_size=32, seed=5, patience=3, **options)
    ref = train(cfg, DATA, backend="torch")
    got = train(user_config(cfg), DATA, backend="torch", model=mlp_factory(cfg))
    assert (got.stop_reason, got.best_epoch, got.stopped_epoch) == (ref.stop_reason, ref.best_epoch, ref.stopped_epoch)
    assert got.n_params == ref.n_params and got.backend == "torch_module"
    np.testing.assert_allclose(_losses(got), _losses(ref), rtol=1e-4)
    np.testing.assert_allclose([h.lr for h in got.history], [h.lr for h in ref.history], rtol=1e-12)
    np.testing.assert_allclose([got.test_loss, got.test_acc], [ref.test_loss, ref.test_acc], rtol=1e-4)
    if live is not None:
        off = train(user_config(cfg).replace(**{live: 0.0}), DATA, backend="torch", model=mlp_factory(cfg))
        n = min(len(off.history), len(got.history))
        rel = np.abs(_losses(off)[:n] - _losses(got)[:n]) / np.abs(_losses(got)[:n])
        assert rel.max() > 10 * 1e-4, f"{live} made no difference beyond the tolerance"


def test_penalties_and_decay_skip_biases_and_one_dimensional_parameters() -> None:
    """Weights are parameters with ndim >= 2: with zero gradients (lr tiny, loss ignored),
    decoupled decay shrinks the Linear weight and leaves the bias and a norm scale alone."""

    def build(n_inputs: int, n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(n_inputs, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, n_classes))

    cfg = TrainConfig(optimizer="sgd", lr=0.5, weight_decay=1.0, epochs=1, batch_size=len(DATA.y_train))
    be = ModuleBackend(cfg, DATA, build)
    before = be.snapshot()
    for p in be.params:  # make the gradient step a no-op: only the decay remains
        p.register_hook(torch.zeros_like)
    be.fit_epoch(np.arange(len(DATA.y_train)), cfg.lr)
    after = be.module.state_dict()
    for name in before:
        factor = 1 - cfg.lr * cfg.weight_decay if before[name].ndim >= 2 else 1.0
        torch.testing.assert_close(after[name], before[name] * factor, rtol=1e-6, atol=0)
    assert [be.param_names[i] for i, p in enumerate(be.params) if p.ndim >= 2] == ["0.weight", "3.weight"]
