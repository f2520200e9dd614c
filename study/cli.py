"""The `study` command.

    study launch SPEC.yaml [--trials N] [--concurrency N] [--address RAY] [--storage URL]
                           [--tracking-uri URI] [--quiet]
    study resume NAME      [same flags]
    study status NAME      [--storage URL]
    study submit SPEC.yaml --address http://HEAD:8265 [--trials N] [--concurrency N] [--storage URL]
                           [--tracking-uri URI]        (prints the Ray job id)
    study status --job JOB_ID --address http://HEAD:8265
    study logs JOB_ID      --address http://HEAD:8265 [--follow]
    study sync NAME        [--storage URL] [--tracking-uri URI]
    study spaces
    study space show NAME
    study best NAME        [-k 5] [--where EXPR] [--scope best|last] [--json]
    study report NAME      [--output PATH]
    study ui [NAME]        [--port 5000] [--host 127.0.0.1]

Where the storage and the tracking URI come from, first found wins: the flag, the spec
(for `resume`: the stored spec), the environment (``HPSTUDY_STORAGE``,
``MLFLOW_TRACKING_URI``), the default. Passing credentials by environment keeps passwords
off command lines (`ps` shows those to every user).

Exit codes: 0 done, 2 bad input (one message, nothing written), 130 interrupted (resumable
with `study resume NAME`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from study.env import STORAGE_ENV, TRACKING_ENV, with_env_defaults
from study.spec import SpecError
from study.storage import mask
from study.tracking import TrackingFailure

ORDER = "first found wins: this flag, the spec, env {env}, the default"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, help="number of finished trials to reach (overrides the spec)")
    p.add_argument("--concurrency", type=int, help="trials in flight (default: what the Ray cluster's CPUs hold)")
    p.add_argument("--address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument(
        "--storage", help=f"Optuna storage URL ({ORDER.format(env=STORAGE_ENV)}: journal file .hpstudy/optuna.journal)"
    )
    p.add_argument(
        "--tracking-uri", dest="tracking_uri", help=f"MLflow tracking URI ({ORDER.format(env=TRACKING_ENV)}: sqlite:///mlflow.db)"
    )
    p.add_argument("--quiet", action="store_true", help="one log line per trial instead of the live display")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="study", description="Distributed hyperparameter studies: Optuna decides, Ray runs, MLflow records."
    )
    sub = p.add_subparsers(dest="command", required=True)
    launch = sub.add_parser("launch", help="run the study a spec describes")
    launch.add_argument("spec", help="YAML spec file")
    _common(launch)
    resume = sub.add_parser("resume", help="continue a stopped or killed study")
    resume.add_argument("name")
    _common(resume)
    submit = sub.add_parser("submit", help="run the study's driver on a Ray cluster as a Ray Job; prints the job id")
    submit.add_argument("spec", help="YAML spec file")
    submit.add_argument("--address", help="Ray dashboard / Jobs API, http://HEAD:8265 (default: env HPSTUDY_RAY_DASHBOARD)")
    submit.add_argument("--trials", type=int, help="number of finished trials to reach (overrides the spec)")
    submit.add_argument("--concurrency", type=int, help="trials in flight (default: what the Ray cluster's CPUs hold)")
    submit.add_argument("--storage", help=f"Optuna storage, a database server ({ORDER.format(env=STORAGE_ENV)})")
    submit.add_argument("--tracking-uri", dest="tracking_uri", help=f"MLflow server ({ORDER.format(env=TRACKING_ENV)})")
    logs = sub.add_parser("logs", help="the output of a study submitted as a Ray Job")
    logs.add_argument("job_id")
    logs.add_argument("--address", help="Ray dashboard / Jobs API, http://HEAD:8265 (default: env HPSTUDY_RAY_DASHBOARD)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    status = sub.add_parser("status", help="counts by state, best so far, running trials (or a submitted job's state)")
    status.add_argument("name", nargs="?")
    status.add_argument("--job", help="a Ray job id from `study submit`: show its state instead")
    status.add_argument("--address", help="with --job: Ray dashboard / Jobs API, http://HEAD:8265")
    status.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    sync = sub.add_parser("sync", help="fill MLflow in from Optuna storage (after an MLflow outage); idempotent")
    sync.add_argument("name")
    sync.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    sync.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        help=f"MLflow tracking URI (default: the study's, else env {TRACKING_ENV} when the stored one had a password)",
    )
    sub.add_parser("spaces", help="list the built-in search spaces")
    space = sub.add_parser("space", help="about one search space")
    space_sub = space.add_subparsers(dest="space_command", required=True)
    show = space_sub.add_parser("show", help="print a space: its question, fixed values and parameters")
    show.add_argument("name", help="built-in name, YAML path or module:function")
    from study.cli_query import add_commands

    add_commands(sub)  # best, report, ui
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command not in ("launch", "submit") and getattr(args, "storage", None) is None:
        args.storage = os.environ.get(STORAGE_ENV) or None  # launch: the spec's storage comes first
    try:
        if args.command in ("launch", "resume"):
            return _run(args)
        if args.command == "status":
            return _job_status(args) if args.job else _status(args)
        if args.command == "submit":
            return _submit(args)
        if args.command == "logs":
            return _logs(args)
        if args.command == "sync":
            return _sync(args)
        if args.command == "spaces":
            return _spaces()
        if args.command in ("best", "report", "ui"):
            from study.cli_query import run_command

            return run_command(args)
        return _space_show(args.name)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the study loop started
        print("interrupted; a study that had started can be continued with `study resume NAME`", file=sys.stderr)
        return 130
    except TrackingFailure as e:
        print(f"error: {e}\nThe study stopped; once MLflow works again, continue it with `study resume NAME`.", file=sys.stderr)
        return 1


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the command line overrides (None: not given)."""
    return {"trials": args.trials, "concurrency": args.concurrency, "storage": args.storage, "tracking_uri": args.tracking_uri}


