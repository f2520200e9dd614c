"""Progress of a running study: a live rich display, or one log line per trial (--quiet).

The live view shows finished / running / pruned / failed trials, the best value so far and
an ETA (mean wall time per finished trial so far times the trials still to finish), and
the running trials with their epoch and current value.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from study.driver import Driver, Listener
from study.outcomes import Outcome


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def headline(d: Driver) -> str:
    c = d.counts
    failed = sum(v for k, v in c.items() if k not in ("completed", "early_stopped", "pruned") and k != "interrupted")
    best = "-" if d.best is None else f"{_fmt(d.best[1][0])} (trial {d.best[0]})"
    return (
        f"{d.spec.name}: finished {d.decisions.counted}/{d.decisions.target} · running {len(d.running)} · "
        f"pruned {c.get('pruned', 0)} · failed {failed} · best {d.spec.all_objectives[0].metric} {best} · "
        f"elapsed {_clock(time.monotonic() - d.started)} · ETA {_clock(d.eta_seconds())}"
    )


def end_line(number: int, outcome: Outcome, driver: Driver) -> str:
    value = "" if not outcome.values else " " + ", ".join(_fmt(v) for v in outcome.values)
    extra = ""
    if outcome.reason == "pruned":
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

    def _render(self, d: Driver) -> Group:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for col in ("trial", "epoch", d.spec.all_objectives[0].metric, "running for"):
            table.add_column(col, justify="right")
        now = time.monotonic()
        for r in sorted(d.running.values(), key=lambda r: r.number):
            epochs = getattr(r.config, "epochs", "?")
            since = _clock(now - r.started) if r.started else "queued"
            table.add_row(str(r.number), f"{r.epoch}/{epochs}", _fmt(r.value), since)
        return Group(Text(headline(d), style="bold"), table)

    def on_trial_end(self, driver: Driver, number: int, outcome: Outcome) -> None:
        self.console.print(end_line(number, outcome, driver), highlight=False)

    def on_tick(self, driver: Driver) -> None:
        if self.live is not None:
            self.live.update(self._render(driver))


class QuietProgress(Listener):
    """One plain line per finished trial, with the running totals, for logs."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def on_trial_end(self, driver: Driver, number: int, outcome: Outcome) -> None:
        print(f"{end_line(number, outcome, driver)} | {headline(driver)}", file=self.stream, flush=True)
