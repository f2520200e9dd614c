"""The query commands of `study`: ``best``, ``report`` and ``ui``.

study best NAME [-k 5] [--where EXPR] [--scope best|last] [--json] [--storage URL] [--tracking-uri URI]
study report NAME [--output PATH] [--storage URL] [--tracking-uri URI]
study ui [NAME] [--tracking-uri URI] [--port 5000] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from typing import Any

from study.spec import SpecError
from study.stores.uris import is_server, mask, unmasked_tracking

#: Columns `study best` prints before the hyperparameters.
BEST_COLUMNS = ("number", "value", "state", "stop_reason", "best_epoch", "stopped_epoch", "gap_at_best", "n_params")


def _stores(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna storage URL (default: .hpstudy/optuna.journal)")
    p.add_argument(
        "--tracking-uri", dest="tracking_uri", help="MLflow tracking URI (default: the one the study was launched with)"
    )


def add_commands(sub: Any) -> None:
    best = sub.add_parser("best", help="the best trials, as a table or JSON")
    best.add_argument("name")
    best.add_argument("-k", type=int, default=5, help="how many (default 5)")
    best.add_argument("--where", help="filter, e.g. \"gap_at_best < 0.05 and optimizer == 'adam'\"")
    best.add_argument("--scope", choices=["best", "last"], default="best", help="objective at the best or the last epoch")
    best.add_argument("--json", action="store_true", help="one JSON array of trial objects")
    _stores(best)
    best.set_defaults(func=best_command)
    report = sub.add_parser("report", help="write the HTML report and log it to the study's MLflow run")
    report.add_argument("name")
    report.add_argument("--output", help="HTML file to write (default NAME-report.html)")
    _stores(report)
    report.set_defaults(func=report_command)
    ui = sub.add_parser("ui", help="start the MLflow UI on the study's tracking store (localhost)")
    ui.add_argument("name", nargs="?", help="study whose tracking store to open (default: sqlite:///mlflow.db)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    _stores(ui)
    ui.set_defaults(func=ui_command)


def _load(args: argparse.Namespace) -> Any:
    from study.query.handle import load

    return load(args.name, storage=args.storage, tracking_uri=args.tracking_uri)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _jsonable(v.item())
    if isinstance(v, tuple):
        return list(v)
    return v


def best_command(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise SpecError(f"-k must be >= 1, got {args.k}")
    handle = _load(args)
    try:
        df = handle.best_trials(k=args.k, where=args.where, scope=args.scope)
    except ValueError as e:
        raise SpecError(str(e)) from None
    hp = [c for c in df.attrs.get("hyperparameters", []) if c in df]  # the fields that vary among completed trials
    value_cols = [c for c in df.columns if c == "value" or c.startswith("value_")]
    cols = [c for c in (*BEST_COLUMNS[:1], *value_cols, *BEST_COLUMNS[2:], *hp, "run_id") if c in df]
    if args.json:
        rows = [{c: _jsonable(r[c]) for c in cols} for _, r in df.iterrows()]
        print(json.dumps(rows, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    objective = ", ".join(handle.objectives)
    table = Table(
        title=f"{handle.name}: best {len(df)} by {objective}" + (f" ({args.scope} epoch)" if len(handle.objectives) == 1 else "")
    )
    for c in cols:
        table.add_column(
            c, justify="right" if c not in ("state", "stop_reason", "optimizer", "activation", "schedule", "run_id") else "left"
        )
    for _, r in df.iterrows():
        table.add_row(*[_fmt(r[c]) for c in cols])
    Console(width=max(160, len(cols) * 12)).print(table)
    if df.empty:
        print("no completed trial matches", file=sys.stderr)
    return 0


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def report_command(args: argparse.Namespace) -> int:
    handle = _load(args)
    try:
        rep = handle.report(args.output)
    except OSError as e:
        raise SpecError(f"--output {args.output or handle.name + '-report.html'!r}: {e.strerror or e}") from None
    print(f"report: {rep.html_path} ({len(rep.figures)} figures)")
    if handle.parent_run_id:
        print(f"logged to MLflow run {handle.parent_run_id} (artifacts report/) in {handle.tracking_uri}")
    return 0


def ui_command(args: argparse.Namespace) -> int:
    uri = args.tracking_uri
    if uri is None and args.name:
        from study.stores.optuna_storage import load_stored

        uri = load_stored(args.name, args.storage)[1].tracking_uri
    uri = uri or "sqlite:///mlflow.db"
    if is_server(uri):
        print(f"{args.name or 'this study'} is tracked by an MLflow server: open {mask(uri)}")
        return 0
    uri = unmasked_tracking(uri)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding the MLflow UI to {args.host}: anyone who can reach this machine can read it", file=sys.stderr)
    url = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {url} (tracking store {uri}); Ctrl-C stops it", flush=True)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0
