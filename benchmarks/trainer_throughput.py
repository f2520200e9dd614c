"""Training throughput of the NumPy and torch backends, one BLAS thread, same data, same run.

For each shape the same `TrainConfig` (SGD with momentum, ReLU, cross-entropy, no dropout)
trains one epoch at a time through each backend's ``fit_epoch`` on generated data (Gaussian
X, random labels); samples/s is the median over ``--repeats`` epochs after a warm-up epoch,
NumPy and torch epochs interleaved so that machine noise hits both alike. A third column,
the plain idiomatic torch loop (``nn.Sequential`` + ``optim.SGD``), shows how much of the
torch backend's time is torch itself rather than its bookkeeping.

The NumPy column is also put against the machine: the single-thread SGEMM peak measured in
the same run (median of float32 ``np.dot`` on 1024 x 1024 matrices) and the exact matmul
FLOPs of one training sample,

    forward      2 * sum_l in_l * out_l
    backward dW  2 * sum_l in_l * out_l
    backward dX  2 * sum_{l > 0} in_l * out_l      (no input gradient for the first layer)

(elementwise work such as activations, softmax and the optimizer step is not counted).

    python benchmarks/trainer_throughput.py [--repeats N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers import TrainConfig  # noqa: E402
from trainers.data import Dataset  # noqa: E402
from trainers.numpy_mlp.trainer import NumpyBackend  # noqa: E402


@dataclass(frozen=True)
class Case:
    name: str
    n_in: int
    widths: tuple[int, ...]
    n_out: int
    batch: int
    samples: int

    @property
    def sizes(self) -> list[int]:
        return [self.n_in, *self.widths, self.n_out]


CASES = (
    Case("64-256-256-10", 64, (256, 256), 10, 32, 4096),
    Case("64-[64 x 6]-10", 64, (64,) * 6, 10, 32, 4096),
    Case("784-512-512-10", 784, (512, 512), 10, 128, 8192),
)


def train_flops_per_sample(sizes: list[int]) -> int:
    """Matmul FLOPs of one sample's forward and backward pass (see the module docstring)."""
    mults = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False)]
    return 2 * sum(mults) + 2 * sum(mults) + 2 * sum(mults[1:])


