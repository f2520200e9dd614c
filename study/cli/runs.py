"""The commands that run or settle a study, and look at it in storage: ``launch``,
``resume``, ``status``, ``sync``, ``spaces``, ``space show``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from study.cli.progress import LiveProgress, QuietProgress
from study.spec import SpecError, StudySpec, load_spec
from study.stores.uris import STORAGE_ENV, TRACKING_ENV, EnvError, is_server, mask, unmasked_tracking, with_env_defaults

ORDER = "first found wins: this flag, the spec, env {env}, the default"


def add_commands(sub: Any) -> None:
    launch = sub.add_parser("launch", help="run the study a spec describes")
    launch.add_argument("spec", help="YAML spec file")
    _run_flags(launch)
    launch.set_defaults(func=run)
    resume = sub.add_parser("resume", help="continue a stopped or killed study")
    resume.add_argument("name", help="the study's name (as in its spec; `study list` shows them)")
    _run_flags(resume)
    resume.set_defaults(func=run)
    status = sub.add_parser("status", help="counts by state, best so far, running trials (or a submitted job's state)")
    status.add_argument("name", nargs="?", help="the study's name (or use --job for a submitted job)")
    status.add_argument("--job", help="a Ray job id from `study submit`: show its state instead")
    status.add_argument("--address", help="with --job: Ray dashboard / Jobs API, http://HEAD:8265")
    status.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    status.set_defaults(func=show_status)
    sync = sub.add_parser("sync", help="fill MLflow in from Optuna storage (after an MLflow outage); idempotent")
    sync.add_argument("name", help="the study's name (as in its spec; `study list` shows them)")
    sync.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    sync.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        help=f"MLflow tracking URI (default: the study's, else env {TRACKING_ENV} when the stored one had a password)",
    )
    sync.set_defaults(func=sync_mlflow)
    spaces = sub.add_parser("spaces", help="list the built-in search spaces")
    spaces.set_defaults(func=list_spaces)
    space = sub.add_parser("space", help="about one search space")
    space_sub = space.add_subparsers(dest="space_command", required=True)
    show = space_sub.add_parser("show", help="print a space: its question, fixed values and parameters")
    show.add_argument("name", help="built-in name, YAML path or module:function")
    show.set_defaults(func=show_space)


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, help="number of finished trials to reach (overrides the spec)")
    p.add_argument("--concurrency", type=int, help="trials in flight (default: what the Ray cluster's CPUs hold)")
    p.add_argument("--address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument(
        "--storage", help=f"Optuna storage URL ({ORDER.format(env=STORAGE_ENV)}: journal file .hpstudy/optuna.journal)"
    )
    p.add_argument(
        "--tracking-uri", dest="tracking_uri", help=f"MLflow tracking URI ({ORDER.format(env=TRACKING_ENV)}: sqlite:///mlflow.db)"
    )
    p.add_argument(
        "--time-budget",
        dest="time_budget",
        help="no trial starts after this long (90s, 30m, 2h; overrides the spec's time_budget); running trials finish",
    )
    p.add_argument("--quiet", action="store_true", help="one log line per trial instead of the live display")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the command line overrides (None: not given)."""
    return {
        "trials": args.trials,
        "concurrency": args.concurrency,
        "storage": args.storage,
        "tracking_uri": args.tracking_uri,
        "time_budget": getattr(args, "time_budget", None),
    }


def run(args: argparse.Namespace) -> int:
    """``launch`` and ``resume``. Exit code 0 when the study ran to its end (or its time
    budget) with at least one successful trial, 1 when none of its trials succeeded (the most
    common error is named), 130 when interrupted."""
    from study.query.verdict_report import conclude, render
    from study.run import launch as launching
    from study.run.prepare import prepare

    if args.command == "launch":
        spec = with_env_defaults(load_spec(args.spec), args.storage, args.tracking_uri).with_overrides(**overrides(args))
    else:
        spec = with_env_defaults(launching.spec_from_storage(args.name, args.storage), args.storage, args.tracking_uri)
        spec = spec.with_overrides(**overrides(args))
        unmasked_tracking(spec.tracking_uri)  # a stored URI whose password was masked needs it again
    try:
        prep = prepare(spec)
    except EnvError:
        raise  # names its environment variable, not the spec
    except SpecError as e:
        source = args.spec if args.command == "launch" else f"stored spec of {args.name!r}"
        raise SpecError(f"{source}: {e}") from None

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    warning = launching.local_storage_warning(prep.storage_url, args.address)
    if warning:
        say(warning)
    executor = launching.ray_executor(args.address)
    resume = args.command == "resume"
    if args.quiet:
        result = launching.run_study(prep, resume=resume, executor=executor, listener=QuietProgress(), say=say, conclude=conclude)
    else:
        with LiveProgress() as live:
            result = launching.run_study(prep, resume=resume, executor=executor, listener=live, say=say, conclude=conclude)
    cmd = launching.study_command()
    print_summary(result, spec, cmd)
    if result.verdict is not None:  # a comparison
        print(f"\nverdict of {spec.name}: {render(result.verdict)}")
    if spec.confirm is not None and result.finished and result.succeeded >= 2:
        confirmed = confirm_winners(prep, args, say)
        if not confirmed.finished:
            print(f"interrupted: continue the confirmation with: {cmd} confirm {spec.name} --top {spec.confirm.top} "
                  f"--seeds {spec.confirm.seeds}", file=sys.stderr)  # fmt: skip
            return 130
    if not result.finished:
        print(
            f"interrupted: running trials were recorded as interrupted. Continue with: {cmd} resume {spec.name}", file=sys.stderr
        )
        return 130
    if result.succeeded == 0:
        print(f"error: {no_success(result, spec)}", file=sys.stderr)
        return 1
    return 0


