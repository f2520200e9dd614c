"""The PyTorch backend of the training loop: the same MLP, loss, optimizers and statistics as
`trainers.numpy_mlp`, computed with torch (autograd, ``torch.optim``) on CPU or CUDA.

It has exactly the methods of `trainers.numpy_mlp.trainer.NumpyBackend`, so the loop in
`trainers.loop` (schedules, early stopping, records) is shared, and every option means the
same thing:

- Layout: ``W_i`` has shape ``(fan_in, cols)``; a maxout hidden layer of ``width`` units has
  ``width * pieces`` columns and unit ``j`` is ``max`` over columns ``j*pieces .. j*pieces+pieces-1``.
  Initial weights are the NumPy MLP's for the same seed (or `init_params`).
- Loss: ``cross_entropy`` on the softmax output, or ``mse`` ``mean_i sum_k (p_ik - y_ik)^2``;
  penalties ``l1 * sum|w| + l2 / 2 * sum w^2`` on weights only, differentiated by autograd.
- Clipping by global norm as ``torch.nn.utils.clip_grad_norm_``: ``g *= min(1, c / (|g| + 1e-6))``.
- Optimizers: ``torch.optim`` with ``weight_decay=0`` (their update rules are the closed forms
  in `trainers.numpy_mlp.optimizers`), preceded by the decoupled decay
  ``W <- (1 - lr * wd) * W`` on weights only. With adam this is exactly ``torch.optim.AdamW``;
  with the others it is *not* torch's ``weight_decay`` (coupled L2, our ``l2``).
- Dropout: inverted, masks drawn from a ``torch.Generator`` seeded from ``config.seed`` and
  resampled every mini-batch.

Data moves to the device once, in the constructor. ``device="auto"`` is the current CUDA
device when one is visible (e.g. the GPU Ray assigned to the task), else the CPU; nothing
reserves GPU memory beyond the tensors it uses, so several trials can share one GPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # torch is an optional dependency
    raise ImportError(
        "the torch backend needs PyTorch, which is not installed: `pip install torch` "
        "(or the `hpstudy[torch]` extra), or use backend='numpy'"
    ) from exc

from trainers.config import TrainConfig
from trainers.data import Dataset
from trainers.numpy_mlp.mlp import MLP, SPARSITY_THRESHOLD

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (the current CUDA device, ``cuda:N`` for another) or ``auto``."""
    if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is visible to torch; use device='cpu' or 'auto'")
    if device.startswith("cuda:"):
        return torch.device(device)
    return torch.device("cuda", torch.cuda.current_device())


