"""Search efficiency: hpstudy's default study against random search and Ray Tune + ASHA at
equal total training epochs, judged by the winner's test accuracy after re-training.

Every method searches the built-in ``full`` space (30 epochs per configuration unless
``--epochs``) with the same trainer (`trainers.iter_train`, NumPy backend, one BLAS thread
per trial), two trials at a time, maximizing validation accuracy:

- ``hpstudy``: the default study through the real engine (`study.run.launch.launch`: Ray
  streaming tasks, Optuna journal storage, every epoch recorded in MLflow SQLite), with a
  spec that names no sampler and no pruner; objective ``val_acc`` (scope best: the
  validation accuracy of the weights early stopping keeps).
- ``random-1x``/``-2x``/``-4x``: the same engine with ``sampler: random, pruner: none`` at 1,
  2 and 4 times the epochs.
- ``tune-asha``: Ray Tune ``Tuner`` with ``OptunaSearch`` (Optuna's TPE, Ray Tune's
  default) over a define-by-run function calling ``search_spaces.load("full").suggest``,
  and ``ASHAScheduler`` (Ray Tune's defaults: grace period 1, reduction factor 4;
  ``max_t`` = epochs), each trial reporting every epoch, with ``reuse_actors=True`` (one
  actor runs trial after trial: far faster than Ray Tune's default of a new actor per
  trial, which is ``tune-asha-fresh``); the winner is
  ``get_best_result(metric="val_acc", mode="max")`` (Ray Tune's default scope: last).
- candidates for the default (``--methods``): ``tpe-median`` (the default before issue 11:
  TPE + median pruner with 4 startup trials and 2 warm-up epochs), ``tpe-sh`` (TPE +
  successive halving, min_resource 1, reduction factor 3), ``tpe-hyperband``, ``random-sh``
  (random sampler + successive halving), ``tpe-sh4`` (reduction factor 4 from epoch 1:
  Ray Tune's ASHA rungs 1, 4, 16), ``tpe-indep`` (independent TPE without the constant liar,
  as Ray Tune's `OptunaSearch` samples, with the default pruner), ``tpe-tunelike`` (all three
  of Ray Tune's choices: independent TPE without the constant liar, rungs 1, 4, 16, and the
  winner ranked by its last epoch, ``objective.scope: last``), each through the engine.

Budget: ``--budget E`` epochs for each study (``E x multiple`` for ``random-2x``/``-4x``);
a study stops once it has trained that many epochs (trials in flight then are stopped, as
Ray Tune's stopper does). With ``--trials N`` instead, ``hpstudy`` runs N trials and the
epochs it trained in each study seed are the 1x budget of the other methods in that seed.

The winner of every study is re-trained with 3 fresh seeds (``--retrain-seeds``) and tested
on a test split never used for selection: digits (val 0.2, test 0.2 of sklearn's 1797,
split seed 0) or MNIST-1D (the `mnist1d` package's ``make_dataset()`` with default
arguments: the official 4000 train / 1000 test; val 0.2 of the 4000). A winner whose
re-training diverges before its first good epoch scores chance accuracy (1/10).

Prints a markdown table per dataset (mean +- sd over study seeds, and the median over seeds
that the targets use), paired differences with a bootstrap interval, and writes
``results.json`` and ``best_so_far.png`` (median over seeds of the best validation accuracy
found against the epochs trained) to ``--out``.

    python benchmarks/search_efficiency.py [--datasets digits,mnist1d] [--seeds 5] [--first-seed 0]
        [--methods hpstudy,random-1x,random-2x,random-4x,tune-asha] [--budget 600 | --trials N]
        [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers import Dataset, TrainConfig  # noqa: E402

#: Trials in flight at once, every method (the machine's 2 cores).
CONCURRENCY = 2

DEFAULT_METHODS = ("hpstudy", "random-1x", "random-2x", "random-4x", "tune-asha")


@dataclass(frozen=True)
class Method:
    """One contender: through the engine (spec overrides) or Ray Tune, at `multiple` x the budget."""

    kind: str  # "engine" or "tune"
    multiple: int = 1
    spec: dict[str, Any] = field(default_factory=dict)
    reuse_actors: bool = False  # Ray Tune only


#: Ray Tune's choices as spec fields: `OptunaSearch`'s independent TPE without the constant
#: liar, and `ASHAScheduler`'s rungs (grace period 1, reduction factor 4)
TUNE_SAMPLING = {"name": "tpe", "multivariate": False, "constant_liar": False}
TUNE_RUNGS = {"name": "successive_halving", "min_resource": 1, "reduction_factor": 4}

METHODS: dict[str, Method] = {
    "hpstudy": Method("engine"),
    "random-1x": Method("engine", 1, {"sampler": "random", "pruner": "none"}),
    "random-2x": Method("engine", 2, {"sampler": "random", "pruner": "none"}),
    "random-4x": Method("engine", 4, {"sampler": "random", "pruner": "none"}),
    "tune-asha": Method("tune", reuse_actors=True),
    "tune-asha-fresh": Method("tune"),
    "tpe-median": Method(
        "engine", 1, {"sampler": "tpe", "pruner": {"name": "median", "n_startup_trials": 4, "n_warmup_steps": 2}}
    ),
    "tpe-sh": Method("engine", 1, {"sampler": "tpe", "pruner": {"name": "successive_halving", "min_resource": 1}}),
    "tpe-hyperband": Method("engine", 1, {"sampler": "tpe", "pruner": {"name": "hyperband"}}),
    "random-sh": Method("engine", 1, {"sampler": "random", "pruner": {"name": "successive_halving", "min_resource": 1}}),
    # Ray Tune's ASHA schedule (rungs 1, 4, 16) and its independent TPE, through the engine
    "tpe-sh4": Method("engine", 1, {"sampler": "tpe", "pruner": TUNE_RUNGS}),
    "tpe-indep": Method("engine", 1, {"sampler": TUNE_SAMPLING}),
    # all three of Ray Tune's choices at once, through the engine: its sampling, its rungs, its scope
    "tpe-tunelike": Method(
        "engine", 1, {"sampler": TUNE_SAMPLING, "pruner": TUNE_RUNGS, "objective": {"metric": "val_acc", "scope": "last"}}
    ),
}


# -- data ----------------------------------------------------------------------------------
def mnist1d_arrays() -> dict[str, np.ndarray]:
    """MNIST-1D generated offline by the `mnist1d` package (never its downloading `get_dataset`)."""
    from mnist1d.data import make_dataset

    d = make_dataset()
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


def bench_data(name: str, work: Path) -> tuple[dict[str, Any], Dataset]:
    """The engine's `dataset:` spec and the same split as a `Dataset` with its test set
    (for Ray Tune's trials and for re-training winners)."""
    import trainers
    from trainers import from_arrays, load_dataset
    from trainers.data import split

    if name == "digits":
        spec = {"name": "digits", "val": 0.2, "test": 0.2, "seed": 0}
        return spec, load_dataset("digits", val=0.2, test=0.2, seed=0)
    if name != "mnist1d":
        raise SystemExit(f"--datasets: unknown dataset {name!r}; allowed: digits, mnist1d")
    if "mnist1d" in trainers.BUILTIN_DATASETS:  # the built-in (issue 11): official split inside
        data = load_dataset("mnist1d", val=0.2, seed=0)
        if len(data.y_test) != 1000:
            raise SystemExit(f"built-in mnist1d has {len(data.y_test)} test examples, expected the official 1000")
        return {"name": "mnist1d", "val": 0.2, "seed": 0}, data
    a = mnist1d_arrays()
    path = work / "mnist1d-train.npz"
    np.savez(path, X=a["x"], y=a["y"])  # the 4000 training examples; val is carved from them
    data = from_arrays(a["x"], a["y"], name="mnist1d", val=0.2, seed=0)
    X = a["x"].astype(np.float64)
    tr, _, _ = split(X, a["y"].astype(np.int64), 0.2, 0.0, 0, "mnist1d")
    mean, std = X[tr].mean(axis=0), X[tr].std(axis=0)
    std[std == 0] = 1.0
    X_test = np.ascontiguousarray((a["x_test"] - mean) / std, dtype=np.float32)
    import dataclasses

    data = dataclasses.replace(data, X_test=X_test, y_test=a["y_test"].astype(np.int64))
    return {"name": str(path), "val": 0.2, "seed": 0}, data


# -- one study through the engine ------------------------------------------------------------
class Budget:
    """A `study.run.driver.Listener` counting trained epochs, tracing the best value found,
    and stopping the study (as Ctrl-C does: trials in flight are stopped, as Ray Tune's
    stopper does) once `limit` epochs were trained (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.epochs = 0
        self.train_s = 0.0
        self.best = -math.inf
        self.trace: list[tuple[int, float]] = []

    def on_trial_start(self, number: int, info: dict[str, Any]) -> None: ...

    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs += 1
        self.train_s += metrics.get("seconds", 0.0)

    def on_trial_end(self, number: int, outcome: Any, snapshot: Any) -> None:
        if outcome.values is not None and outcome.values[0] > self.best:
            self.best = outcome.values[0]
            self.trace.append((self.epochs, self.best))

    def on_tick(self, snapshot: Any) -> None: ...

    def wants_stop(self) -> bool:
        return self.limit is not None and self.epochs >= self.limit


def run_engine(
    method: Method,
    name: str,
    data_spec: dict[str, Any],
    seed: int,
    budget: int | None,
    trials: int,
    work: Path,
    epochs: int | None,
    empty_db: Path,
) -> dict[str, Any]:
    import optuna

    from study.run.launch import launch

    folder = work / name
    folder.mkdir()
    shutil.copy(empty_db, folder / "mlflow.db")
    spec: dict[str, Any] = {
        "name": name,
        "dataset": data_spec,
        "space": "full",
        "objective": "val_acc",
        "seed": seed,
        "trials": trials,
        "concurrency": CONCURRENCY,
        "storage": f"journal:{folder / 'optuna.journal'}",
        "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
        **method.spec,
    }
    if epochs is not None:
        spec["fixed"] = {"epochs": epochs}
    listener = Budget(budget)
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = launch(spec, listener=listener)
    wall, driver_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    study = result.study
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    if not done:
        raise RuntimeError(f"{name}: no trial completed within {budget} epochs; give a larger --budget")
    best = study.best_trial
    config = winner_config(best.params, spec.get("fixed", {}))
    return {
        "epochs": listener.epochs,
        "wall_s": wall,
        "train_s": listener.train_s,
        "driver_cpu_s": driver_cpu,
        "trials": len(study.trials),
        "completed": len(done),
        "pruned": len(pruned),
        "best_val": best.value,
        "winner": config.to_dict(),
        "trace": listener.trace,
    }


def winner_config(params: dict[str, Any], fixed: dict[str, Any]) -> TrainConfig:
    """The `TrainConfig` of a trial's parameters in the ``full`` space."""
    import optuna

    import search_spaces

    return search_spaces.load("full").suggest(optuna.trial.FixedTrial(params), overrides=fixed, n_inputs=N_INPUTS, n_classes=10)


N_INPUTS = 64  # set per dataset in main


# -- one study through Ray Tune ------------------------------------------------------------
def _tune_trainable(config: dict[str, Any], data: Dataset | None = None) -> None:
    from ray import tune

    from trainers import iter_train

    for rec in iter_train(TrainConfig.from_dict(config["train_config"]), data, threads=1):  # type: ignore[arg-type]
        tune.report({"val_acc": rec.val_acc, "val_loss": rec.val_loss, "seconds": rec.seconds})


def run_tune(name: str, data: Dataset, seed: int, budget: int, work: Path, epochs: int | None, reuse: bool) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    import search_spaces

    space = search_spaces.load("full")
    fixed = {"epochs": epochs} if epochs is not None else {}
    max_t = epochs or space.suggest(_probe_trial(), n_inputs=data.n_features, n_classes=data.n_classes).epochs

    define_by_run = DefineByRun(fixed, data.n_features, data.n_classes, seed)
    counter = _TuneBudget(budget)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_tune_trainable, data=data), {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space=define_by_run, metric="val_acc", mode="max", seed=seed),
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max_t),
            metric="val_acc",
            mode="max",
            num_samples=budget,
            max_concurrent_trials=CONCURRENCY,
            reuse_actors=reuse,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(work / "tune"), stop=counter.stopper(), callbacks=[counter.callback()], verbose=0
        ),
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    results = tuner.fit()
    wall, driver_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    best = results.get_best_result(metric="val_acc", mode="max")
    stopped_early = sum(1 for r in results if r.metrics and r.metrics.get("training_iteration", 0) < max_t)
    return {
        "epochs": counter.epochs,
        "wall_s": wall,
        "train_s": counter.train_s,
        "driver_cpu_s": driver_cpu,
        "trials": len(results),
        "completed": len(results) - stopped_early,
        "pruned": stopped_early,
        "best_val": best.metrics["val_acc"],
        "winner": best.config["train_config"],
        "trace": counter.trace,
    }


