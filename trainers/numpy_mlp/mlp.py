"""A multilayer perceptron in NumPy with hand-written backpropagation.

All parameters live in one flat vector (weights of every layer first, then biases), so an
optimizer step, decoupled weight decay, an L1/L2 penalty or a best-weights snapshot is a
handful of vector operations however deep the net is. ``params`` and ``grads`` are views
into those vectors, in the order ``[W0, b0, W1, b1, ...]``.

Dropout is inverted: during training a hidden unit (or input, for ``input_dropout``) is
kept with probability ``q = 1 - p`` and scaled by ``1 / q``; the mask is resampled on every
forward pass, i.e. every mini-batch. At evaluation nothing is dropped or scaled. This is the
lecture's "drop with p during training, multiply the weights by (1 - p) at test time" with
the scaling moved to training; the expected pre-activations are the same.

With ``dropout_eval="mc"`` evaluation instead averages the softmax outputs of
``mc_samples`` thinned networks (masks from a generator of their own, so training is the
same either way): the Monte-Carlo average that weight scaling approximates.
"""

from __future__ import annotations

import math

import numpy as np

from trainers.config import TrainConfig
from trainers.numpy_mlp.layers import activate, backprop_activation, init_weights
from trainers.numpy_mlp.losses import loss_and_grad, loss_value, softmax

#: |w| below this counts as a zero weight in the sparsity statistic.
SPARSITY_THRESHOLD = 1e-3


