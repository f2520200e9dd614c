"""GPU check for the torch backend, for a machine with an NVIDIA GPU.

1. Proof: a `TorchBackend` built with ``device="auto"`` keeps its parameters, its data and
   its gradients on CUDA, and a whole `trainers.train(..., backend="torch", device="cuda")`
   run completes with finite losses.
2. Throughput: training samples/s for 784-512-512-10 at batch 128 (median of timed epochs
   after a warm-up, ``torch.cuda.synchronize()`` around each epoch).
3. Sharing: four trials train at the same time on the one GPU (four processes, as Ray runs
   four fractional-GPU tasks); each must finish, their run times must overlap, and each
   reports its samples/s and peak memory (the trainer reserves nothing beyond its tensors).

On a machine where torch sees no CUDA GPU it prints "no CUDA GPU visible; nothing to check"
and exits 0. Exit 1 when a check fails, 2 when torch is not installed.

    python benchmarks/gpu_check.py [--epochs N] [--trials 4] [--samples 32768]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers import TrainConfig, train  # noqa: E402
from trainers.data import Dataset  # noqa: E402

SIZES = (784, 512, 512, 10)
BATCH = 128


def make_data(samples: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, SIZES[0]), np.float32)
    y = rng.integers(0, SIZES[-1], samples)
    y[: SIZES[-1]] = np.arange(SIZES[-1])
    n_val = min(2048, samples // 4)
    empty = np.zeros((0, SIZES[0]), np.float32)
    return Dataset("gpu-check", X[n_val:], y[n_val:], X[:n_val], y[:n_val], empty, np.zeros(0, np.int64), SIZES[-1])


def make_config(seed: int = 0, epochs: int = 1) -> TrainConfig:
    return TrainConfig(
        depth=2, width=SIZES[1:-1], activation="relu", loss="cross_entropy", optimizer="momentum",
        lr=0.01, batch_size=BATCH, epochs=epochs, seed=seed,
    )  # fmt: skip


def check_device(samples: int) -> list[str]:
    """Where the tensors live; returns the failures (empty when everything is on CUDA)."""
    import torch

    from trainers.torch_mlp import TorchBackend

    data = make_data(min(samples, 4096))
    be = TorchBackend(make_config(), data, device="auto")
    be.fit_epoch(np.arange(len(data.y_train)), 0.01)
    tensors: dict[str, Any] = {f"param {i}": p for i, p in enumerate(be.params)}
    tensors |= {f"grad {i}": p.grad for i, p in enumerate(be.params)}
    tensors |= {f"X_{k}": v for k, v in be._X.items()} | {f"y_{k}": v for k, v in be._y.items()}
    failures = [f"{k} on {v.device}" for k, v in tensors.items() if v is None or v.device.type != "cuda"]
    print(f"  backend device: {be.device} ({torch.cuda.get_device_name(be.device)}); {len(tensors)} tensors checked")
    result = train(make_config(epochs=2), data, backend="torch", device="cuda")
    losses = [h.train_loss for h in result.history]
    print(f"  train(backend='torch', device='cuda'): {result.stop_reason}, train_loss per epoch {[round(x, 4) for x in losses]}")
    if result.stop_reason != "completed" or not all(math.isfinite(x) for x in losses):
        failures.append(f"train() on cuda ended {result.stop_reason} with losses {losses}")
    return failures


def measure(samples: int, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Samples/s of TorchBackend.fit_epoch on CUDA: median of `epochs` after one warm-up."""
    import torch

    from trainers.torch_mlp import TorchBackend

    start = time.time()
    data = make_data(samples, seed)
    be = TorchBackend(make_config(seed), data, device="cuda")
    rng = np.random.default_rng(seed)
    rates, finite = [], True
    for rep in range(epochs + 1):
        order = rng.permutation(len(data.y_train))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, ok, _ = be.fit_epoch(order, 0.01)
        torch.cuda.synchronize()
        finite = finite and ok and math.isfinite(loss)
        if rep:
            rates.append(len(order) / (time.perf_counter() - t0))
    return {
        "seed": seed, "pid": os.getpid(), "samples_per_s": statistics.median(rates), "finite": finite,
        "device": torch.cuda.get_device_name(be.device), "peak_mib": torch.cuda.max_memory_allocated(be.device) / 2**20,
        "start": start, "end": time.time(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs (median reported), default 5")
    ap.add_argument("--trials", type=int, default=4, help="concurrent trials on the one GPU, default 4")
    ap.add_argument("--samples", type=int, default=32768, help="training samples per epoch, default 32768")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch is not installed: pip install torch (or the hpstudy[torch] extra)", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("no CUDA GPU visible; nothing to check")
        return 0
    free, total = torch.cuda.mem_get_info()
    print(
        f"GPU: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda}); free {free / 2**30:.1f} of {total / 2**30:.1f} GiB"
    )
    failures: list[str] = []

    print("1. the torch backend runs on CUDA")
    failures += check_device(args.samples)

    print(f"2. throughput, {'-'.join(map(str, SIZES))} at batch {BATCH}, {args.samples} samples, median of {args.epochs} epochs")
    one = measure(args.samples, args.epochs)
    print(f"  {one['samples_per_s']:,.0f} samples/s, peak memory {one['peak_mib']:.0f} MiB")
    failures += [] if one["finite"] else ["single trial: non-finite loss"]

    print(f"3. {args.trials} trials at once on the one GPU (one process each)")
    with ProcessPoolExecutor(args.trials, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(measure, [args.samples] * args.trials, [args.epochs] * args.trials, range(1, args.trials + 1)))
    for r in runs:
        print(
            f"  trial seed={r['seed']} pid={r['pid']}: {r['samples_per_s']:,.0f} samples/s, peak {r['peak_mib']:.0f} MiB, {r['device']}"
        )
    overlap = min(r["end"] for r in runs) - max(r["start"] for r in runs)
    total_rate = sum(r["samples_per_s"] for r in runs)
    print(
        f"  together: {total_rate:,.0f} samples/s ({total_rate / one['samples_per_s']:.2f}x one trial alone); all {args.trials} overlapped for {overlap:.1f} s"
    )
    failures += [f"trial seed={r['seed']}: non-finite loss" for r in runs if not r["finite"]]
    if len({r["pid"] for r in runs}) != args.trials:
        failures.append("the trials did not run in separate processes")
    if overlap <= 0:
        failures.append("the trials did not run at the same time")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all GPU checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
