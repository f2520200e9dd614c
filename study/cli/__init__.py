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
    study list             [--storage URL]
    study delete NAME      [--yes] [--storage URL] [--tracking-uri URI]
    study --version
    study lessons
    study lesson NAME|all  [--seeds N] [--dataset D] [--name STUDY] [run flags as for launch]
    study confirm NAME     [--top K] [--seeds N] [--name STUDY] [run flags as for launch]

Where the storage and the tracking URI come from, first found wins: the flag, the spec (for
`resume`: the stored spec), the environment (``HPSTUDY_STORAGE``, ``MLFLOW_TRACKING_URI``),
the default. Passing credentials by environment keeps passwords off command lines (`ps`
shows those to every user).

Exit codes: 0 done, 2 bad input (one message, nothing written), 130 interrupted (resumable
with `study resume NAME`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from study.cli import jobs, lessons, manage, queries, runs
from study.spec import SpecError
from study.stores.tracker import TrackingFailure
from study.stores.uris import STORAGE_ENV, StorageError, from_env


def version() -> str:
    """The installed hpstudy version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("hpstudy")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="study", description="Distributed hyperparameter studies: Optuna decides, Ray runs, MLflow records."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s (hpstudy) {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    runs.add_commands(sub)  # launch, resume, status, sync, spaces, space show
    jobs.add_commands(sub)  # submit, logs
    queries.add_commands(sub)  # best, report, ui
    manage.add_commands(sub)  # list, delete
    lessons.add_commands(sub)  # lessons, lesson, confirm
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    storage_from_env = False
    if args.command not in ("launch", "submit") and getattr(args, "storage", None) is None:
        args.storage = os.environ.get(STORAGE_ENV) or None  # launch: the spec's storage comes first
        storage_from_env = args.storage is not None
    try:
        try:
            return int(args.func(args))
        except StorageError as e:  # the storage URL is bad: say so if the environment gave it
            raise from_env(STORAGE_ENV, e) if storage_from_env else e from None
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the study loop started
        print("interrupted; a study that had started can be continued with `study resume NAME`", file=sys.stderr)
        return 130
    except TrackingFailure as e:
        print(f"error: {e}\nThe study stopped; once MLflow works again, continue it with `study resume NAME`.", file=sys.stderr)
        return 1