def sgemm_peak(n: int = 1024, repeats: int = 7) -> float:
    """Single-thread float32 GEMM rate in GFLOP/s: median of `repeats` ``np.dot`` of n x n."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    out = np.empty((n, n), np.float32)
    np.dot(a, b, out=out)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.dot(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def make_data(case: Case, samples: int) -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((samples, case.n_in), np.float32)
    y = rng.integers(0, case.n_out, samples)
    y[: case.n_out] = np.arange(case.n_out)
    Xv, yv = X[:256], y[:256]
    empty = np.zeros((0, case.n_in), np.float32)
    return Dataset(case.name, X, y, Xv, yv, empty, np.zeros(0, np.int64), case.n_out)


def make_config(case: Case) -> TrainConfig:
    return TrainConfig(
        depth=len(case.widths), width=case.widths, activation="relu", loss="cross_entropy",
        optimizer="momentum", lr=0.01, momentum=0.9, batch_size=case.batch, epochs=1, seed=0,
    )  # fmt: skip


class PlainTorch:
    """Reference: the idiomatic torch loop (``nn.Sequential``, ``optim.SGD``, no statistics,
    no divergence check), to show how much of the torch column is torch itself."""

    name = "torch_plain"

    def __init__(self, case: Case, data: Dataset) -> None:
        import torch
        from torch import nn

        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(case.sizes[:-1], case.sizes[1:], strict=False)):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(case.widths) else [])
        self.model = nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.X, self.y = torch.as_tensor(data.X_train), torch.as_tensor(data.y_train)
        self.batch = case.batch

    def fit_epoch(self, order: np.ndarray, lr: float) -> tuple[float, bool, list[float]]:
        import torch
        import torch.nn.functional as F

        idx = torch.as_tensor(order)
        X, y = self.X[idx], self.y[idx]
        for s in range(0, len(y), self.batch):
            self.opt.zero_grad()
            F.cross_entropy(self.model(X[s : s + self.batch]), y[s : s + self.batch]).backward()
            self.opt.step()
        return 0.0, True, []


def _epoch_rate(backend: Any, order: np.ndarray) -> float:
    t0 = time.perf_counter()
    _, finite, _ = backend.fit_epoch(order, 0.01)
    seconds = time.perf_counter() - t0
    if not finite:  # a diverged epoch stops early and would overstate the rate
        raise RuntimeError(f"{backend.name}: the benchmark run diverged; lower its learning rate")
    return len(order) / seconds


def run_case(case: Case, repeats: int, samples: int, peak: float, use_torch: bool) -> dict[str, Any]:
    data, cfg = make_data(case, samples), make_config(case)
    backends: dict[str, Any] = {"numpy": NumpyBackend(cfg, data)}
    if use_torch:
        from trainers.torch_mlp import TorchBackend

        backends["torch"] = TorchBackend(cfg, data, device="cpu", threads=1)
        backends["torch_plain"] = PlainTorch(case, data)
    rng = np.random.default_rng(1)
    rates: dict[str, list[float]] = {k: [] for k in backends}
    for rep in range(repeats + 1):  # the first epoch of each backend is its warm-up
        order = rng.permutation(samples)
        for name, be in backends.items():
            rate = _epoch_rate(be, order)
            if rep:
                rates[name].append(rate)
    flops = train_flops_per_sample(case.sizes)
    np_rate = statistics.median(rates["numpy"])
    gflops = np_rate * flops / 1e9
    out: dict[str, Any] = {
        "shape": case.name, "batch": case.batch, "samples": samples, "repeats": repeats,
        "numpy_samples_per_s": np_rate, "numpy_runs": rates["numpy"],
        "torch_samples_per_s": None, "torch_runs": None, "numpy_over_torch": None,
        "train_flops_per_sample": flops, "numpy_gflops": gflops,
        "sgemm_peak_gflops": peak, "numpy_fraction_of_peak": gflops / peak,
    }  # fmt: skip
    if use_torch:
        t_rate = statistics.median(rates["torch"])
        out.update(torch_samples_per_s=t_rate, torch_runs=rates["torch"], numpy_over_torch=np_rate / t_rate)
        out["torch_gflops"] = t_rate * flops / 1e9
        out.update(torch_plain_samples_per_s=statistics.median(rates["torch_plain"]), torch_plain_runs=rates["torch_plain"])
    return out


def environment(use_torch: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    env["blas"] = [
        f"{d.get('internal_api')} {d.get('version') or ''} {d.get('architecture') or ''}".strip()
        for d in threadpool_info()
        if d.get("user_api") == "blas"
    ]
    if os.environ.get("OPENBLAS_CORETYPE"):
        env["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    if use_torch:
        import torch

        env["torch"] = torch.__version__
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per backend and shape (median reported), default 5")
    ap.add_argument(
        "--quick", action="store_true", help="a quarter of the samples and 3 repeats: a smoke run, not for the README"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object per case instead of the table")
    ap.add_argument("--no-torch", action="store_true", help="NumPy column only")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    repeats = 3 if args.quick else args.repeats
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed (pip install torch, or the hpstudy[torch] extra); use --no-torch", file=sys.stderr)
            return 2
        torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        peak = sgemm_peak()
        results = []
        for case in CASES:
            samples = case.samples // 4 if args.quick else case.samples
            results.append(run_case(case, repeats, samples, peak, use_torch))
            if args.json:
                print(json.dumps(results[-1] | {"environment": environment(use_torch)}), flush=True)
    if not args.json:
        print_table(results, peak, environment(use_torch))
    return 0


def print_table(results: list[dict[str, Any]], peak: float, env: dict[str, Any]) -> None:
    print(f"one thread; {', '.join(f'{k}={v}' for k, v in env.items())}")
    print(f"single-thread SGEMM peak (float32 1024x1024 np.dot, median): {peak:.1f} GFLOP/s")
    print(f"median of {results[0]['repeats']} epochs after a warm-up; SGD momentum, relu, cross-entropy, no dropout\n")
    head = (
        f"{'shape':<16} {'batch':>5} {'numpy samples/s':>16} {'torch samples/s':>16} {'numpy/torch':>11} "
        f"{'numpy GFLOP/s':>14} {'% SGEMM peak':>13} {'plain torch loop':>17}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        t = f"{r['torch_samples_per_s']:16,.0f}" if r["torch_samples_per_s"] else f"{'n/a':>16}"
        ratio = f"{r['numpy_over_torch']:10.2f}x" if r["numpy_over_torch"] else f"{'n/a':>11}"
        plain = f"{r['torch_plain_samples_per_s']:17,.0f}" if r.get("torch_plain_samples_per_s") else f"{'n/a':>17}"
        print(
            f"{r['shape']:<16} {r['batch']:>5} {r['numpy_samples_per_s']:16,.0f} {t} {ratio} "
            f"{r['numpy_gflops']:14.1f} {100 * r['numpy_fraction_of_peak']:12.1f}% {plain}"
        )
    if any(r.get("torch_plain_samples_per_s") for r in results):
        print(
            "\nplain torch loop: nn.Sequential + optim.SGD, no statistics or divergence check (a reference for the torch column)"
        )


if __name__ == "__main__":
    sys.exit(main())