def _set_threads(threads: int | None) -> None:
    """Intra-op threads: `threads`, else ``OMP_NUM_THREADS`` (Ray sets it per task)."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() else None
    if threads is not None and threads >= 1 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _torch_seed(seed: int) -> int:
    """A seed for the dropout generator, derived from ``config.seed`` (a stream of its own)."""
    state = np.random.SeedSequence(seed, spawn_key=(3,)).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class TorchOptimizer:
    """``torch.optim`` plus decoupled weight decay on weights only.

    ``step(lr)``: ``W <- (1 - lr * wd) * W`` for every weight matrix (never biases), then the
    ``torch.optim`` step with ``weight_decay=0`` on gradients already in ``.grad``:

    - sgd / momentum / nesterov: ``SGD(momentum=mu, nesterov=...)``, dampening 0;
    - adagrad: ``Adagrad(eps=eps)`` (torch's default eps is 1e-10; ours is ``config.eps``);
    - rmsprop: ``RMSprop(alpha=rho, eps=eps)``;
    - adam / adamw: ``Adam(betas=(beta1, beta2), eps=eps)``; with the decay first this is
      ``AdamW`` applied to the weights group and ``Adam`` to the biases.
    """

    def __init__(self, config: TrainConfig, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> None:
        self.weights = list(weights)
        self.wd = float(config.weight_decay or 0.0)
        params = [*weights, *biases]
        c, name = config, config.optimizer
        if name in ("sgd", "momentum", "nesterov"):
            mu = 0.0 if name == "sgd" else c.momentum
            self.opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=c.lr, momentum=mu, nesterov=name == "nesterov")
        elif name == "adagrad":
            self.opt = torch.optim.Adagrad(params, lr=c.lr, eps=c.eps)
        elif name == "rmsprop":
            self.opt = torch.optim.RMSprop(params, lr=c.lr, alpha=c.rho, eps=c.eps)
        elif name in ("adam", "adamw"):
            self.opt = torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
        else:  # pragma: no cover - guarded by TrainConfig
            raise ValueError(f"unknown optimizer {name!r}")

    @torch.no_grad()
    def step(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        if self.wd:
            torch._foreach_mul_(self.weights, 1.0 - lr * self.wd)
        self.opt.step()


class TorchBackend:
    """Trains the config's MLP on `data` with torch; the `NumpyBackend` interface."""

    name = "torch"

    def __init__(
        self,
        config: TrainConfig,
        data: Dataset,
        device: str = "cpu",
        init_params: Sequence[Any] | None = None,
        dtype: torch.dtype = torch.float32,
        threads: int | None = None,
    ) -> None:
        _set_threads(threads)
        if config.dropout_eval != "scale":
            raise ValueError(
                f"dropout_eval {config.dropout_eval!r} is implemented by the numpy backend only; use 'scale' with torch"
            )
        self.config = config
        self.device = resolve_device(device)
        self.dtype = dtype
        ref = MLP(config, data.n_features, data.n_classes)
        self.sizes = ref.sizes
        self.pieces = ref.pieces
        self.n_layers = ref.n_layers
        self.n_params = ref.n_params
        self.n_weights = ref.n_weights
        values = ref.params if init_params is None else list(init_params)
        if len(values) != len(ref.params):
            raise ValueError(f"init_params must have {len(ref.params)} arrays ([W0, b0, W1, b1, ...]), got {len(values)}")
        tensors = []
        for i, (v, p) in enumerate(zip(values, ref.params, strict=True)):
            arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            if arr.shape != p.shape:
                raise ValueError(f"init_params[{i}] must have shape {p.shape}, got {arr.shape}")
            tensors.append(torch.tensor(arr, dtype=dtype, device=self.device).requires_grad_())
        self.params: list[torch.Tensor] = tensors
        self.W = tensors[0::2]
        self.b = tensors[1::2]
        self.data = data
        self._X = {s: self._to_device(getattr(data, f"X_{s}"), dtype) for s in ("train", "val", "test")}
        self._y = {s: self._to_device(getattr(data, f"y_{s}"), torch.int64) for s in ("train", "val", "test")}
        self.opt = TorchOptimizer(config, self.W, self.b)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(_torch_seed(config.seed))
        self._penalized = bool(config.l1 or config.l2)

    def _to_device(self, a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device=self.device, dtype=dtype)

    # -- the model -------------------------------------------------------------------------
    def _dropout(self, a: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.rand(a.shape, generator=self.gen, device=a.device, dtype=a.dtype) >= p
        return a * keep * (1.0 / (1.0 - p))

    def forward(self, X: torch.Tensor, train: bool = False, hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits for `X`; ``train=True`` draws fresh dropout masks. Hidden outputs (before
        dropout) are appended to `hidden` when given."""
        c = self.config
        a = X
        if train and c.input_dropout > 0:
            a = self._dropout(a, c.input_dropout)
        last = self.n_layers - 1
        for i in range(self.n_layers):
            z = torch.addmm(self.b[i], a, self.W[i])
            if i == last:
                return z
            if self.pieces > 1:
                h = z.view(len(z), -1, self.pieces).max(dim=2).values
            elif c.activation == "relu":
                h = torch.relu(z)
            elif c.activation == "leaky_relu":
                h = F.leaky_relu(z, c.leaky_slope)
            elif c.activation == "sigmoid":
                h = torch.sigmoid(z)
            else:
                h = torch.tanh(z)
            if hidden is not None:
                hidden.append(h)
            a = h
            if train and c.dropout > 0:
                a = self._dropout(h, c.dropout)
        raise AssertionError("unreachable")  # pragma: no cover

    def row_losses(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row loss: ``-log p[y]`` or ``sum_k (p_k - y_k)^2`` on ``p = softmax(z)``."""
        if self.config.loss == "cross_entropy":
            return F.cross_entropy(z, y, reduction="none")
        d = torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)
        return (d * d).sum(dim=1)

    def penalty(self) -> torch.Tensor:
        """``l1 * sum|w| + l2 / 2 * sum w^2`` over the weight matrices (not biases)."""
        c = self.config
        out = torch.zeros((), dtype=self.dtype, device=self.device)
        for w in self.W:
            if c.l1:
                out = out + c.l1 * w.abs().sum()
            if c.l2:
                out = out + 0.5 * c.l2 * (w * w).sum()
        return out

    def loss_and_grads(self, X: Any, y: Any, train: bool = False) -> tuple[float, list[np.ndarray]]:
        """Mean loss plus penalties on (X, y) and its gradients (autograd) as NumPy arrays
        aligned with ``MLP.params``: the NumPy MLP's contract, for differential tests."""
        Xt = torch.as_tensor(np.asarray(X)).to(self.device, self.dtype)
        yt = torch.as_tensor(np.asarray(y)).to(self.device, torch.int64)
        loss = self.row_losses(self.forward(Xt, train=train), yt).mean() + self.penalty()
        grads = torch.autograd.grad(loss, self.params)
        return float(loss.detach()), [g.detach().cpu().numpy() for g in grads]

    # -- the backend interface -------------------------------------------------------------
    @torch.enable_grad()  # grad mode is per thread: a cancelled trial can leave it off in a reused worker
    def fit_epoch(self, order: np.ndarray, lr: float) -> tuple[float, bool, list[float]]:
        """One pass over the training rows in `order`, in mini-batches (see NumpyBackend).

        Returns (mean batch loss, whether every loss was finite, per-layer weight-gradient
        norm averaged over the batches). Stops at the first non-finite loss, before its step."""
        c, bs = self.config, self.config.batch_size
        idx = torch.as_tensor(np.asarray(order, dtype=np.int64), device=self.device)
        X = self._X["train"].index_select(0, idx)
        y = self._y["train"].index_select(0, idx)
        norms = torch.zeros(self.n_layers, dtype=torch.float64, device=self.device)
        total, count, finite = 0.0, 0, True
        for s in range(0, len(y), bs):
            loss = self.row_losses(self.forward(X[s : s + bs], train=True), y[s : s + bs]).mean()
            value = loss.item()  # the one host sync per batch: divergence stops before the step
            if not math.isfinite(value):
                finite = False
                break
            if self._penalized:
                loss = loss + self.penalty()
            for p in self.params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                norms += torch.stack(torch._foreach_norm([w.grad for w in self.W if w.grad is not None])).to(torch.float64)
            if c.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
            self.opt.step(lr)
            total += value
            count += 1
        if count == 0:  # the first batch already diverged
            return math.nan, finite, [math.nan] * self.n_layers
        return total / count, finite, (norms / count).tolist()

    @torch.no_grad()
    def evaluate(self, split: str, chunk: int = 8192) -> tuple[float, float, float]:
        """(mean loss without penalty, accuracy, fraction of dead hidden units) on `split`.

        A ReLU-family hidden unit is dead when it is not positive for any row (0 otherwise)."""
        X, y = self._X[split], self._y[split]
        track = self.config.activation in ("relu", "leaky_relu")
        alive = [torch.zeros(w, dtype=torch.bool, device=self.device) for w in self.sizes[1:-1]]
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for s in range(0, len(y), chunk):
            hidden: list[torch.Tensor] = []
            z = self.forward(X[s : s + chunk], hidden=hidden)
            yb = y[s : s + chunk]
            total += self.row_losses(z, yb).to(torch.float64).sum()
            correct += (z.argmax(dim=1) == yb).sum()
            if track:
                for m, h in zip(alive, hidden, strict=True):
                    m |= (h > 0).any(dim=0)
        n_hidden = sum(len(m) for m in alive)
        dead = 0.0
        if track and n_hidden:
            dead = 1.0 - int(sum(m.sum() for m in alive)) / n_hidden
        n = max(len(y), 1)
        return float(total) / n, int(correct) / n, dead

    @torch.no_grad()
    def weight_norms(self) -> list[float]:
        return torch.stack(torch._foreach_norm(self.W)).tolist()

    @torch.no_grad()
    def sparsity(self) -> float:
        small = sum((w.abs() < SPARSITY_THRESHOLD).sum() for w in self.W)
        return int(small) / max(self.n_weights, 1)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def restore(self, snap: list[torch.Tensor]) -> None:
        for p, v in zip(self.params, snap, strict=True):
            p.copy_(v)

    @torch.no_grad()
    def finite_params(self) -> bool:
        return bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all())

    def numpy_params(self) -> list[np.ndarray]:
        """Copies of the parameters as NumPy arrays, aligned with ``MLP.params``."""
        return [p.detach().cpu().numpy().copy() for p in self.params]

    def param_arrays(self) -> dict[str, np.ndarray]:
        from trainers.backend import mlp_weight_names

        params = self.numpy_params()
        return dict(zip(mlp_weight_names(len(params)), params, strict=True))
