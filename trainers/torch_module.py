"""The torch backend for a user's ``nn.Module``: the loop in `trainers.loop` drives it like the
built-in MLP backends, so every training option means the same thing.

- Weights: parameters with ``ndim >= 2`` (``Linear``/``Conv``/``Embedding`` weights). Biases
  and norm-layer scales and shifts (1-D) are not weights. ``l1``, ``l2`` (penalties
  ``l1 * sum|w| + l2 / 2 * sum w^2`` in the loss) and ``weight_decay`` (decoupled,
  ``w <- (1 - lr * wd) * w`` before the optimizer step) apply to weights only, as for the MLP.
- Loss: ``cross_entropy`` on the module's logits, or ``mse`` ``mean_i sum_k (p_ik - y_ik)^2``
  on their softmax. Optimizers, clipping and schedules: `trainers.torch_mlp.TorchOptimizer`
  and the shared loop.
- Records: gradient norm (mean over the epoch's batches, before clipping) and norm after the
  epoch of every trainable parameter tensor, named after it (``grad_norm.conv1.weight``);
  sparsity = fraction of weights with ``|w| < 1e-3``; ``dead_units`` = fraction of the units
  of the module's ``nn.ReLU``/``LeakyReLU``/``ReLU6`` layers (a unit is a channel: dim 1 of
  the layer's output) that are not positive for any validation row at any position; NaN when
  the module has no such layer (a functional ``F.relu`` cannot be seen).
- Train metrics are measured in eval mode (``module.eval()``: no dropout, batch-norm running
  statistics), so ``val_loss - train_loss`` is a real gap.
- Randomness: the module is built under ``torch.manual_seed`` of a seed derived from
  ``config.seed``; dropout draws from a torch RNG state of its own (another derived seed),
  swapped in around each epoch, so other code using torch's global RNG between epochs does
  not change a run. Same config, data and seed give a bit-identical history on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainers.config import MLP_FIELDS, TrainConfig
from trainers.data import Dataset
from trainers.numpy_mlp.mlp import SPARSITY_THRESHOLD
from trainers.torch_mlp import TorchOptimizer, _set_threads, resolve_device
from trainers.user_model import build_model, resolve

#: TrainConfig fields that describe the built-in MLP and mean nothing for a user's module.
MLP_ONLY = MLP_FIELDS
RELU_LAYERS = (nn.ReLU, nn.LeakyReLU, nn.ReLU6)


def _derived_seed(seed: int, stream: int) -> int:
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def check_config(config: TrainConfig) -> None:
    """The MLP's architecture fields must stay at their defaults for a user module, and
    dropout is evaluated by scaling (Monte Carlo dropout is the numpy backend's only)."""
    defaults = TrainConfig()
    changed = [f for f in MLP_ONLY if getattr(config, f) != getattr(defaults, f)]
    if changed:
        raise ValueError(
            f"{', '.join(changed)} set for a user model, but these fields describe the built-in MLP only; "
            "a user model's architecture is its factory's parameters"
        )
    if config.dropout_eval != "scale":
        raise ValueError(f"dropout_eval {config.dropout_eval!r} is implemented by the numpy backend only; use 'scale' with torch")


def row_losses(loss: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row loss on logits `z`: ``-log softmax(z)[y]`` or ``sum_k (softmax(z)_k - y_k)^2``
    (the built-in backends' two losses)."""
    if loss == "cross_entropy":
        return F.cross_entropy(z, y, reduction="none")
    d = torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)
    return (d * d).sum(dim=1)


class ModuleBackend:
    """Trains the module that `model` (a factory or ``file.py:build``) builds; the Backend
    interface of `trainers.backend`, plus ``param_names`` (names of the per-tensor lists)."""

    name = "torch_module"

    def __init__(
        self,
        config: TrainConfig,
        data: Dataset,
        model: Callable[..., Any] | str,
        model_params: Mapping[str, Any] | None = None,
        *,
        device: str = "cpu",
        init_params: Mapping[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
        threads: int | None = None,
        base_dir: str | None = None,
    ) -> None:
        check_config(config)
        _set_threads(threads)
        self.config = config
        self.device = resolve_device(device)
        self.dtype = dtype
        factory, self.where, self.sha256 = resolve(model, base_dir)
        self._cuda = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else []
        )
        with torch.random.fork_rng(devices=self._cuda):
            torch.manual_seed(_derived_seed(config.seed, 4))
            self.module = build_model(
                factory, data.n_features, data.n_classes, model_params,
                dropout=config.dropout, where=self.where, device=self.device, dtype=dtype,
            )  # fmt: skip
            torch.manual_seed(_derived_seed(config.seed, 3))
            self._rng = self._get_rng()
        if init_params is not None:
            self.module.load_state_dict(init_params)
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        self.param_names: tuple[str, ...] = tuple(n for n, _ in named)
        self.params: list[torch.Tensor] = [p for _, p in named]
        self.weights = [p for p in self.params if p.ndim >= 2]
        self.n_params = sum(p.numel() for p in self.params)
        self.n_weights = sum(w.numel() for w in self.weights)
        self.opt = TorchOptimizer(config, self.weights, [p for p in self.params if p.ndim < 2])
        self._relus = [m for m in self.module.modules() if isinstance(m, RELU_LAYERS)]
        self._X = {s: self._to_device(getattr(data, f"X_{s}"), dtype) for s in ("train", "val", "test")}
        self._y = {s: self._to_device(getattr(data, f"y_{s}"), torch.int64) for s in ("train", "val", "test")}
        self._penalized = bool(config.l1 or config.l2)

    def _to_device(self, a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device=self.device, dtype=dtype)

    # -- the run's own RNG stream (dropout) --------------------------------------------------
    def _get_rng(self) -> list[torch.Tensor]:
        return [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in self._cuda)]

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Swap this run's RNG state into torch's global RNG (CPU, and the run's CUDA device)."""
        with torch.random.fork_rng(devices=self._cuda):
            torch.set_rng_state(self._rng[0])
            for d, s in zip(self._cuda, self._rng[1:], strict=True):
                torch.cuda.set_rng_state(s, d)
            yield
            self._rng = self._get_rng()

    def penalty(self) -> torch.Tensor:
        """``l1 * sum|w| + l2 / 2 * sum w^2`` over the weights (``ndim >= 2``)."""
        c = self.config
        out = torch.zeros((), dtype=self.dtype, device=self.device)
        for w in self.weights:
            if c.l1:
                out = out + c.l1 * w.abs().sum()
            if c.l2:
                out = out + 0.5 * c.l2 * (w * w).sum()
        return out

    # -- the backend interface -----------------------------------------------------------------
    @torch.enable_grad()  # grad mode is per thread: a cancelled trial can leave it off in a reused worker
    def fit_epoch(self, order: np.ndarray, lr: float) -> tuple[float, bool, list[float]]:
        """One pass over the training rows in `order` in mini-batches, in train mode.

        Returns (mean batch loss, whether every loss was finite, per-parameter-tensor gradient
        norm averaged over the batches). Stops at the first non-finite loss, before its step."""
        c, bs = self.config, self.config.batch_size
        idx = torch.as_tensor(np.asarray(order, dtype=np.int64), device=self.device)
        X = self._X["train"].index_select(0, idx)
        y = self._y["train"].index_select(0, idx)
        norms = torch.zeros(len(self.params), dtype=torch.float64, device=self.device)
        total, count, finite = 0.0, 0, True
        self.module.train()
        with self._own_rng():
            for s in range(0, len(y), bs):
                loss = row_losses(c.loss, self.module(X[s : s + bs]), y[s : s + bs]).mean()
                value = loss.item()
                if not math.isfinite(value):
                    finite = False
                    break
                if self._penalized:
                    loss = loss + self.penalty()
                for p in self.params:
                    p.grad = None
                loss.backward()
                with torch.no_grad():
                    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
                    norms += torch.stack(torch._foreach_norm(grads)).to(torch.float64)
                if c.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
                self.opt.step(lr)
                total += value
                count += 1
        if count == 0:
            return math.nan, finite, [math.nan] * len(self.params)
        return total / count, finite, (norms / count).tolist()

    @torch.no_grad()
    def evaluate(self, split: str, chunk: int = 4096) -> tuple[float, float, float]:
        """(mean loss without penalty, accuracy, fraction of dead ReLU units) on `split`, in eval mode."""
        X, y = self._X[split], self._y[split]
        alive: list[torch.Tensor] = []
        seen: list[torch.Tensor] = []

        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                t = out.reshape(len(out), -1) if out.ndim < 2 else out.transpose(0, 1).reshape(out.shape[1], -1)
                seen.append((t > 0).any(dim=1) if out.ndim >= 2 else (t > 0).any(dim=0))

        handles = [m.register_forward_hook(hook) for m in self._relus]
        self.module.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        try:
            for s in range(0, len(y), chunk):
                seen.clear()
                z = self.module(X[s : s + chunk])
                yb = y[s : s + chunk]
                total += row_losses(self.config.loss, z, yb).to(torch.float64).sum()
                correct += (z.argmax(dim=1) == yb).sum()
                if not alive:
                    alive = list(seen)
                elif len(seen) == len(alive):
                    alive = [a | b for a, b in zip(alive, seen, strict=True)]
        finally:
            for h in handles:
                h.remove()
        n_units = sum(len(a) for a in alive)
        dead = 1.0 - int(sum(int(a.sum()) for a in alive)) / n_units if n_units else math.nan
        n = max(len(y), 1)
        return float(total) / n, int(correct) / n, dead

    @torch.no_grad()
    def weight_norms(self) -> list[float]:
        """Norm of every trainable parameter tensor (aligned with ``param_names``)."""
        return torch.stack(torch._foreach_norm(self.params)).tolist()

    @torch.no_grad()
    def sparsity(self) -> float:
        if not self.n_weights:
            return math.nan
        return int(sum((w.abs() < SPARSITY_THRESHOLD).sum() for w in self.weights)) / self.n_weights

    def param_arrays(self) -> dict[str, np.ndarray]:
        """The module's state dict as NumPy arrays."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.module.state_dict().items()}

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    @torch.no_grad()
    def restore(self, snap: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(snap)

    @torch.no_grad()
    def finite_params(self) -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all())
