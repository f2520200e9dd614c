"""The MLflow writer in its own process, so recording overlaps with running the study.

MLflow's SQLAlchemy store spends most of a write in Python (about 25 ms of CPU per trial:
create the run, one batch of params/metrics/tags, terminate), which in the driver's thread
would stall the loop. `TrackerProcess` implements `study.stores.tracker.Tracker` and forwards every call
over a pipe to a child process that owns the `MlflowClient`; the driver goes on at once.

It is still the driver writing: the child is the driver's, holds the only MLflow client
and is fed only by it; order is kept (one pipe, one reader). The pipe to the child holds
up to 1 MiB, so the driver does not wait while the child starts (importing MLflow takes a
second or so). If the driver dies, even by SIGKILL, the child still reads everything
already sent (a pipe delivers its data before its end), writes it and exits: what the
driver handed over is never lost, and the runs it never ended stay RUNNING for ``study
resume`` to reconcile. The child is a fresh interpreter (``python -m
study.stores.writer``) holding only its two pipe ends, in a session of its own: no
state or descriptors shared with the driver's Ray connection, no re-import of the caller's
``__main__``, and the terminal's Ctrl-C goes to the driver alone. The tracking URI goes
through the pipe, so a password in it never shows in ``ps``. An error in the child stops
the study at the driver's next call (`TrackingFailure`), except an MLflow server that stops
answering: the study goes on, the writes meant for it are dropped and counted (`_Outage`),
and `study sync NAME` fills MLflow in from Optuna afterwards. A run that lost some of its
writes but was ended once the server was back is tagged ``hpstudy.incomplete``, so that the
reconciliation (`study.run.reconcile`) repairs it too.

For an SQLite tracking store the child puts the database in WAL mode with
``synchronous=NORMAL``: one sync per checkpoint instead of several per commit. A crash of
the process loses nothing; a power cut may lose the last commits, never the database.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from study.record import Tag, TrialRecord
from study.stores.tracker import MlflowTracker, RunInfo, TrackingFailure
from study.stores.uris import is_server, mask

#: Calls whose reply the driver waits for.
_SYNC = ("end_study", "flush", "trial_runs", "repair_trial", "close_parent")
#: Calls that need the server's answer: never dropped during an outage.
_NEEDS_SERVER = ("trial_runs", "repair_trial", "close_parent")
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


#: Calls about one trial's run: skipped for a trial whose run could not be created.
_TRIAL_CALLS = ("tag_trial", "log_epoch", "end_trial")
#: MLflow's HTTP client retries a refused connection for minutes by default; the writer
#: retries on its own (below), so each request gives up quickly.
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class _Outage:
    """An MLflow server that stopped answering: calls are dropped (not queued: Optuna has what
    `study sync` needs to fill MLflow in) until ``/health`` answers again, probed every
    `probe_seconds`. Trials whose run could not be created are skipped to their end."""

    def __init__(self, uri: str, probe_seconds: float = 2.0) -> None:
        self.uri = uri
        self.probe_seconds = probe_seconds
        self.down = False
        self.lost = 0  # calls not delivered
        self.no_run: set[int] = set()  # trials without a run
        self.lossy: set[int] = set()  # trials with a run that lost some writes
        self._probed = 0.0

    def server_up(self) -> bool:
        import urllib.request

        self._probed = time.monotonic()
        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=3) as r:
                return bool(r.status == 200)
        except (OSError, ValueError):
            return False

    def skip(self, name: str, args: tuple[Any, ...], tracker: MlflowTracker) -> bool:
        """Whether to drop this call (counting it as lost)."""
        if name in _TRIAL_CALLS and args[0] in self.no_run:
            if name == "end_trial":
                self.no_run.discard(args[0])
            self.lost += 1
            return True
        if self.down and time.monotonic() - self._probed >= self.probe_seconds:
            self.down = not self.server_up()
        if not self.down:
            if name == "end_trial" and args[0] in self.lossy:  # args: number, state, status, tags, summary
                self.lossy.discard(args[0])
                args[3][Tag.INCOMPLETE] = "true"
            return False
        self.dropped(name, args, tracker)
        return True

    def failed(self, name: str, args: tuple[Any, ...], tracker: MlflowTracker) -> bool:
        """After a call raised: True if the server is down (the call is dropped)."""
        if self.server_up():
            return False
        self.down = True
        self.dropped(name, args, tracker)
        return True

    def dropped(self, name: str, args: tuple[Any, ...], tracker: MlflowTracker) -> None:
        self.lost += 1
        if name == "start_trial" and args[0] not in tracker.runs:
            self.no_run.add(args[0])
        if name == "end_trial":
            tracker.runs.pop(args[0], None)
            self.lossy.discard(args[0])
        elif name in _TRIAL_CALLS:
            self.lossy.add(args[0])
        if name in ("flush", "end_study", "end_trial"):
            self.lossy.update(tracker.runs)  # every run in flight lost what was buffered
            tracker.discard()  # what was buffered is not retried; the reconciliation fills it in


def _serve(inbox: Connection, outbox: Connection) -> None:
    """The child: open a `Tracker` as the first message says, apply each call to it, flush
    on a timer and when the driver is gone. With an MLflow server (http), an outage does not
    stop the study: see `_Outage`; the reply to ``end_study`` is the number of calls lost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, (uri, flush_seconds) = inbox.recv()
    outage = _Outage(uri) if is_server(uri) else None
    if outage is not None:
        for k, v in _HTTP_ENV.items():
            os.environ.setdefault(k, v)
    try:
        if uri.startswith("sqlite:"):
            _sqlite_pragmas()
        tracker = MlflowTracker(uri, flush_seconds=flush_seconds, on_parent=lambda run_id: outbox.send(("parent", run_id)))
    except Exception as e:  # noqa: BLE001 - reported to the driver
        outbox.send(("error", f"cannot open the tracking store: {type(e).__name__}: {e}"))
        return
    while True:
        try:
            if not inbox.poll(max(0.0, flush_seconds - (time.monotonic() - tracker.last_flush))):
                try:
                    _apply(tracker, outage, "flush", ())
                except Exception as e:  # noqa: BLE001 - reported to the driver, which stops
                    outbox.send(("error", f"flush: {type(e).__name__}: {e}"))
                    tracker.discard()
                continue
            name, args = inbox.recv()
        except (EOFError, OSError):  # the driver is gone: keep what it sent, leave runs as they are
            try:
                _apply(tracker, outage, "flush", ())
            finally:
                tracker.close()
            return
        if name == "close":  # everything is written and committed: skip the slow interpreter teardown
            tracker.close()
            outbox.send(("reply", None))
            os._exit(0)
        try:
            result = _apply(tracker, outage, name, args)
        except Exception as e:  # noqa: BLE001 - reported to the driver, which stops
            outbox.send(("error", f"{name}: {type(e).__name__}: {e}"))
            continue
        if name == "end_study":
            outbox.send(("reply", outage.lost if outage is not None else 0))
        elif name in _SYNC:
            outbox.send(("reply", result))


