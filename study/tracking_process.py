"""The MLflow writer in its own process, so recording overlaps with running the study.

MLflow's SQLAlchemy store spends most of a write in Python (about 25 ms of CPU per trial:
create the run, one batch of params/metrics/tags, terminate), which in the driver's thread
would stall the loop. `TrackerProcess` has `Tracker`'s interface and forwards every call
over a pipe to a child process that owns the `MlflowClient`; the driver goes on at once.

It is still the driver writing: the child is the driver's, holds the only MLflow client
and is fed only by it; order is kept (one pipe, one reader). The pipe to the child holds
up to 1 MiB, so the driver does not wait while the child starts (importing MLflow takes a
second or so). If the driver dies, even by SIGKILL, the child still reads everything
already sent (a pipe delivers its data before its end), writes it and exits: what the
driver handed over is never lost, and the runs it never ended stay RUNNING for ``study
resume`` to reconcile. The child ignores SIGINT (Ctrl-C is the driver's to handle). An
error in the child stops the study at the driver's next call (`TrackingFailure`).

For an SQLite tracking store the child puts the database in WAL mode with
``synchronous=NORMAL``: one sync per checkpoint instead of several per commit. A crash of
the process loses nothing; a power cut may lose the last commits, never the database.
"""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from study.tracking import Tracker, TrackingFailure

_SYNC = ("end_study", "flush", "trial_runs", "fix_run")
_F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity


def _sqlite_pragmas() -> None:
    """WAL and synchronous=NORMAL on every SQLite connection this process opens."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()


def _serve(inbox: Any, outbox: Any, uri: str, flush_seconds: float, inherited: tuple[int, ...] = ()) -> None:
    """The child: apply each call to a real `Tracker`; flush on a timer and at the end.
    `inherited`: the driver's ends of the pipes, which a forked child must close, or it
    would never see the driver's end of the pipe."""
    for fd in inherited:
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if uri.startswith("sqlite:"):
            _sqlite_pragmas()
        tracker = Tracker(uri, flush_seconds=flush_seconds)
    except Exception as e:  # noqa: BLE001 - reported to the driver
        outbox.send(("error", f"cannot open the tracking store: {type(e).__name__}: {e}"))
        return
    while True:
        try:
            if not inbox.poll(max(0.0, flush_seconds - (time.monotonic() - tracker._last_flush))):
                tracker.flush()
                continue
            name, args = inbox.recv()
        except (EOFError, OSError):  # the driver is gone: keep what it sent, leave runs as they are
            tracker.flush()
            return
        if name == "close":
            outbox.send(("reply", None))
            return
        try:
            result = getattr(tracker, name)(*args)
        except Exception as e:  # noqa: BLE001 - reported to the driver, which stops
            outbox.send(("error", f"{name}: {type(e).__name__}: {e}"))
            continue
        if name == "start_study":
            outbox.send(("parent", result))
        elif name in _SYNC:
            outbox.send(("reply", result))


class TrackerProcess:
    """`Tracker`'s interface, executed by a child process (see the module docstring).

    `on_parent(run_id)` is called (in this process) when the study's parent run exists."""

    def __init__(self, uri: str, *, flush_seconds: float = 2.0, on_parent: Callable[[str], None] | None = None) -> None:
        import ray

        self.uri = uri
        self.parent_id = ""
        self.on_parent = on_parent
        # fork is cheap and safe before Ray starts its threads (the CLI); spawn after
        method = "spawn" if ray.is_initialized() else "fork"
        ctx = mp.get_context(method)
        child_in, self._out = ctx.Pipe(duplex=False)
        self._in, child_out = ctx.Pipe(duplex=False)
        try:
            fcntl.fcntl(self._out.fileno(), _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # a smaller pipe only means the driver may wait for the child sooner
        inherited = (self._out.fileno(), self._in.fileno()) if method == "fork" else ()
        args = (child_in, child_out, uri, flush_seconds, inherited)
        self._proc = ctx.Process(target=_serve, args=args, name="hpstudy-mlflow-writer", daemon=True)
        self._proc.start()
        child_in.close()
        child_out.close()

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, name: str, *args: Any) -> Any:
        try:
            self._out.send((name, args))
        except (BrokenPipeError, OSError):
            self._check_dead()
        if name in _SYNC:
            return self._answer("reply")
        return None

    def _answer(self, kind: str) -> Any:
        while True:
            msg, value = self._receive()
            if msg == kind:
                return value

    def _receive(self) -> tuple[str, Any]:
        try:
            msg, value = self._in.recv()
        except EOFError:
            self._check_dead()
            raise
        if msg == "error":
            raise TrackingFailure(f"MLflow ({self.uri}): {value}")
        if msg == "parent":
            self.parent_id = value
            if self.on_parent is not None:
                self.on_parent(value)
        return msg, value

    def _check_dead(self) -> None:
        while self._in.poll():  # an error it sent before dying says more than its exit code
            self._receive()
        raise TrackingFailure(f"the MLflow writer process stopped (exit code {self._proc.exitcode})")

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._out.send(("close", ()))
                self._answer("reply")
            except (TrackingFailure, EOFError, OSError):
                pass
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
        self._out.close()
        self._in.close()

    # -- Tracker's interface --------------------------------------------------------------
    def start_study(
        self, name: str, spec: dict[str, Any], spec_yaml: str, parent_run_id: str | None = None, uid: str = ""
    ) -> None:
        """Asynchronous: the parent run's id arrives later (`parent_id`, `on_parent`)."""
        self._call("start_study", name, spec, spec_yaml, parent_run_id, uid)

    def study_progress(self, metrics: dict[str, float], step: int) -> None:
        self._call("study_progress", metrics, step)

    def end_study(self, status: str, summary: dict[str, float] | None = None) -> None:
        self._call("end_study", status, summary)

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str]) -> None:
        self._call("start_trial", number, params, tags)

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        self._call("log_epoch", number, epoch, metrics)

    def end_trial(self, number: int, state: str, status: str, tags: dict[str, str], summary: dict[str, float]) -> None:
        self._call("end_trial", number, state, status, tags, summary)

    def maybe_flush(self) -> None:
        """The writer flushes on its own timer; here, only take in what it reported."""
        while self._in.poll():
            self._receive()

    def flush(self) -> None:
        self._call("flush")

    def trial_runs(self) -> dict[int, dict[str, str]]:
        return self._call("trial_runs")

    def fix_run(self, run_id: str, state: str, status: str, tags: dict[str, str]) -> None:
        self._call("fix_run", run_id, state, status, tags)