def confirm_winners(prep: Any, args: argparse.Namespace, say: Callable[[str], None]) -> Any:
    """The spec's ``confirm:``: re-train the search's top trials on fresh seeds and print their
    ranking, as `study confirm` does."""
    from study.cli.lessons import run_confirmation

    spec = prep.spec
    assert spec.confirm is not None
    return run_confirmation(
        spec.name, quiet=args.quiet, address=args.address, top=spec.confirm.top, seeds=spec.confirm.seeds,
        storage=prep.storage_url, tracking_uri=unmasked_tracking(spec.tracking_uri), concurrency=spec.concurrency, say=say,
    )  # fmt: skip


def no_success(result: Any, spec: StudySpec) -> str:
    """Why a study has no successful trial: its most common error and how many had it."""
    error = result.common_error()
    n = result.tally.finished
    if error is not None:
        message, count = error
        return (
            f"no trial of study {spec.name!r} succeeded ({n} finished, all failed); most common error ({count} of {n}): {message}"
        )
    if result.budget_reached:
        return f"no trial of study {spec.name!r} finished within its time budget"
    return f"no trial of study {spec.name!r} succeeded ({n} finished)"


def print_summary(result: Any, spec: StudySpec, cmd: str = "study") -> None:
    """What a launch prints at its end: the study's status, what MLflow holds (only what is
    true) and where to look next."""
    from study.query.status import render, summarize

    print(render(summarize(result.study, spec.trials), ", ".join(o.metric for o in spec.all_objectives)))
    uri = mask(spec.tracking_uri)
    if not result.mlflow_complete:
        print(f"\nMLflow ({uri}) is missing part of this study (Optuna has all of it); once MLflow works: {cmd} sync {spec.name}")
    else:
        held = (
            "Every epoch of every trial is in MLflow"
            if not result.mlflow_lost
            else f"Every trial is in MLflow ({result.mlflow_repaired} run(s) filled in from Optuna: objective metric only "
            "for the epochs MLflow missed)"
        )
        if is_server(uri):
            print(f"\n{held}: open {uri} (experiment {spec.name!r})")
        else:
            print(
                f"\n{held}. Open the UI (http://127.0.0.1:5000) with:\n"
                f"  {cmd} ui {spec.name}        (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)"
            )
    print(f"Best trials: {cmd} best {spec.name}; report: {cmd} report {spec.name}")


def show_status(args: argparse.Namespace) -> int:
    if args.job:
        from study.cli.jobs import job_status

        return job_status(args)
    if not args.name:
        raise SpecError("study status needs a study NAME (or --job JOB_ID --address URL for a submitted job)")
    from study.query.status import render, summarize
    from study.stores.optuna_storage import load_stored

    study, spec, _ = load_stored(args.name, args.storage)
    print(render(summarize(study, spec.trials), ", ".join(o.metric for o in spec.all_objectives)))
    return 0


def sync_mlflow(args: argparse.Namespace) -> int:
    from study.run.reconcile import sync
    from study.stores.optuna_storage import load_stored

    tracking = args.tracking_uri
    if tracking is None:
        tracking = unmasked_tracking(load_stored(args.name, args.storage)[1].tracking_uri)
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


def list_spaces(args: argparse.Namespace) -> int:
    import search_spaces

    for name, description in search_spaces.builtin().items():
        print(f"{name}\n    {' '.join(description.split())}")
    return 0


def show_space(args: argparse.Namespace) -> int:
    import search_spaces

    try:
        space = search_spaces.load(args.name)
    except search_spaces.SpaceError as e:
        raise SpecError(str(e)) from None
    except (ImportError, AttributeError, OSError, ValueError) as e:
        raise SpecError(f"cannot load space {args.name!r} ({e}); built-in spaces: {', '.join(search_spaces.builtin())}") from None
    print(space.describe())
    return 0
