"""What the study engine itself costs per trial, next to Ray Tune and to plain Optuna.

Every system runs the same trivial trial (10 epochs of near-zero work, each epoch's record
of 12 metrics reported) for `--trials` trials at concurrency 2, with the same sampler
(Optuna's RandomSampler, so the sampler's own cost is the same everywhere and small):

- ``hpstudy``: `study.run.launch.run_study` on a local Ray, trials on trial slots (Ray actors), Optuna
  journal storage, every epoch recorded in MLflow (SQLite), one MLflow run per trial;
- ``hpstudy+sqlite``: the same with Optuna's SQLite storage (why the journal is the default);
- ``ray-tune``: `Tuner` with `OptunaSearch` and `MLflowLoggerCallback` (SQLite), a function
  trainable calling `tune.report` every epoch (needs the `bench` extra: ray[tune]);
- ``optuna+sqlite``: plain `study.optimize(n_jobs=2)` in-process with SQLite storage, which
  reports every epoch to Optuna and records nothing in MLflow.

Ray is started once (Ray Tune runs after all runs of the others: its actors' worker
processes would take the place of the task workers the others reuse), and every MLflow
database is created (migrated) before the clock starts; each timing is the wall time of one
whole study. Prints the median ms per trial of
`--repeats` runs and the ratios. Targets (issue 5): hpstudy <= 1/10 of Ray Tune's cost
and <= plain Optuna with SQLite.

    python benchmarks/orchestration_overhead.py [--trials 200] [--repeats 3] [--tune-repeats N] [--skip-tune]
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPOCHS = 10
SYSTEMS = ("hpstudy", "hpstudy+sqlite", "optuna+sqlite", "ray-tune")
SPACE = """\
name: bench
description: One learning rate, for the overhead benchmark.
fixed: {depth: 1, width: 4, epochs: 10}
parameters:
  lr: {float: [1.0e-3, 0.3], log: true}
"""


def record(epoch: int, lr: float) -> dict[str, float]:
    """A record shaped like a depth-2 net's `EpochRecord.metrics()` (12 values)."""
    v = 1.0 / (epoch * (1 + lr))
    names = (
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "grad_norm_0",
        "grad_norm_1",
        "grad_norm_2",
        "weight_norm_0",
        "weight_norm_1",
        "weight_norm_2",
        "seconds",
    )
    return {k: v + i * 1e-3 for i, k in enumerate(names)}


