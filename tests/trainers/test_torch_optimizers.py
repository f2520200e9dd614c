"""Each NumPy optimizer stepped side by side with ``torch.optim`` on the same parameters and
gradients (float64, 200 steps, a learning rate that changes every step).

Where our definition differs from torch's default, the test says so and checks the closed
form: decoupled weight decay ``W <- (1 - lr * wd) * W`` on weights only, for every optimizer.
Torch's ``weight_decay`` argument is the coupled L2 penalty ``g + wd * w`` (on every
parameter) for SGD, Adagrad, RMSprop and Adam; only ``AdamW`` decouples it. For plain SGD
(no momentum) coupled and decoupled coincide; with momentum, Adagrad or RMSprop they do not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from trainers import TrainConfig
from trainers.numpy_mlp.optimizers import make_optimizer
from trainers.torch_mlp import TorchOptimizer

N_W, N_B, STEPS = 40, 8, 200
EPS = 1e-6  # larger than the default so that eps placement (inside/outside sqrt) matters


def _lr(t: int, base: float) -> float:
    return base * (1.0 + 0.5 * np.sin(t))


def _grads(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0, 2, N_W + N_B))  # entries of very different magnitudes
    return [rng.normal(0, 1, N_W + N_B) * scale for _ in range(STEPS)]


def _run_numpy(cfg: TrainConfig, w0: np.ndarray) -> list[np.ndarray]:
    w = w0.copy()
    opt = make_optimizer(cfg, w.size, N_W, np.dtype(np.float64))
    out = []
    for t, g in enumerate(_grads(), start=1):
        opt.step(w, g.copy(), _lr(t, cfg.lr))
        out.append(w.copy())
    return out


def _run_torch(
    make: Callable[[torch.Tensor, torch.Tensor], torch.optim.Optimizer], w0: np.ndarray, base_lr: float
) -> list[np.ndarray]:
    W = torch.tensor(w0[:N_W], requires_grad=True)
    b = torch.tensor(w0[N_W:], requires_grad=True)
    opt = make(W, b)
    out = []
    for t, g in enumerate(_grads(), start=1):
        W.grad, b.grad = torch.tensor(g[:N_W]), torch.tensor(g[N_W:])
        for group in opt.param_groups:
            group["lr"] = _lr(t, base_lr)
        opt.step()
        out.append(torch.cat([W, b]).detach().numpy().copy())
    return out


def _assert_same(a: list[np.ndarray], b: list[np.ndarray], rtol: float = 1e-10) -> None:
    assert len(a) == len(b) == STEPS
    for t in (0, 1, 9, STEPS // 2, STEPS - 1):
        np.testing.assert_allclose(a[t], b[t], rtol=rtol, atol=1e-12, err_msg=f"step {t + 1}")


W0 = np.random.default_rng(1).normal(0, 1, N_W + N_B)

TORCH_EQUIVALENTS = {
    "sgd": (dict(lr=0.01), lambda W, b: torch.optim.SGD([W, b], lr=0.01)),
    "momentum": (dict(lr=0.01, momentum=0.8), lambda W, b: torch.optim.SGD([W, b], lr=0.01, momentum=0.8)),
    "nesterov": (dict(lr=0.01, momentum=0.8), lambda W, b: torch.optim.SGD([W, b], lr=0.01, momentum=0.8, nesterov=True)),
    "adagrad": (dict(lr=0.1, eps=EPS), lambda W, b: torch.optim.Adagrad([W, b], lr=0.1, eps=EPS)),
    "rmsprop": (dict(lr=0.01, rho=0.95, eps=EPS), lambda W, b: torch.optim.RMSprop([W, b], lr=0.01, alpha=0.95, eps=EPS)),
    "adam": (
        dict(lr=0.01, beta1=0.8, beta2=0.99, eps=EPS),
        lambda W, b: torch.optim.Adam([W, b], lr=0.01, betas=(0.8, 0.99), eps=EPS),
    ),
    "adamw": (
        dict(lr=0.01, beta1=0.8, beta2=0.99, eps=EPS, weight_decay=0.3),
        lambda W, b: torch.optim.AdamW(
            [{"params": [W], "weight_decay": 0.3}, {"params": [b], "weight_decay": 0.0}], lr=0.01, betas=(0.8, 0.99), eps=EPS
        ),
    ),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCH_EQUIVALENTS))
def test_numpy_optimizer_matches_torch_optim(name: str) -> None:
    kwargs, make = TORCH_EQUIVALENTS[name]
    cfg = TrainConfig(optimizer=name, **kwargs)
    _assert_same(_run_numpy(cfg, W0), _run_torch(make, W0, cfg.lr))


@pytest.mark.torch
def test_adam_with_weight_decay_is_torch_adamw_not_torch_adam() -> None:
    """Our weight_decay is decoupled for adam too, so adam + wd == AdamW (weights only)."""
    cfg = TrainConfig(optimizer="adam", lr=0.01, eps=EPS, weight_decay=0.3)
    ours = _run_numpy(cfg, W0)
    _assert_same(ours, _run_torch(_adamw(cfg), W0, cfg.lr))
    coupled = _run_torch(lambda W, b: torch.optim.Adam([W, b], lr=0.01, eps=EPS, weight_decay=0.3), W0, cfg.lr)
    assert np.abs(ours[-1] - coupled[-1]).max() > 1e-3


def _adamw(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.optim.Optimizer]:
    return lambda W, b: torch.optim.AdamW(
        [{"params": [W], "weight_decay": cfg.weight_decay}, {"params": [b], "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
    )


def _closed_form(name: str, cfg: TrainConfig, w0: np.ndarray) -> list[np.ndarray]:
    """The update rules of the optimizers module, written out, with decoupled decay first."""
    w, buf, s = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    mu, rho, eps, wd = cfg.momentum, cfg.rho, cfg.eps, cfg.weight_decay
    out = []
    for t, g in enumerate(_grads(), start=1):
        lr = _lr(t, cfg.lr)
        w[:N_W] = (1 - lr * wd) * w[:N_W]  # decoupled: weights only, before the update
        if name == "sgd":
            w -= lr * g
        elif name in ("momentum", "nesterov"):
            buf = mu * buf + g
            w -= lr * (g + mu * buf if name == "nesterov" else buf)
        elif name == "adagrad":
            s += g * g
            w -= lr * g / (np.sqrt(s) + eps)
        elif name == "rmsprop":
            s = rho * s + (1 - rho) * g * g
            w -= lr * g / (np.sqrt(s) + eps)
        out.append(w.copy())
    return out


@pytest.mark.torch
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop"])
def test_decoupled_weight_decay_is_the_closed_form_not_torchs_coupled_weight_decay(name: str) -> None:
    kwargs, _ = TORCH_EQUIVALENTS[name]
    cfg = TrainConfig(optimizer=name, weight_decay=0.5, **kwargs)
    ours = _run_numpy(cfg, W0)
    _assert_same(ours, _closed_form(name, cfg, W0))
    torch_cls = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD}.get(name)
    extra: dict = {"momentum": cfg.momentum, "nesterov": name == "nesterov"} if name in ("momentum", "nesterov") else {}
    if name == "adagrad":
        torch_cls, extra = torch.optim.Adagrad, {"eps": EPS}
    if name == "rmsprop":
        torch_cls, extra = torch.optim.RMSprop, {"alpha": cfg.rho, "eps": EPS}
    assert torch_cls is not None
    coupled = _run_torch(
        lambda W, b: torch_cls([{"params": [W], "weight_decay": 0.5}, {"params": [b], "weight_decay": 0.0}], lr=cfg.lr, **extra),
        W0,
        cfg.lr,
    )
    gap = np.abs(ours[-1] - coupled[-1]).max()
    if name == "sgd":  # w - lr (g + wd w) == (1 - lr wd) w - lr g: the one case where they coincide
        np.testing.assert_allclose(ours[-1], coupled[-1], rtol=1e-10)
    else:
        assert gap > 1e-3, f"{name}: decoupled and coupled weight decay should differ, max gap {gap}"


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCH_EQUIVALENTS))
def test_torch_backend_optimizer_matches_numpy_with_decay(name: str) -> None:
    """`TorchOptimizer` (what TorchBackend steps) against the NumPy optimizer, decay on."""
    kwargs, _ = TORCH_EQUIVALENTS[name]
    cfg = TrainConfig(optimizer=name, **{**kwargs, "weight_decay": 0.4})
    W = torch.tensor(W0[:N_W].reshape(8, 5), requires_grad=True)
    b = torch.tensor(W0[N_W:], requires_grad=True)
    opt = TorchOptimizer(cfg, [W], [b])
    ours = _run_numpy(cfg, W0)
    for t, g in enumerate(_grads(), start=1):
        W.grad, b.grad = torch.tensor(g[:N_W].reshape(8, 5)), torch.tensor(g[N_W:])
        opt.step(_lr(t, cfg.lr))
        if t in (1, 10, STEPS):
            got = torch.cat([W.detach().ravel(), b.detach()]).numpy()
            np.testing.assert_allclose(got, ours[t - 1], rtol=1e-10, atol=1e-12, err_msg=f"step {t}")
