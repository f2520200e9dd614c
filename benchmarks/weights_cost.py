"""What keeping the best trial's weights costs, and how often a study pays it.

A trial that does not diverge sends its kept weights with its `Ended` event (the file's bytes:
``weights.npz``); the driver hands them to MLflow only when the trial becomes the study's best.
This measures, for the quickstart's net (digits, 64-128-128-10) and a large one (784-512-512-10):

- the file's size and the time to make it in the worker (`study.run.worker.weights_file`),
- the time to log it as an artifact of a run in a SQLite MLflow store (`MlflowTracker.log_file`),
  median over ``--repeats``,
- how many of ``--trials`` trials become the study's best when their values arrive in random
  order (the expected number is the harmonic number H_n, about ln n + 0.58), against logging
  every completed trial's file.

    python benchmarks/weights_cost.py [--repeats 20] [--trials 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from study.run.worker import weights_file  # noqa: E402
from study.stores.tracker import MlflowTracker  # noqa: E402

SHAPES = {"quickstart 64-128-128-10": [64, 128, 128, 10], "large 784-512-512-10": [784, 512, 512, 10]}


def arrays(sizes: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        out[f"W{i}"], out[f"b{i}"] = rng.normal(size=(a, b)).astype(np.float32), np.zeros(b, np.float32)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--trials", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tracker = MlflowTracker(f"sqlite:///{tmp}/mlflow.db")
        tracker.start_study("weights-cost", {"name": "weights-cost"}, None, "uid")
        for name, sizes in SHAPES.items():
            weights = arrays(sizes)
            make, log = [], []
            for i in range(args.repeats):
                t0 = time.perf_counter()
                fname, data = weights_file(weights, "numpy")
                make.append(time.perf_counter() - t0)
                tracker.start_trial(i, {}, {})
                t0 = time.perf_counter()
                tracker.log_file(i, f"weights/{fname}", data)
                log.append(time.perf_counter() - t0)
                tracker.end_trial(i, "COMPLETE", "FINISHED", {}, {})
            print(
                f"{name}: {len(data) / 1024:.0f} KiB, make {statistics.median(make) * 1000:.2f} ms, "
                f"log to MLflow (SQLite) {statistics.median(log) * 1000:.1f} ms (median of {args.repeats})"
            )
        tracker.close()
    rng = np.random.default_rng(0)
    bests = []
    for _ in range(1000):
        values = rng.random(args.trials)
        bests.append(int(np.sum(values == np.minimum.accumulate(values))))
    print(
        f"{args.trials} trials in random order: {statistics.mean(bests):.1f} become the best on average "
        f"(max {max(bests)} of 1000 orders), against {args.trials} files when every trial logs its own"
    )


if __name__ == "__main__":
    main()