def _apply(tracker: MlflowTracker, outage: _Outage | None, name: str, args: tuple[Any, ...]) -> Any:
    """One call on the tracker; with an `_Outage`, dropped while the server is down."""
    if outage is None or name in _NEEDS_SERVER:
        return getattr(tracker, name)(*args)
    if outage.skip(name, args, tracker):
        return None
    try:
        return getattr(tracker, name)(*args)
    except Exception:
        if not outage.failed(name, args, tracker):
            raise
        return None


class TrackerProcess:
    """`study.stores.tracker.Tracker`, executed by a child process (see the module docstring).

    `on_parent(run_id)` is called (in this process) when the study's parent run exists."""

    def __init__(self, uri: str, *, flush_seconds: float = 2.0, on_parent: Callable[[str], None] | None = None) -> None:
        self.uri = uri
        self.parent_id = ""
        self.on_parent = on_parent
        child_in, out = os.pipe()
        into, child_out = os.pipe()
        try:
            fcntl.fcntl(out, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # a smaller pipe only means the driver may wait for the child sooner
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
        # a new session: the terminal's Ctrl-C goes to the driver only, which then closes us
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "study.stores.writer", str(child_in), str(child_out)],
            pass_fds=(child_in, child_out),
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        os.close(child_in)
        os.close(child_out)
        self._out = Connection(out, readable=False)
        self._in = Connection(into, writable=False)
        self._call("open", uri, flush_seconds)  # the URI goes by pipe: a password never shows in `ps`

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
            shown = mask(self.uri)
            raise TrackingFailure(f"MLflow ({shown}): {str(value).replace(self.uri, shown)}")
        if msg == "parent":
            self.parent_id = value
            if self.on_parent is not None:
                self.on_parent(value)
        return msg, value

    def _check_dead(self) -> None:
        while self._in.poll():  # an error it sent before dying says more than its exit code
            self._receive()
        raise TrackingFailure(f"the MLflow writer process stopped (exit code {self._proc.poll()})")

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._out.send(("close", ()))
                self._answer("reply")
            except (TrackingFailure, EOFError, OSError):
                pass
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._out.close()
        self._in.close()

    # -- the Tracker interface ------------------------------------------------------------
    def start_study(self, name: str, spec: dict[str, Any], parent_run_id: str | None, uid: str, live: bool = True) -> None:
        """Asynchronous: the parent run's id arrives later (`parent_id`, `on_parent`)."""
        self._call("start_study", name, spec, parent_run_id, uid, live)

    def study_progress(self, metrics: dict[str, float], step: int) -> None:
        self._call("study_progress", metrics, step)

    def end_study(self, status: str, summary: dict[str, float] | None, step: int) -> int:
        """Returns how many writes were lost while an MLflow server was unreachable."""
        return int(self._call("end_study", status, summary, step) or 0)

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str]) -> None:
        self._call("start_trial", number, params, tags)

    def tag_trial(self, number: int, tags: dict[str, str]) -> None:
        self._call("tag_trial", number, tags)

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

    def trial_runs(self, numbers: Sequence[int] | None = None) -> dict[int, RunInfo]:
        return dict(self._call("trial_runs", numbers))

    def repair_trial(self, record: TrialRecord, metric: str | None, run: RunInfo | None) -> int:
        return int(self._call("repair_trial", record, metric, run) or 0)

    def close_parent(self, status: str, summary: dict[str, float], step: int) -> bool:
        return bool(self._call("close_parent", status, summary, step))


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
    os._exit(0)
