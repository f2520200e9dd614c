"""Run the built-in lessons without Ray, Optuna or MLflow, and print their verdicts.

The prototype of what ``study lesson NAME`` does on the engine: each lesson's cells (its lr
tuning runs first, when it has ``tune_lr``) are trained with ``trainers.train`` in at most
``--jobs`` processes, one BLAS thread each; each run's measures are taken with
`study.measures` and the lesson's claims judged with `study.query.verdicts`. Runs that
differ only in how they are measured are trained once. For each lesson it prints the
dataset, the design, the seeds, the wall time, each level's effect with its interval, and
the outcome.

    python benchmarks/lessons_probe.py [NAME ...] [--seeds N] [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from study.comparison import Cell, CompareSpec, load_lesson, parse_compare  # noqa: E402
from study.lessons import LESSON_NAMES  # noqa: E402
from study.measures import measure_result  # noqa: E402
from study.query.verdicts import compare  # noqa: E402
from study.spec import DatasetSpec  # noqa: E402
from trainers import Dataset, TrainConfig, load_dataset, train  # noqa: E402

_DATA: dict[str, Dataset] = {}
CPU = "_cpu_seconds"


def _data(ds: dict[str, Any]) -> Dataset:
    key = json.dumps(ds, sort_keys=True)
    if key not in _DATA:
        spec = DatasetSpec.model_validate(ds)
        _DATA[key] = load_dataset(
            spec.name, val=spec.val, test=spec.test, seed=spec.seed, label_column=spec.label_column, **spec.args
        )
    return _DATA[key]


def _run(job: tuple[dict[str, Any], dict[str, Any], list[str]]) -> dict[str, float]:
    """Train one configuration (in a worker) and return every measure asked of it."""
    ds, config, measures = job
    cpu = time.process_time()
    result = train(TrainConfig.from_dict(config), _data(ds), threads=1)
    out = {m: measure_result(m, result) for m in measures}
    out[CPU] = time.process_time() - cpu
    return out


def _measure_cells(
    pool: ProcessPoolExecutor, ds: dict[str, Any], fixed: dict[str, Any], cells: list[Cell], extra: list[str]
) -> dict[str, dict[str, float]]:
    """Run each distinct configuration once; returns run key -> measure -> value."""
    wanted: dict[str, set[str]] = defaultdict(set)
    configs: dict[str, dict[str, Any]] = {}
    for c in cells:
        wanted[c.key].update([c.measure, *extra])
        configs[c.key] = {**fixed, **c.overrides}
    keys = list(configs)
    jobs = [(ds, configs[k], sorted(wanted[k])) for k in keys]
    return dict(zip(keys, pool.map(_run, jobs), strict=True))


def run_lesson(name: str, pool: ProcessPoolExecutor, seeds: int | None = None) -> dict[str, Any]:
    spec = load_lesson(name)
    comp_data = dict(spec["compare"])
    if seeds is not None:
        comp_data["seeds"] = seeds
    comp: CompareSpec = parse_compare(comp_data)
    ds = spec.get("dataset", "digits")
    ds = {"name": ds} if isinstance(ds, str) else dict(ds)
    fixed = dict(spec.get("fixed", {}))
    data = _data(ds)
    shape = (data.n_features, data.n_classes)
    comp.check(fixed, shape)
    t0 = time.perf_counter()
    lrs = None
    n_runs, cpu = 0, 0.0
    if comp.tune_lr is not None:
        tcells = comp.tune_cells(fixed, shape)
        tvals = _measure_cells(pool, ds, fixed, tcells, [])
        n_runs += len(tvals)
        cpu += sum(v[CPU] for v in tvals.values())
        by_arm: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for c in tcells:
            by_arm[c.arm][c.overrides["lr"]].append(tvals[c.key][c.measure])
        lrs = comp.choose_lrs(by_arm)
    cells = comp.cells(lrs, fixed, shape)
    judgements = comp.judgements()
    extra = sorted({m for j in judgements[1:] for m in j.measures.values()})
    vals = _measure_cells(pool, ds, fixed, cells, extra)
    n_runs += len(vals)
    cpu += sum(v[CPU] for v in vals.values())
    verdicts = []
    for j in judgements:
        arms: dict[str, dict[int, float]] = defaultdict(dict)
        for c in cells:
            arms[c.arm][c.seed] = vals[c.key][j.measures[c.arm]]
        verdicts.append(compare({a: arms[a] for a in comp.arms()}, **j.kwargs))
    return {
        "lesson": name,
        "dataset": ds,
        "design": {a.name: a.overrides for a in comp.arms().values()},
        "lrs": lrs,
        "seeds": comp.seed_list,
        "runs": n_runs,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": cpu,
        "verdicts": verdicts,
    }


def _print(r: dict[str, Any]) -> None:
    ds = r["dataset"]
    args = ", ".join(f"{k}={v}" for k, v in ds.get("args", {}).items())
    print(
        f"\n== {r['lesson']}: {ds['name']}{' (' + args + ')' if args else ''}; {r['runs']} runs in {r['wall_s']:.1f} s ({r['cpu_s']:.1f} CPU s of training)"
    )
    if r["lrs"]:
        print("   tuned lr per arm: " + ", ".join(f"{a}={lr:g}" for a, lr in r["lrs"].items()))
    for v in r["verdicts"]:
        print(f"   [{v['outcome'].upper()}] {v['text']}")
        for lv in v["levels"]:
            b, t = lv["baseline"], lv["treatment"]
            ci = "n/a" if lv["ci_low"] is None else f"[{lv['ci_low']:+.4g}, {lv['ci_high']:+.4g}]"
            print(
                f"      {lv['level']:>28} vs {b['name']}: {t['mean']:.4g} vs {b['mean']:.4g}, "
                f"effect {lv['effect']:+.4g} {ci} @{lv['confidence_used']:.4g} -> {lv['outcome']}"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lessons", nargs="*", default=list(LESSON_NAMES), help=f"default all: {', '.join(LESSON_NAMES)}")
    p.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: each lesson's own)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--json", default=None, help="write every result to this file")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name in args.lessons:
            r = run_lesson(name, pool, args.seeds)
            _print(r)
            results.append(r)
    total = time.perf_counter() - t0
    print(f"\n{'lesson':<20} {'outcome':<13} {'effect':>10} {'CI':>24} {'seeds':>5} {'wall s':>7} {'CPU s':>7}")
    for r in results:
        v = r["verdicts"][0]
        ci = "n/a" if v["ci_low"] is None else f"[{v['ci_low']:+.3g}, {v['ci_high']:+.3g}]"
        eff = "n/a" if v["effect"] is None else f"{v['effect']:+.3g}"
        print(
            f"{r['lesson']:<20} {v['outcome']:<13} {eff:>10} {ci:>24} {len(r['seeds']):>5} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f}"
        )
    cpu = sum(r["cpu_s"] for r in results)
    print(
        f"total {total:.1f} s wall with {args.jobs} processes; {cpu:.1f} CPU s of training (load average {os.getloadavg()[0]:.1f})"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"total_s": total, "jobs": args.jobs, "results": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
