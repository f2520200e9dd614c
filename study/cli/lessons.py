"""The lesson commands of `study`: the lecture's claims as comparisons, and confirmations.

    study lessons
    study lesson NAME|all [--seeds N] [--dataset D] [--name STUDY] [--storage URL] [--tracking-uri URI]
                          [--address RAY] [--concurrency N] [--quiet]
    study confirm NAME    [--top K] [--seeds N] [--name STUDY] [same flags]

``study lesson NAME`` runs built-in lesson NAME (`study.lessons`) as the study ``lesson-NAME``
(or ``--name``) on the engine and prints its verdict; run again, it resumes what is left or
only prints the verdict. ``all`` runs every lesson in the lecture's order on one Ray and
prints a table of verdicts. ``--dataset`` is a name or a file, or a YAML mapping such as
``"{name: rings, args: {n_samples: 2000}}"``. ``study confirm NAME`` re-trains the top K
trials of tuning study NAME on N fresh seeds (`study.run.confirm`) and prints them ranked.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import yaml

from study.cli.progress import LiveProgress, QuietProgress
from study.comparison import lessons, load_lesson
from study.lessons import LESSON_NAMES
from study.spec import SpecError, StudySpec, parse_spec
from study.stores.uris import STORAGE_ENV, TRACKING_ENV, mask, with_env_defaults


def add_commands(sub: Any) -> None:
    ls = sub.add_parser("lessons", help="list the built-in lessons (one claim of the lecture each)")
    ls.set_defaults(func=list_lessons)
    one = sub.add_parser("lesson", help="run a built-in lesson as a comparison and state its verdict")
    one.add_argument("lesson", help=f"a lesson ({', '.join(LESSON_NAMES)}) or all")
    one.add_argument("--seeds", type=int, help="seeds per arm (default: the lesson's own)")
    one.add_argument("--dataset", help='a dataset name or file, or a YAML mapping: "{name: rings, args: {n_samples: 2000}}"')
    one.add_argument("--name", help="study name (default lesson-NAME; with all, a prefix: NAME-LESSON)")
    _flags(one)
    one.set_defaults(func=lesson_command)
    conf = sub.add_parser("confirm", help="re-train the top trials of a tuning study on fresh seeds and rank them")
    conf.add_argument("name", help="the tuning study")
    conf.add_argument("--top", type=int, default=3, help="how many of its best completed trials (default 3)")
    conf.add_argument("--seeds", type=int, default=5, help="fresh seeds per trial (default 5)")
    conf.add_argument("--name", dest="confirm_name", help="the confirmation's study name (default NAME.confirm-topK-seedsN)")
    _flags(conf)
    conf.set_defaults(func=confirm_command)


def _flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    p.add_argument(
        "--tracking-uri", dest="tracking_uri", help=f"MLflow tracking URI (default: env {TRACKING_ENV}, else sqlite:///mlflow.db)"
    )
    p.add_argument("--address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument("--concurrency", type=int, help="runs in flight (default: the lesson's, 2)")
    p.add_argument("--quiet", action="store_true", help="one log line per run instead of the live display")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def list_lessons(args: argparse.Namespace) -> int:
    for name, (claim, _) in lessons().items():
        ds = load_lesson(name).get("dataset", "digits")
        ds_name = ds if isinstance(ds, str) else ds.get("name", ds.get("train", "?"))
        print(f"{name:<20} {claim} ({ds_name})")
    print("\nRun one with: study lesson NAME [--seeds N] [--dataset D]; every one: study lesson all")
    return 0


def lesson_spec(name: str, args: argparse.Namespace, study_name: str | None = None) -> StudySpec:
    """Built-in lesson `name` as a study spec, with the command line's changes."""
    try:
        data = load_lesson(name)
    except ValueError as e:
        raise SpecError(f"{e}, or all") from None
    if args.seeds is not None:
        data["compare"] = {**data["compare"], "seeds": args.seeds}
    if args.dataset is not None:
        text = args.dataset.strip()
        try:
            data["dataset"] = yaml.safe_load(text) if text.startswith("{") else text
        except yaml.YAMLError as e:
            raise SpecError(f"--dataset {args.dataset!r}: not a YAML mapping ({e})") from None
    if study_name is not None:
        data["name"] = study_name
    spec = parse_spec(data, source=f"lesson {name}")
    spec = with_env_defaults(spec, args.storage, args.tracking_uri)
    return spec.with_overrides(storage=args.storage, tracking_uri=args.tracking_uri, concurrency=args.concurrency)


