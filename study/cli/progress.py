"""Progress of a running study: a live rich display, or one log line per trial (--quiet),
fed the driver's `Snapshot` (never the driver itself).

The live view shows finished / running / pruned / failed trials, the best value so far and
an ETA (mean wall time per finished trial so far times the trials still to finish), and
the running trials with their epoch and current value.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from study.record import Outcome, StopReason
from study.run.driver import Listener, Snapshot


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def headline(s: Snapshot) -> str:
    best = "-" if s.best is None else f"{_fmt(s.best[1])} (trial {s.best[0]})"
    return (
        f"{s.name}: finished {s.finished}/{s.target} · running {len(s.running)} · "
        f"pruned {s.pruned} · failed {s.failed} · best {s.metric} {best} · "
        f"elapsed {_clock(s.elapsed)} · ETA {_clock(s.eta)}"
    )


def end_line(number: int, outcome: Outcome) -> str:
    value = "" if not outcome.values else " " + ", ".join(_fmt(v) for v in outcome.values)
    extra = ""
    if outcome.reason is StopReason.PRUNED:
        extra = f" at epoch {outcome.attrs.get('pruned_step')}"
    elif outcome.message:
        extra = f": {outcome.message}"
    return f"trial {number} {outcome.reason}{value}{extra}"


class LiveProgress(Listener):
    """A rich Live view, refreshed on every turn of the driver loop."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live: Live | None = None

    def __enter__(self) -> LiveProgress:
        self.live = Live(console=self.console, refresh_per_second=4, transient=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _render(self, s: Snapshot) -> Group:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for col in ("trial", "epoch", s.metric, "running for"):
            table.add_column(col, justify="right")
        for r in s.running:
            since = _clock(r.seconds) if r.seconds is not None else "queued"
            table.add_row(str(r.number), f"{r.epoch}/{r.epochs if r.epochs is not None else '?'}", _fmt(r.value), since)
        return Group(Text(headline(s), style="bold"), table)

    def on_trial_end(self, number: int, outcome: Outcome, snapshot: Snapshot) -> None:
        self.console.print(end_line(number, outcome), highlight=False)

    def on_tick(self, snapshot: Snapshot) -> None:
        if self.live is not None:
            self.live.update(self._render(snapshot))


class QuietProgress(Listener):
    """One plain line per finished trial, with the running totals, for logs."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def on_trial_end(self, number: int, outcome: Outcome, snapshot: Snapshot) -> None:
        print(f"{end_line(number, outcome)} | {headline(snapshot)}", file=self.stream, flush=True)
