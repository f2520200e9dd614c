"""The query commands of `study`: ``best``, ``report`` and ``ui``.

study best NAME [-k 5] [--where EXPR] [--scope best|last] [--json] [--storage URL] [--tracking-uri URI]
study report NAME [--output PATH] [--storage URL] [--tracking-uri URI]
study ui [NAME] [--tracking-uri URI] [--port 5000] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from typing import Any

from study.record import TEST_METRICS, TrialRecord
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
    best.add_argument("name", help="the study's name (as in its spec; `study list` shows them)")
    best.add_argument("-k", type=int, default=5, help="how many (default 5)")
    best.add_argument("--where", help="filter, e.g. \"gap_at_best < 0.05 and optimizer == 'adam'\"")
    best.add_argument("--scope", choices=["best", "last"], default="best", help="objective at the best or the last epoch")
    best.add_argument("--json", action="store_true", help="one JSON array of trial objects")
    _stores(best)
    best.set_defaults(func=best_command)
    report = sub.add_parser("report", help="write the HTML report and log it to the study's MLflow run")
    report.add_argument("name", help="the study's name (as in its spec; `study list` shows them)")
    report.add_argument("--output", help="HTML file to write (default NAME-report.html)")
    _stores(report)
    report.set_defaults(func=report_command)
    ui = sub.add_parser("ui", help="start the MLflow UI on the study's tracking store (localhost)")
    ui.add_argument("name", nargs="?", help="study whose tracking store to open (default: sqlite:///mlflow.db)")
    ui.add_argument("--port", type=int, default=5000, help="port of the MLflow UI (default 5000)")
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
    searched = [c for c in df.attrs.get("searched", []) if c in df]  # over the whole study (no second read of it)
    value_cols = [c for c in df.columns if c == "value" or c.startswith("value_")]
    tests = [c for c in TEST_METRICS if c in df and df[c].notna().any()]
    budget = ["n_params_budget"] if "n_params_budget" in df and df["n_params_budget"].notna().any() else []
    base = [c for c in (*BEST_COLUMNS[:1], *value_cols, *BEST_COLUMNS[2:], *budget) if c in df]
    if args.json:
        shown = {int(n) for n in df["number"]} if "number" in df else set()
        records = {t.number: TrialRecord.of(t) for t in handle.optuna.get_trials(deepcopy=False) if t.number in shown}
        print(
            json.dumps(
                [_json_row(r, base + tests + ["run_id"], records.get(int(r["number"]))) for _, r in df.iterrows()], indent=2
            )
        )
        return 0
    objective = ", ".join(handle.objectives)
    title = f"{handle.name}: best {len(df)} by {objective}" + (f" ({args.scope} epoch)" if len(handle.objectives) == 1 else "")
    from rich.console import Console

    console = Console(highlight=False)
    key = ["number", *value_cols]
    print_tables(console, title, df, key, [c for c in base if c not in key] + searched + tests)
    if searched:
        console.print(f"searched: {', '.join(searched)} (a blank cell: no effect on that trial); every other setting was fixed")
    if tests:
        from study.query.handle import TEST_NOTE

        console.print(TEST_NOTE)
    if df.empty:
        print("no completed trial matches", file=sys.stderr)
    if handle.spec.compare is None:
        for line in selection_lines(handle.selection(), handle.name):
            console.print(line)
    return 0


def selection_lines(sel: dict[str, Any], name: str) -> list[str]:
    """How the winner was chosen (`StudyHandle.selection`), in a few lines."""
    if sel["winner"] is None:
        return [f"ranked by {sel['rule']}"]
    lines = [f"winner: trial {sel['winner']}, ranked by {sel['rule']}"]
    for c in sel["confirmations"]:
        if "error" in c:
            lines.append(f"confirmation {c['study']}: no ranking yet ({c['error']})")
        else:
            lines.append(f"confirmation {c['study']} ({c['seeds']} fresh seeds): {c['text']}")
    if not sel["confirmations"]:
        lines.append(f"not confirmed on fresh seeds: `study confirm {name}` re-trains the top 3 on 5 seeds and ranks them")
    return lines


def _json_row(row: Any, cols: list[str], record: TrialRecord | None) -> dict[str, Any]:
    """One trial as JSON: the columns, every setting the trial used (`TrainConfig.used`) and
    ``searched``, the settings the search chose (null when the study did not record them)."""
    out = {c: _jsonable(row[c]) for c in cols if c in row}
    config = record.config if record is not None else None
    if config is not None:
        out.update({k: _jsonable(v) for k, v in config.used().items() if k not in out})
    out["searched"] = record.searched if record is not None else None
    return out


def print_tables(console: Any, title: str, df: Any, key: list[str], rest: list[str]) -> None:
    """`df` as rich tables that fit the console, no cell cut: the `key` columns and ``run_id``
    (never cut) with as many of the `rest` columns as fit beside them, in order; the columns
    that do not fit go to further tables, each starting with the `key` columns again."""
    run_id = ["run_id"] if "run_id" in df else []
    groups: list[list[str]] = []
    current = [*key, *run_id]
    for c in rest:
        if _width(console, df, [*current, c]) <= console.width:
            current.insert(len(current) - len(run_id) if not groups else len(current), c)
        else:
            groups.append(current)
            current = [*key, c]
    groups.append(current)
    for i, cols in enumerate(groups):
        console.print(_table(df, cols, title if i == 0 else None))


def _table(df: Any, cols: list[str], title: str | None) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for c in cols:
        left = c in ("state", "stop_reason", "optimizer", "activation", "schedule", "loss", "init", "monitor", "run_id")
        width = max([len(c), *(len(_fmt(v)) for v in df[c])]) if c in df else len(c)
        table.add_column(
            c, justify="left" if left else "right", no_wrap=True, min_width=width if c in ("run_id", "number") else None
        )
    for _, r in df.iterrows():
        table.add_row(*[_fmt(r[c]) for c in cols])
    return table


def _width(console: Any, df: Any, cols: list[str]) -> int:
    from rich.measure import Measurement

    table = _table(df, cols, None)
    return Measurement.get(console, console.options.update(max_width=1_000_000), table).maximum


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


#: The MLflow UI server without its GenAI job runner (a Huey consumer and its workers: seven
#: processes, about 1.9 GiB, that a study never uses); MLflow 3.17 reads this at start.
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def runs_url(base: str, experiment_id: str | None) -> str:
    """The MLflow UI page of an experiment's runs (the trials nested under the study's run)."""
    return f"{base}/#/experiments/{experiment_id}/runs" if experiment_id is not None else base


def ui_command(args: argparse.Namespace) -> int:
    """``study ui [NAME]``: MLflow's UI on the study's tracking store (job runner off), and the
    direct URL of the study's runs."""
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
    exp_id = None
    if args.name:
        from study.stores.runs import RunReader

        exp_id = RunReader(uri).experiment_id(args.name)
    print(f"MLflow UI on {url} (tracking store {mask(uri)}); Ctrl-C stops it", flush=True)
    if exp_id is not None:
        print(f"the study's runs: {runs_url(url, exp_id)}  (expand the study's run to see its trials)", flush=True)
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
        return subprocess.call(cmd, env={**os.environ, **UI_ENV})
    except KeyboardInterrupt:
        return 0