def _run(args: argparse.Namespace) -> int:
    from study import engine
    from study.progress import LiveProgress, QuietProgress
    from study.spec import load_spec

    overrides = _overrides(args)
    if args.command == "launch":
        spec = with_env_defaults(load_spec(args.spec), args.storage, args.tracking_uri).with_overrides(**overrides)
    else:
        spec = with_env_defaults(engine.spec_from_storage(args.name, args.storage), args.storage, args.tracking_uri)
        spec = spec.with_overrides(**overrides)
        if "***" in spec.tracking_uri:
            raise SpecError(
                f"the stored tracking URI {spec.tracking_uri!r} had a password: pass it again with --tracking-uri or {TRACKING_ENV}"
            )
    try:
        prep = engine.prepare(spec)
    except SpecError as e:
        source = args.spec if args.command == "launch" else f"stored spec of {args.name!r}"
        raise SpecError(f"{source}: {e}") from None

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    warning = engine.local_storage_warning(prep.storage_url, args.address)
    if warning:
        say(warning)
    executor = engine.ray_executor(args.address)
    if args.quiet:
        result = engine.run(prep, resume=args.command == "resume", executor=executor, listener=QuietProgress(), say=say)
    else:
        with LiveProgress() as live:
            result = engine.run(prep, resume=args.command == "resume", executor=executor, listener=live, say=say)
    _report(result.study, spec)
    if not result.finished:
        print(
            f"interrupted: running trials were recorded as interrupted. Continue with: study resume {spec.name}", file=sys.stderr
        )
        return 130
    return 0


def _report(study: object, spec: object) -> None:
    from study.status import render, summarize

    s = summarize(study, spec.trials)  # type: ignore[arg-type, attr-defined]
    print(render(s, ", ".join(o.metric for o in spec.all_objectives)))  # type: ignore[attr-defined]
    uri = mask(spec.tracking_uri)  # type: ignore[attr-defined]
    if uri.startswith(("http://", "https://")):
        print(f"\nEvery epoch of every trial is in MLflow: open {uri} (experiment {spec.name!r})")  # type: ignore[attr-defined]
    else:
        name = spec.name  # type: ignore[attr-defined]
        print(
            f"\nEvery epoch of every trial is in MLflow. Open the UI (http://127.0.0.1:5000) with:\n"
            f"  study ui {name}        (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)\n"
            f"Best trials: study best {name}; report: study report {name}"
        )


def _submit(args: argparse.Namespace) -> int:
    from study.submit import submit

    overrides = _overrides(args)
    job_id, dash = submit(args.spec, args.address, overrides)
    print(f"submitted; follow it with: study logs {job_id} --address {dash} --follow", file=sys.stderr)
    print(f"its state: study status --job {job_id} --address {dash}", file=sys.stderr)
    print(job_id)
    return 0


def _job_status(args: argparse.Namespace) -> int:
    from study.submit import job_status

    status, message = job_status(args.job, args.address)
    print(f"job {args.job}: {status}" + (f" ({message})" if message else ""))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from study.submit import job_logs

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    status = job_logs(args.job_id, args.address, write, follow=args.follow)
    if args.follow:
        print(f"job {args.job_id}: {status}", file=sys.stderr)
        return 0 if status == "SUCCEEDED" else 1
    return 0


def _status(args: argparse.Namespace) -> int:
    if not args.name:
        raise SpecError("study status needs a study NAME (or --job JOB_ID --address URL for a submitted job)")
    import optuna

    from study import engine, storage
    from study.status import render, summarize

    spec = engine.spec_from_storage(args.name, args.storage)
    url = storage.check(args.storage, must_exist=True)
    study = optuna.load_study(study_name=args.name, storage=storage.open_storage(url))
    print(render(summarize(study, spec.trials), ", ".join(o.metric for o in spec.all_objectives)))
    return 0


def _sync(args: argparse.Namespace) -> int:
    from study import engine
    from study.sync import sync

    tracking = args.tracking_uri
    if tracking is None:
        tracking = with_env_defaults(engine.spec_from_storage(args.name, args.storage), args.storage, None).tracking_uri
    r = sync(args.name, args.storage, tracking)
    print(
        f"synced {args.name} to MLflow ({mask(tracking)}): {len(r.created)} run(s) created, {len(r.fixed)} completed, "
        f"{r.points} epoch point(s) of the objective metric filled in from Optuna"
        + (", parent run closed" if r.parent_closed else "")
    )
    if r.created or r.points:
        print("  (Optuna keeps the objective metric per epoch only: the other metrics of undelivered epochs are not in MLflow)")
    if r.skipped:
        print(f"  {len(r.skipped)} finished trial(s) of a driver still running were left to it: sync again once it ends")
    return 0


def _spaces() -> int:
    import search_spaces

    for name, description in search_spaces.builtin().items():
        print(f"{name}\n    {' '.join(description.split())}")
    return 0


def _space_show(name: str) -> int:
    import search_spaces

    try:
        space = search_spaces.load(name)
    except search_spaces.SpaceError as e:
        raise SpecError(str(e)) from None
    except (ImportError, AttributeError, OSError, ValueError) as e:
        raise SpecError(f"cannot load space {name!r} ({e}); built-in spaces: {', '.join(search_spaces.builtin())}") from None
    print(space.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