class DefineByRun:
    """OptunaSearch's define-by-run space: the ``full`` space's `suggest` on Optuna's trial,
    returning the `TrainConfig` as a constant (picklable: Ray Tune saves its searcher)."""

    def __init__(self, fixed: dict[str, Any], n_inputs: int, n_classes: int, seed: int) -> None:
        self.fixed, self.n_inputs, self.n_classes, self.seed = fixed, n_inputs, n_classes, seed

    def __call__(self, trial: Any) -> dict[str, Any]:
        import search_spaces

        config = search_spaces.load("full").suggest(trial, overrides=self.fixed, n_inputs=self.n_inputs, n_classes=self.n_classes)
        return {"train_config": config.replace(seed=int(trial.number) + 1000 * self.seed).to_dict()}


def _probe_trial() -> Any:
    import optuna

    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()


class _TuneBudget:
    """Ray Tune's stopper (stop every trial once `limit` epochs were reported) and, through
    `callback()`, the best-so-far trace at each trial's end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.epochs = 0
        self.train_s = 0.0
        self.best = -math.inf
        self.trace: list[tuple[int, float]] = []
        self.last: dict[str, float] = {}

    def stopper(self) -> Any:
        from ray.tune import Stopper

        outer = self

        class _Stop(Stopper):
            def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
                return False

            def stop_all(self) -> bool:
                return outer.epochs >= outer.limit

        return _Stop()

    def callback(self) -> Any:
        from ray.tune import Callback

        outer = self

        class _Count(Callback):
            def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any], **info: Any) -> None:
                outer.epochs += 1
                outer.train_s += result.get("seconds", 0.0)
                outer.last[trial.trial_id] = result["val_acc"]

            def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
                v = outer.last.get(trial.trial_id, -math.inf)
                if v > outer.best:
                    outer.best = v
                    outer.trace.append((outer.epochs, v))

        return _Count()


# -- re-training winners -------------------------------------------------------------------
def retrain_all(configs: list[dict[str, Any]], data: Dataset, seeds: list[int]) -> list[list[float]]:
    """Test accuracy of each configuration re-trained with each seed (Ray tasks, 1 CPU each);
    a run that diverged before any good epoch scores chance accuracy."""
    import ray

    @ray.remote(num_cpus=1)
    def one(config: dict[str, Any], data: Dataset, seed: int) -> float:
        from trainers import train

        result = train(TrainConfig.from_dict({**config, "seed": seed}), data, threads=1)
        return result.test_acc if result.test_acc is not None else 1.0 / data.n_classes

    ref = ray.put(data)
    futures = [[one.remote(c, ref, s) for s in seeds] for c in configs]
    return [ray.get(f) for f in futures]


# -- summary ---------------------------------------------------------------------------------
def mean_sd(xs: list[float]) -> str:
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} ± {sd:.3f}"


def paired_ci(a: list[float], b: list[float], reps: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of the paired differences a - b and its 95% percentile bootstrap interval."""
    d = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (reps, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def summarize(runs: list[dict[str, Any]], methods: list[str], datasets: list[str]) -> str:
    lines = []
    for ds in datasets:
        lines += [
            f"\n### {ds}\n",
            "| method | epochs | trials (stopped early) | best val acc | winner's test acc, 3 retrains | median over seeds "
            "| wall s | training s (sum of epochs) | wall beyond training / 2 s | driver CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        per: dict[str, list[dict[str, Any]]] = {m: [r for r in runs if r["dataset"] == ds and r["method"] == m] for m in methods}
        for m in methods:
            rs = per[m]
            if not rs:
                continue
            test = [r["test_mean"] for r in rs]
            lines.append(
                f"| {m} | {statistics.mean(r['epochs'] for r in rs):.0f} | {statistics.mean(r['trials'] for r in rs):.0f} "
                f"({statistics.mean(r['pruned'] for r in rs):.0f}) | {mean_sd([r['best_val'] for r in rs])} | {mean_sd(test)} "
                f"| {statistics.median(test):.3f} | {statistics.mean(r['wall_s'] for r in rs):.0f} "
                f"| {statistics.mean(r['train_s'] for r in rs):.0f} "
                f"| {statistics.mean(r['wall_s'] - r['train_s'] / CONCURRENCY for r in rs):.1f} "
                f"| {statistics.mean(r['driver_cpu_s'] for r in rs):.0f} |"
            )
        base = per.get("hpstudy") or []
        if base:
            lines.append("")
            for m in methods:
                if m == "hpstudy" or not per[m] or len(per[m]) != len(base):
                    continue
                a = [r["test_mean"] for r in sorted(base, key=lambda r: r["seed"])]
                b = [r["test_mean"] for r in sorted(per[m], key=lambda r: r["seed"])]
                d, lo, hi = paired_ci(a, b)
                if len(a) < 3:
                    verdict = "too few seeds for an interval"
                else:
                    verdict = "inconclusive" if lo <= 0 <= hi else ("hpstudy better" if lo > 0 else "hpstudy worse")
                target = m in ("random-4x", "tune-asha")
                met = statistics.median(a) >= statistics.median(b)
                wins = sum(x > y for x, y in zip(a, b, strict=True))
                ties = sum(x == y for x, y in zip(a, b, strict=True))
                lines.append(
                    f"- hpstudy - {m}: mean paired difference in test acc {d:+.4f}, 95% bootstrap CI [{lo:+.4f}, {hi:+.4f}] "
                    f"over {len(a)} seeds ({verdict}); hpstudy higher in {wins}, equal in {ties}; "
                    f"median {statistics.median(a):.3f} vs {statistics.median(b):.3f}"
                    + (f" (target hpstudy >= {m}: {'met' if met else 'missed'})" if target else "")
                )
            for tm in ("tune-asha", "tune-asha-fresh"):
                tune = {r["seed"]: r for r in per.get(tm) or []}
                pairs = [(r["wall_s"], tune[r["seed"]]["wall_s"]) for r in base if r["seed"] in tune]
                if pairs:
                    ratios = [a / b for a, b in pairs]
                    lines.append(
                        f"- wall time hpstudy / {tm}: median of the per-seed ratios {statistics.median(ratios):.2f} "
                        f"(each seed's two studies ran minutes apart), ratio of the means "
                        f"{statistics.mean(a for a, _ in pairs) / statistics.mean(b for _, b in pairs):.2f}, over {len(pairs)} seeds "
                        "(target <= 0.5)"
                    )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], methods: list[str], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for m in methods:
            rs = [r for r in runs if r["dataset"] == ds and r["method"] == m]
            if not rs:
                continue
            xmax = max(r["epochs"] for r in rs)
            grid = np.linspace(1, xmax, 200)
            curves = []
            for r in rs:
                xs = [e for e, _ in r["trace"]]
                ys = [v for _, v in r["trace"]]
                idx = np.searchsorted(xs, grid, side="right") - 1
                curves.append(np.where(idx >= 0, np.asarray(ys + [np.nan])[np.maximum(idx, 0)], np.nan))
            ax.plot(grid, np.nanmedian(np.asarray(curves), axis=0), label=m)
        ax.set(title=f"{ds}: best validation accuracy found (median over seeds)", xlabel="epochs trained", ylabel="val acc")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- main ----------------------------------------------------------------------------------
def save(args: argparse.Namespace, runs: list[dict[str, Any]], total: float) -> None:
    (args.out / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "total_s": total, "runs": runs}, indent=1)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist1d")
    p.add_argument("--seeds", type=int, default=5, help="how many study seeds: K..K+N-1 (K: --first-seed)")
    p.add_argument("--first-seed", type=int, default=0, help="the first study seed (more seeds after an earlier run)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from: {', '.join(METHODS)}")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget", type=int, help="epochs per study at 1x (default 600: 20 full trials of 30 epochs)")
    g.add_argument("--trials", type=int, help="hpstudy runs this many trials; its epochs are the others' 1x budget")
    p.add_argument("--epochs", type=int, help="override the space's epochs per configuration (default: the space's 30)")
    p.add_argument("--retrain-seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("search-efficiency"))
    p.add_argument("--quick", action="store_true", help="a smoke test: digits, 1 seed, 5 epochs, budget 40, 1 retrain")
    p.add_argument("--summarize", type=Path, metavar="RESULTS_JSON", help="print the tables of an earlier run and exit")
    args = p.parse_args()
    if args.summarize is not None:
        saved = json.loads(args.summarize.read_text())
        runs = saved["runs"]
        names = list(dict.fromkeys(r["method"] for r in runs))
        names.sort(key=lambda m: m != "hpstudy")
        print(summarize(runs, names, list(dict.fromkeys(r["dataset"] for r in runs))))
        return
    if args.quick:
        args.datasets, args.seeds, args.epochs, args.retrain_seeds = "digits", 1, 5, 1
        if args.trials is None and args.budget is None:
            args.budget = 40
    if args.budget is None and args.trials is None:
        args.budget = 600
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; allowed: {', '.join(METHODS)}")
    if args.trials is not None and "hpstudy" not in methods:
        raise SystemExit("--trials sets hpstudy's trials and so needs hpstudy among --methods")
    methods.sort(key=lambda m: m != "hpstudy")  # hpstudy first: with --trials it sets the budget
    datasets = [d for d in args.datasets.split(",") if d]
    args.out.mkdir(parents=True, exist_ok=True)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "0")

    from mlflow.tracking import MlflowClient

    from study.run.ray_executor import start_ray

    start_ray(None)
    t_all = time.perf_counter()
    runs: list[dict[str, Any]] = []
    args.out = args.out.resolve()
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="hpsearch-") as d:
        work = Path(d)
        os.chdir(work)  # MLflow's SQLite store puts artifacts under ./mlruns
        empty_db = work / "empty-mlflow.db"
        MlflowClient(f"sqlite:///{empty_db}").search_experiments()
        for ds in datasets:
            data_spec, data = bench_data(ds, work)
            global N_INPUTS
            N_INPUTS = data.n_features
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                unit = args.budget
                for m in methods:
                    meth = METHODS[m]
                    name = f"{m}-{ds}-s{seed}"
                    if meth.kind == "tune":
                        assert unit is not None
                        r = run_tune(name, data, seed, unit * meth.multiple, work, args.epochs, meth.reuse_actors)
                    else:
                        trials = args.trials if (m == "hpstudy" and args.trials) else 1_000_000
                        limit = None if (m == "hpstudy" and args.trials) else unit * meth.multiple  # type: ignore[operator]
                        r = run_engine(meth, name, data_spec, seed, limit, trials, work, args.epochs, empty_db)
                        if m == "hpstudy" and args.trials:
                            unit = r["epochs"]
                    r.update(dataset=ds, method=m, seed=seed)
                    (tests,) = retrain_all([r["winner"]], data, [10_000 + i for i in range(args.retrain_seeds)])
                    r["test_accs"], r["test_mean"] = tests, statistics.mean(tests)
                    runs.append(r)
                    save(args, runs, time.perf_counter() - t_all)  # what ran so far survives an interruption
                    print(
                        f"{ds} seed {seed} {m:>13}: {r['epochs']} epochs, {r['trials']} trials ({r['pruned']} stopped early), "
                        f"best val {r['best_val']:.4f}, winner's test acc {r['test_mean']:.4f}, {r['wall_s']:.0f} s",
                        flush=True,
                    )
        os.chdir(home)
    total = time.perf_counter() - t_all
    import ray

    ray.shutdown()
    table = summarize(runs, methods, datasets)
    head = (
        f"search efficiency: budget {f'{args.budget} epochs' if args.budget else f'hpstudy at {args.trials} trials'} at 1x, "
        f"study seeds {args.first_seed}..{args.first_seed + args.seeds - 1}, {args.retrain_seeds} re-training seeds, {os.cpu_count()} CPUs, concurrency {CONCURRENCY}; "
        f"total {total:.0f} s"
    )
    print("\n" + head + table)
    save(args, runs, total)
    plot(runs, methods, datasets, args.out / "best_so_far.png")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'best_so_far.png'}")


if __name__ == "__main__":
    main()