def run_comparison(spec: StudySpec, args: argparse.Namespace, source: str) -> Any:
    """Prepare, run and conclude a comparison on the engine; prints its verdict. Returns
    `study.run.launch.RunResult`."""
    from study.query.verdict_report import conclude, render
    from study.run import launch as launching
    from study.run.prepare import prepare

    try:
        prep = prepare(spec)
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    warning = launching.local_storage_warning(prep.storage_url, args.address)
    if warning:
        _say(warning)
    executor = launching.ray_executor(args.address)
    if args.quiet:
        result = launching.run_study(prep, executor=executor, listener=QuietProgress(), say=_say, conclude=conclude)
    else:
        with LiveProgress() as live:
            result = launching.run_study(prep, executor=executor, listener=live, say=_say, conclude=conclude)
    if result.verdict is not None:
        print(f"\n{spec.name}: {render(result.verdict)}")
        print(
            f"  recorded on the MLflow parent run (tags verdict, effect, ci_low, ci_high; verdict.json) in {mask(spec.tracking_uri)}"
        )
        print(f"  report: study report {spec.name}")
    return result


def lesson_command(args: argparse.Namespace) -> int:
    if args.seeds is not None and args.seeds < 2:
        raise SpecError(f"--seeds must be at least 2 (an interval over seeds needs two), got {args.seeds}")
    if args.lesson != "all":
        result = run_comparison(lesson_spec(args.lesson, args, args.name), args, f"lesson {args.lesson}")
        return 0 if result.finished else _interrupted(result.study.study_name)
    names = {n: f"{args.name}-{n}" if args.name else None for n in LESSON_NAMES}
    specs = {n: lesson_spec(n, args, names[n]) for n in LESSON_NAMES}  # every lesson checked before any runs
    from study.run.ray_executor import start_ray, stop_ray

    started = start_ray(args.address, threads=1)
    rows, t0 = [], time.perf_counter()
    try:
        for n, spec in specs.items():
            t = time.perf_counter()
            result = run_comparison(spec, args, f"lesson {n}")
            if not result.finished:
                return _interrupted(spec.name)
            rows.append((n, result.verdict, time.perf_counter() - t, spec.trials))
    finally:
        if started:
            stop_ray()
    print(f"\nEvery lesson ({time.perf_counter() - t0:.0f} s):\n" + verdict_table(rows))
    return 0


def verdict_table(rows: list[tuple[str, dict[str, Any] | None, float, int]]) -> str:
    """The table `study lesson all` ends with: one line per lesson, the headline level's
    effect and its interval at the confidence it was judged at (Holm-corrected over levels)."""
    head = f"{'lesson':<20} {'verdict':<13} {'effect':>10} {'interval':>22} {'at':>7} {'seeds':>5} {'runs':>5} {'wall s':>7}"
    lines = [head, "-" * len(head)]
    for name, v, wall, runs in rows:
        if v is None:
            lines.append(f"{name:<20} {'-':<13}")
            continue
        lo, hi = v.get("ci_low"), v.get("ci_high")
        ci = "n/a" if lo is None or hi is None else f"[{lo:+.3g}, {hi:+.3g}]"
        eff = "n/a" if v.get("effect") is None else f"{v['effect']:+.3g}"
        head_level = next((lv for lv in v.get("levels", []) if lv["level"] == v.get("treatment")), None)
        conf = f"{100 * head_level['confidence_used']:.4g}%" if head_level else ""
        lines.append(f"{name:<20} {v['outcome']:<13} {eff:>10} {ci:>22} {conf:>7} {len(v['seeds']):>5} {runs:>5} {wall:>7.0f}")
    return "\n".join(lines)


def _interrupted(name: str) -> int:
    print(f"interrupted: running trials were recorded as interrupted. Continue with: study resume {name}", file=sys.stderr)
    return 130


def confirm_command(args: argparse.Namespace) -> int:
    result = run_confirmation(
        args.name, quiet=args.quiet, address=args.address, top=args.top, seeds=args.seeds, storage=args.storage,
        tracking_uri=args.tracking_uri, confirm_name=args.confirm_name, concurrency=args.concurrency, say=_say,
    )  # fmt: skip
    if not result.finished:
        return _interrupted(result.study.study_name)
    if result.verdict is not None:
        print(f"  MLflow: nested under the parent run of {args.name} (tags verdict, effect, ci_low, ci_high; verdict.json)")
        print(f"  report: study report {result.study.study_name}")
    return 0


def run_confirmation(name: str, *, quiet: bool, address: str | None, **kwargs: Any) -> Any:
    """`study.run.confirm.confirm` of tuning study `name` (`kwargs`: its options) on the Ray at
    `address`, with the live display (one line per run when `quiet`), its ranking printed when
    it concludes; the `RunResult`. `study confirm` and a spec's ``confirm:`` run through it."""
    from study.query.verdict_report import conclude, render
    from study.run import launch as launching
    from study.run.confirm import confirm

    kwargs.update(executor=launching.ray_executor(address), conclude=conclude)
    if quiet:
        result = confirm(name, listener=QuietProgress(), **kwargs)
    else:
        with LiveProgress() as live:
            result = confirm(name, listener=live, **kwargs)
    if result.verdict is not None:  # only a finished confirmation concludes
        print(f"\n{result.study.study_name}: {render(result.verdict)}")
    return result