class MLP:
    """``MLP(config, n_inputs, n_classes)``, initialized from ``config.seed``."""

    def __init__(self, config: TrainConfig, n_inputs: int, n_classes: int, dtype: type = np.float32) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        self.act = config.activation
        self.pieces = config.maxout_pieces if config.activation == "maxout" else 1
        self.slope = config.leaky_slope
        self.sizes = [n_inputs, *config.widths, n_classes]
        self.n_layers = len(self.sizes) - 1
        shapes = []
        for i in range(self.n_layers):
            cols = self.sizes[i + 1] * (self.pieces if i < self.n_layers - 1 else 1)
            shapes.append((self.sizes[i], cols))
        self.shapes = shapes
        n_w = sum(a * b for a, b in shapes)
        n_b = sum(b for _, b in shapes)
        self.n_weights = n_w
        self.flat = np.zeros(n_w + n_b, self.dtype)
        self.grad_flat = np.zeros_like(self.flat)
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.gW: list[np.ndarray] = []
        self.gb: list[np.ndarray] = []
        ow, ob = 0, n_w
        for a, b in shapes:
            for vec, ws, bs in ((self.flat, self.W, self.b), (self.grad_flat, self.gW, self.gb)):
                ws.append(vec[ow : ow + a * b].reshape(a, b))
                bs.append(vec[ob : ob + b])
            ow += a * b
            ob += b
        self._gW_flat = [g.reshape(-1) for g in self.gW]
        for i in range(self.n_layers):
            self.params += [self.W[i], self.b[i]]
            self.grads += [self.gW[i], self.gb[i]]
        seeds = np.random.SeedSequence(config.seed).spawn(2)
        init_rng = np.random.default_rng(seeds[0])
        self.rng = np.random.default_rng(seeds[1])  # dropout masks
        # masks of Monte-Carlo evaluation: a stream of its own (the loop's is spawn_key 2, torch's 3)
        self.mc_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(4,)))
        kind = config.resolved_init
        for i, (a, b) in enumerate(shapes):
            fan_out = self.sizes[i + 1]
            self.W[i][...] = init_weights(kind, a, fan_out, (a, b), init_rng)
        self._cache: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]] = []

    @property
    def n_params(self) -> int:
        return int(self.flat.size)

    # -- forward / backward ----------------------------------------------------------------
    def _dropout(self, a: np.ndarray, p: float, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        keep = (self.rng if rng is None else rng).random(a.shape, dtype=self.dtype) >= p
        a = a * keep
        a *= 1.0 / (1.0 - p)
        return a, keep

    def forward(
        self, X: np.ndarray, train: bool = False, keep: bool = False, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Logits for `X`. ``train=True`` draws fresh dropout masks (from `rng`, default the
        training stream); ``keep=True`` keeps the activations for the backward pass."""
        c = self.config
        cache: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]] = []
        a = X
        mask = None
        if train and c.input_dropout > 0:
            a, mask = self._dropout(a, c.input_dropout, rng)
        last = self.n_layers - 1
        for i in range(self.n_layers):
            z = a @ self.W[i]
            z += self.b[i]
            if i == last:
                cache.append((a, mask, None, None))
                break
            arg = None
            if self.pieces > 1:
                z3 = z.reshape(len(z), -1, self.pieces)
                arg = z3.argmax(axis=2)
                h = np.take_along_axis(z3, arg[:, :, None], axis=2)[:, :, 0]
            else:
                h = activate(self.act, z, self.slope)
            cache.append((a, mask, h, arg))
            a, mask = h, None
            if train and c.dropout > 0:
                a, mask = self._dropout(h, c.dropout, rng)
        if keep:
            self._cache = cache
        return z

    def _backward(self, dz: np.ndarray) -> None:
        """Fill ``grads`` (data term only) from ``dL/dlogits`` and the cached forward pass."""
        for i in range(self.n_layers - 1, -1, -1):
            a, mask, _, _ = self._cache[i]
            np.dot(a.T, dz, out=self.gW[i])
            np.add.reduce(dz, axis=0, out=self.gb[i])
            if i == 0:
                break
            W = self.W[i]
            if 8 * len(dz) <= W.shape[1] and W.shape[0] >= 128:
                # small batch, wide layer: OpenBLAS's NN kernel beats its NT one by ~25% here
                da = np.ascontiguousarray((W @ dz.T).T)
            else:
                da = dz @ W.T
            _, _, h, arg = self._cache[i - 1]
            if mask is not None:  # dropout applied to this layer's input
                da *= mask
                da *= 1.0 / (1.0 - self.config.dropout)
            if arg is not None:
                dz = np.zeros((len(da), da.shape[1], self.pieces), self.dtype)
                np.put_along_axis(dz, arg[:, :, None], da[:, :, None], axis=2)
                dz = dz.reshape(len(da), -1)
            else:
                assert h is not None  # every hidden layer caches its output
                dz = backprop_activation(self.act, h, da, self.slope)
        self._cache = []

    def penalty(self) -> float:
        """``l1 * sum|w| + l2 / 2 * sum w^2`` over weights (not biases)."""
        c = self.config
        w = self.flat[: self.n_weights]
        out = 0.0
        if c.l1:
            out += c.l1 * float(np.abs(w).sum(dtype=np.float64))
        if c.l2:
            out += 0.5 * c.l2 * float(np.dot(w, w))
        return out

    def _add_penalty_grad(self) -> None:
        c = self.config
        w = self.flat[: self.n_weights]
        g = self.grad_flat[: self.n_weights]
        if c.l1:
            g += c.l1 * np.sign(w)
        if c.l2:
            g += c.l2 * w

    def step_grads(self, X: np.ndarray, y: np.ndarray, train: bool = True) -> float:
        """One forward/backward pass (dropout on when `train`): fills ``grad_flat`` with the
        full gradient, penalties included, and returns the batch's data loss (no penalty)."""
        z = self.forward(X, train=train, keep=True)
        loss, dz = loss_and_grad(self.config.loss, z, y)
        self._backward(dz)
        self._add_penalty_grad()
        return loss

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray, train: bool = False) -> tuple[float, list[np.ndarray]]:
        """Mean loss on (X, y) plus penalties, and copies of its gradients aligned with
        ``params``. ``train=True`` draws dropout masks as a training step does."""
        loss = self.step_grads(X, y, train=train)
        return loss + self.penalty(), [g.copy() for g in self.grads]

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, X: np.ndarray, y: np.ndarray, chunk: int = 8192) -> tuple[float, float, float]:
        """(mean loss without penalty, accuracy, fraction of dead hidden units) on (X, y).

        Loss and accuracy are those of the Monte-Carlo average under ``dropout_eval="mc"``
        (`mc_probabilities`), else of the deterministic net. A unit is dead when it outputs
        no positive value for any row of `X` (ReLU family; 0 for other activations)."""
        total, correct = 0.0, 0
        alive = [np.zeros(w, bool) for w in self.sizes[1:-1]]
        track = self.act in ("relu", "leaky_relu")
        for s in range(0, len(X), chunk):
            a = X[s : s + chunk]
            for i in range(self.n_layers):
                z = a @ self.W[i]
                z += self.b[i]
                if i == self.n_layers - 1:
                    break
                if self.pieces > 1:
                    a = z.reshape(len(z), -1, self.pieces).max(axis=2)
                else:
                    a = activate(self.act, z, self.slope)
                if track:
                    alive[i] |= (a > 0).any(axis=0)
            yb = y[s : s + chunk]
            if self._mc:
                z = np.log(np.maximum(self.mc_probabilities(X[s : s + chunk]), 1e-300))  # softmax(log p) = p
            total += loss_value(self.config.loss, z, yb)
            correct += int((z.argmax(axis=1) == yb).sum())
        n_hidden = sum(len(m) for m in alive)
        dead = 0.0
        if track and n_hidden:
            dead = 1.0 - sum(int(m.sum()) for m in alive) / n_hidden
        return total / len(X), correct / len(X), dead

    @property
    def _mc(self) -> bool:
        c = self.config
        return c.dropout_eval == "mc" and (c.dropout > 0 or c.input_dropout > 0)

    def mc_probabilities(self, X: np.ndarray, samples: int | None = None) -> np.ndarray:
        """``1/K sum_k softmax(f(X; mask_k))``: the mean class probabilities of ``K`` thinned
        networks (``K = mc_samples``), each with fresh masks from the evaluation stream."""
        k = self.config.mc_samples if samples is None else samples
        out = np.zeros((len(X), self.sizes[-1]), np.float64)
        for _ in range(k):
            out += softmax(self.forward(X, train=True, rng=self.mc_rng).astype(np.float64))
        return out / k

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self._mc:
            return self.mc_probabilities(X).argmax(axis=1)
        return self.forward(X).argmax(axis=1)

    # -- statistics ------------------------------------------------------------------------
    def weight_norms(self) -> list[float]:
        return [math.sqrt(float(np.dot(w.ravel(), w.ravel()))) for w in self.W]

    def grad_norms(self) -> list[float]:
        """Norm of each layer's weight gradient (one BLAS dot per layer, no temporaries)."""
        return [math.sqrt(float(np.dot(g, g))) for g in self._gW_flat]

    def sparsity(self) -> float:
        w = self.flat[: self.n_weights]
        return float(np.count_nonzero(np.abs(w) < SPARSITY_THRESHOLD)) / max(w.size, 1)