def trivial_trial(number: int, config: Any, data: Any) -> Any:
    """The study engine's trial: near-zero work, 10 epoch events, an end summary."""
    from study.run.events import Ended, Epoch, Started

    yield Started(number, {"pid": os.getpid()})
    for epoch in range(1, EPOCHS + 1):
        yield Epoch(number, epoch, record(epoch, config.lr))
    yield Ended(number, "completed", best_epoch=EPOCHS, stopped_epoch=EPOCHS, n_params=10)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _descendants() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every live descendant process of this one, by pid,
    with the kind of process (Ray worker, Ray's own processes, other), from /proc."""
    parent: dict[int, int] = {}
    info: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parent[pid] = int(fields[1])
        kind = "ray system"  # raylet, GCS, dashboard agent, log monitor, ...
        if "study.stores.writer" in cmd:
            kind = "writer"
        elif "default_worker" in cmd or (cmd.startswith("ray::") and "Agent" not in cmd):  # ray::IDLE, ray::_run_fn
            kind = "ray workers"
        info[pid] = (kind, (int(fields[11]) + int(fields[12])) / _TICK)
    me, out = os.getpid(), {}
    for pid in info:
        p = pid
        while p in parent and p not in (0, 1, me):
            p = parent[p]
        if p == me and pid != me:
            out[pid] = info[pid]
    return out


class CpuMeter:
    """Wall time and CPU seconds spent during a block (the timed part of one run), by process
    kind: this process (the driver), the MLflow writer (a reaped child), Ray's workers and
    Ray's own processes (raylet, GCS, ...)."""

    def __enter__(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._self0 = time.process_time()
        self._kids0 = os.times().children_user + os.times().children_system
        self._procs0 = _descendants()
        return self

    def __exit__(self, *_: Any) -> None:
        self.wall = time.perf_counter() - self._t0
        procs = _descendants()
        self.seconds: dict[str, float] = {"driver": time.process_time() - self._self0}
        kids = os.times().children_user + os.times().children_system - self._kids0
        self.seconds["writer"] = kids  # the writer process has exited and been reaped by now
        for pid, (kind, cpu) in procs.items():
            before = self._procs0.get(pid, (kind, 0.0))[1]
            self.seconds[kind] = self.seconds.get(kind, 0.0) + cpu - before


CLOCK = CpuMeter()


def empty_mlflow_db(path: Path) -> str:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{path}"
    MlflowClient(uri).search_experiments()
    return uri


def run_hpstudy(work: Path, trials: int, storage: str) -> float:
    from study.run.launch import run_study
    from study.run.prepare import Prepared, prepare
    from study.run.ray_executor import RayExecutor
    from study.spec import parse_spec

    (work / "bench.yaml").write_text(SPACE)
    uri = empty_mlflow_db(work / "mlflow.db")
    url = f"journal:{work / 'optuna.journal'}" if storage == "journal" else f"sqlite:///{work / 'optuna.db'}"
    spec = parse_spec(
        {
            "name": "overhead",
            "dataset": {"name": "gaussian_mixture", "args": {"n_samples": 100, "n_features": 4, "n_classes": 2}},
            "space": str(work / "bench.yaml"),
            "sampler": {"name": "random", "seed": 0},
            "pruner": "none",
            "trials": trials,
            "concurrency": 2,
            "storage": url,
            "tracking_uri": uri,
        }
    )
    prep = prepare(spec)

    def executor(p: Prepared) -> Any:
        ex = RayExecutor(p.data, trial_fn=trivial_trial)
        return ex, ex.close

    with CLOCK:
        result = run_study(prep, executor=executor, say=lambda m: None)
    dt = CLOCK.wall
    states = [t.state.name for t in result.study.get_trials(deepcopy=False)]
    assert states == ["COMPLETE"] * trials, f"not every trial completed: {collections.Counter(states)}"
    return dt


def run_optuna(work: Path, trials: int) -> float:
    storage = optuna.storages.RDBStorage(f"sqlite:///{work / 'optuna.db'}")
    study = optuna.create_study(
        study_name="overhead", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner()
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
        for epoch in range(1, EPOCHS + 1):
            trial.report(record(epoch, lr)["val_loss"], epoch)
        return record(EPOCHS, lr)["val_loss"]

    with CLOCK:
        study.optimize(objective, n_trials=trials, n_jobs=2)
    return CLOCK.wall


def tune_trainable(config: dict[str, Any]) -> None:
    from ray import tune

    for epoch in range(1, EPOCHS + 1):
        tune.report(record(epoch, config["lr"]))


def run_tune(work: Path, trials: int) -> float:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    uri = empty_mlflow_db(work / "mlflow.db")
    search = OptunaSearch(metric="val_loss", mode="min", sampler=optuna.samplers.RandomSampler(seed=0))
    tuner = tune.Tuner(
        tune_trainable,
        param_space={"lr": tune.loguniform(1e-3, 0.3)},
        tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name="overhead",
            storage_path=str(work / "tune"),
            callbacks=[MLflowLoggerCallback(tracking_uri=uri, experiment_name="overhead", save_artifact=False)],
            verbose=0,
        ),
    )
    with CLOCK:
        results = tuner.fit()
    dt = CLOCK.wall
    assert len(results) == trials and not results.errors
    return dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-tune", action="store_true", help="leave Ray Tune out (it takes minutes)")
    p.add_argument("--tune-repeats", type=int, help="runs of Ray Tune (default: --repeats; each takes minutes)")
    p.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)} (e.g. to profile one)")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

    from study.run.ray_executor import start_ray

    start_ray(None)
    systems = [s for s in SYSTEMS if s != "ray-tune" or not args.skip_tune]
    if args.systems:
        systems = [s.strip() for s in args.systems.split(",")]
        bad = [s for s in systems if s not in SYSTEMS]
        if bad:
            p.error(f"--systems: unknown {', '.join(bad)}; allowed: {', '.join(SYSTEMS)}")
    times: dict[str, list[float]] = {s: [] for s in systems}
    cpu: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    tune_repeats = args.repeats if args.tune_repeats is None else args.tune_repeats
    # Ray Tune after every run of the others: its actors' worker processes would otherwise take
    # the place of the task workers the other systems' later runs reuse (new workers each cost
    # about a second and a half of CPU to start)
    order = [(rep, n) for rep in range(args.repeats) for n in systems if n != "ray-tune"]
    order += [(rep, "ray-tune") for rep in range(tune_repeats) if "ray-tune" in systems]
    for rep, name in order:
        with tempfile.TemporaryDirectory(prefix="hpbench-") as d:
            work = Path(d)
            if name == "hpstudy":
                dt = run_hpstudy(work, args.trials, "journal")
            elif name == "hpstudy+sqlite":
                dt = run_hpstudy(work, args.trials, "sqlite")
            elif name == "optuna+sqlite":
                dt = run_optuna(work, args.trials)
            else:
                dt = run_tune(work, args.trials)
        times[name].append(dt)
        per = {k: v * 1000 / args.trials for k, v in CLOCK.seconds.items() if v > 0}
        cpu[name].append(per)
        shown = ", ".join(f"{k} {v:.1f}" for k, v in per.items())
        print(
            f"run {rep + 1}/{args.repeats} {name:>15}: {dt * 1000 / args.trials:8.1f} ms/trial (CPU ms/trial: {shown})",
            flush=True,
        )

    med = {k: statistics.median(v) * 1000 / args.trials for k, v in times.items()}
    print(
        f"\n{args.trials} trials x {EPOCHS} epochs, concurrency 2, {os.cpu_count()} CPUs; median of {args.repeats} runs (Ray Tune: {tune_repeats})"
    )
    print(f"{'system':>15}  {'ms/trial':>9}  runs")
    for k, v in med.items():
        print(f"{k:>15}  {v:9.1f}  " + ", ".join(f"{x * 1000 / args.trials:.1f}" for x in times[k]))
    print("\nCPU ms per trial by process (median over runs; the timed part: the whole study, its start and end included):")
    for k, runs in cpu.items():
        kinds = sorted({kind for r in runs for kind in r})
        print(f"{k:>15}  " + ", ".join(f"{kind} {statistics.median(r.get(kind, 0.0) for r in runs):.1f}" for kind in kinds))
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if "hpstudy" in med and "optuna+sqlite" in med:
        print(f"\nhpstudy / optuna+sqlite = {med['hpstudy'] / med['optuna+sqlite']:.2f}  (target <= 0.5)")
    if "hpstudy+sqlite" in med and "optuna+sqlite" in med:
        print(f"hpstudy+sqlite / optuna+sqlite = {med['hpstudy+sqlite'] / med['optuna+sqlite']:.2f}")
    if "hpstudy" in med and "hpstudy+sqlite" in med:
        print(f"hpstudy+sqlite / hpstudy = {med['hpstudy+sqlite'] / med['hpstudy']:.2f}  (the journal storage's saving)")
    if "hpstudy" in med and "ray-tune" in med:
        print(f"hpstudy / ray-tune       = {med['hpstudy'] / med['ray-tune']:.3f}  (target <= 0.1)")
    if "hpstudy" in med:
        print(f"hpstudy ms/trial         = {med['hpstudy']:.1f}  (target <= 15)")


if __name__ == "__main__":
    main()
