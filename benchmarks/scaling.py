"""Does the study engine keep a cluster busy? Efficiency = ideal time / actual time.

A simulated cluster (`ray.cluster_utils.Cluster`: `--nodes` Ray nodes of `--cpus` logical
CPUs each, all on this machine) runs a study of `--trials` sleep-based trials (`--epochs`
epochs of `--epoch-seconds` each, every epoch reported to Optuna and recorded in MLflow)
at one trial per CPU. The ideal time is trials x trial length / slots (perfect packing,
zero overhead); the actual time is the wall time of the whole study through
`study.run.launch.run_study`. The cluster's workers are warmed by a first, short study, so process
start-up is not counted. Target (issue 5): efficiency >= 0.9 with >= 32 slots.

Also printed, to tell the two kinds of loss apart: how long a trial held its slot on
average (from Optuna's ask to its tell; above the trial's own length this is the per-trial
cost of Ray, the worker and the driver), and the fraction of slot-time that was held (below
100%, slots sat empty between trials or at the start and end of the study).

    python benchmarks/scaling.py [--nodes 4] [--cpus 8] [--trials 128] [--epochs 10] [--epoch-seconds 0.2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this benchmark's own cluster token, set before Ray is imported (see tests/study/conftest.py)
if os.environ.setdefault("RAY_AUTH_MODE", "token") == "token" and "RAY_AUTH_TOKEN_PATH" not in os.environ:
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = """\
name: sleep
description: One learning rate; the trials only sleep.
fixed: {depth: 1, width: 4, epochs: 10}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""
EPOCH_SECONDS = 0.2
EPOCHS = 10
LAST: dict[str, float] = {}


def sleep_trial(number: int, config: Any, data: Any) -> Any:
    """`EPOCHS` epochs of `EPOCH_SECONDS` of sleep each, reported like a real trial."""
    from study.run.events import Ended, Epoch, Started

    yield Started(number, {"pid": os.getpid()})
    for epoch in range(1, EPOCHS + 1):
        time.sleep(EPOCH_SECONDS)
        v = 1.0 / (epoch * (1 + config.lr))
        yield Epoch(
            number,
            epoch,
            {
                "train_loss": v,
                "train_acc": 1 - v,
                "val_loss": v,
                "val_acc": 1 - v,
                "lr": config.lr,
                "grad_norm_0": v,
                "grad_norm_1": v,
            },
        )
    yield Ended(number, "completed", best_epoch=EPOCHS, stopped_epoch=EPOCHS, n_params=10)


def run_study(work: Path, name: str, trials: int, slots: int, trial_fn: Any) -> float:
    from study.run.launch import run_study as drive
    from study.run.prepare import Prepared, prepare
    from study.run.ray_executor import RayExecutor
    from study.spec import parse_spec

    (work / "sleep.yaml").write_text(SPACE)
    spec = parse_spec(
        {
            "name": name,
            "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 100, "n_features": 4, "n_classes": 2}},
            "space": str(work / "sleep.yaml"),
            "sampler": {"name": "random", "seed": 0},
            "pruner": "none",
            "trials": trials,
            "concurrency": slots,
            "storage": f"journal:{work / 'optuna.journal'}",
            "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
        }
    )
    prep = prepare(spec)

    def executor(p: Prepared) -> Any:
        ex = RayExecutor(p.data, trial_fn=trial_fn)
        return ex, ex.close

    t0 = time.perf_counter()
    result = drive(prep, executor=executor, say=lambda m: None)
    dt = time.perf_counter() - t0
    done = [t for t in result.study.trials if t.state.is_finished()]
    assert len(done) == trials and all(t.state.name == "COMPLETE" for t in done), "a trial did not complete"
    held = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]  # ask to tell, as the driver saw it
    LAST["held"] = statistics.mean(held)
    LAST["busy"] = sum(held) / (slots * dt)
    return dt


def main() -> None:
    global EPOCH_SECONDS, EPOCHS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--cpus", type=int, default=8, help="logical CPUs per node (one trial each)")
    p.add_argument("--trials", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--epoch-seconds", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    EPOCH_SECONDS, EPOCHS = args.epoch_seconds, args.epochs

    import logging

    import optuna
    import ray
    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    slots = args.nodes * args.cpus
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus, "include_dashboard": False})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=args.cpus)
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        cluster.wait_for_nodes()
        print(
            f"cluster: {len(ray.nodes())} nodes, {ray.cluster_resources().get('CPU')} CPUs ({os.cpu_count()} real cores)",
            flush=True,
        )
        trial_seconds = EPOCHS * EPOCH_SECONDS
        ideal = args.trials * trial_seconds / slots
        ratios = []
        for rep in range(args.repeats + 1):
            with tempfile.TemporaryDirectory(prefix="hpscale-") as d:
                work = Path(d)
                MlflowClient(f"sqlite:///{work / 'mlflow.db'}").search_experiments()
                if rep == 0:  # warm-up: start every worker process once
                    run_study(work, "warmup", slots, slots, sleep_trial)
                    print("warm-up done", flush=True)
                    continue
                actual = run_study(work, "scaling", args.trials, slots, sleep_trial)
            ratios.append(ideal / actual)
            print(
                f"run {rep}/{args.repeats}: ideal {ideal:.2f} s, actual {actual:.2f} s, efficiency {ideal / actual:.3f}; "
                f"a trial held its slot {LAST['held']:.3f} s on average (ask to tell), slots busy {LAST['busy']:.1%} of the time",
                flush=True,
            )
        print(
            f"\n{args.trials} trials of {trial_seconds:g} s on {slots} slots ({args.nodes} nodes x {args.cpus} CPUs): "
            f"median efficiency {statistics.median(ratios):.3f} (target >= 0.9)"
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
