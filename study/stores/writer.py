"""The MLflow writer in its own process, so recording overlaps with running the study.

MLflow's SQLAlchemy store spends most of a write in Python (about 25 ms of CPU per trial:
create the run, one batch of params/metrics/tags, terminate), which in the driver's thread
would stall the loop. `TrackerProcess` implements `study.stores.tracker.Tracker` and forwards
every call over a pipe to a child process that owns the `MlflowClient`; the driver goes on at
once.

It is still the driver writing: the child is the driver's, holds the only MLflow client
and is fed only by it; order is kept (one pipe, one reader thread, one writing thread). The
child's reader thread takes every call off the pipe at once, so the driver never waits for
MLflow, even while a write is retried. If the driver dies, even by SIGKILL, the child still
reads everything already sent (a pipe delivers its data before its end), writes it and
exits: what the driver handed over is never lost, and the runs it never ended stay RUNNING
for ``study resume`` to reconcile. The child is a fresh interpreter (``python -m
study.stores.writer``) holding only its two pipe ends, in a session of its own: no state or
descriptors shared with the driver's Ray connection, no re-import of the caller's
``__main__``, and the terminal's Ctrl-C goes to the driver alone. The tracking URI goes
through the pipe, so a password in it never shows in ``ps``. Its stdout is discarded (MLflow
prints there) and its stderr goes to a temporary log, removed when it closes normally.

MLflow failing never stops the study (Optuna has every result; `study.run.reconcile` can fill
MLflow in from it). In the child (`_Delivery`): a write that fails for a reason that may pass
(a locked SQLite database, a server restarting) is retried with back-off for up to
``retry_seconds``, with one warning line to the driver; after that, or at once when an MLflow
server does not answer ``/health``, writes are dropped and counted (probing again every
`_Delivery.probe_seconds`) and a run that lost some of its writes is tagged
``hpstudy.incomplete`` when it ends; a write the store rejects is dropped and counted too.
``end_study`` answers the number of writes lost, so the driver can repair MLflow at the end
of the study. In the driver (`TrackerProcess`): a writer process that dies (SIGKILL, out of
memory) is replaced, at most `MAX_RESTARTS` times, with one warning line; the new writer
takes over the parent run and the runs of the trials in flight, and what the dead one had
not written counts as lost. After that the study goes on without MLflow.

For an SQLite tracking store the child puts the database in WAL mode with
``synchronous=NORMAL``: one sync per checkpoint instead of several per commit. A crash of
the process loses nothing; a power cut may lose the last commits, never the database.
"""

from __future__ import annotations

import fcntl
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.names import Tag
from study.stores.tracker import MlflowTracker, RunInfo, TrackingFailure, describe, transient
from study.stores.uris import is_server, mask

if TYPE_CHECKING:
    from study.record import TrialRecord

#: Calls whose reply the driver waits for.
_SYNC = ("end_study", "flush", "trial_runs", "repair_trial", "close_parent")
#: Calls of a reconciliation: never dropped; an error is the driver's to handle.
_NEEDS_SERVER = ("trial_runs", "repair_trial", "close_parent")
#: Calls about one trial's run: skipped for a trial whose run could not be created.
_TRIAL_CALLS = ("tag_trial", "log_epoch", "log_file", "end_trial")
_F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity
#: A dead writer process is replaced at most this many times in one study.
MAX_RESTARTS = 2
_CANNOT_OPEN = "cannot open the MLflow tracking store"
#: MLflow's HTTP client retries a refused connection for minutes by default; the writer
#: retries on its own (below), so each request gives up quickly.
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


def _sqlite_pragmas() -> None:
    """WAL and synchronous=NORMAL on every SQLite connection this process opens."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA journal_mode=WAL")
            except dbapi_conn.OperationalError:
                pass  # the database is locked by another process: WAL on a later connection
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()


class _Delivery:
    """The child's side of an MLflow that fails (see the module docstring): retried writes,
    then dropped and counted ones while it is down, probed every `probe_seconds`."""

    def __init__(self, uri: str, retry_seconds: float, warn: Callable[[str, str], None], probe_seconds: float = 2.0) -> None:
        self.uri = uri
        self.shown = mask(uri)
        self.server = is_server(uri)
        self.retry_seconds = retry_seconds
        self.warn = warn
        self.probe_seconds = probe_seconds
        self.down = False
        self.lost = 0  # calls not delivered
        self.no_run: set[int] = set()  # trials without a run
        self.lossy: set[int] = set()  # trials with a run that lost some writes
        self._probed = 0.0

    def server_up(self) -> bool:
        """An MLflow server answers ``/health`` (always True for a database store)."""
        if not self.server:
            return True
        import urllib.request

        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=3) as r:
                return bool(r.status == 200)
        except (OSError, ValueError):
            return False

    def retrying(self, reason: str) -> None:
        self.warn("retry", f"MLflow ({self.shown}) did not take a write ({reason}); retrying with back-off, the study goes on")

    def apply(self, tracker: MlflowTracker, name: str, args: tuple[Any, ...]) -> Any:
        """One call on the tracker: done (with retries), or dropped and counted."""
        if name in _NEEDS_SERVER:
            tracker.client.retry_seconds = self.retry_seconds
            return getattr(tracker, name)(*args)
        if name in _TRIAL_CALLS and args[0] in self.no_run:
            if name == "end_trial":
                self.no_run.discard(args[0])
            self.lost += 1
            return None
        if self.down:
            if time.monotonic() - self._probed < self.probe_seconds or not self.server_up():
                self._probed = time.monotonic()
                self.dropped(name, args, tracker, everything=True)
                return None
        tracker.client.retry_seconds = 0.0 if self.down else self.retry_seconds
        if name == "end_trial" and args[0] in self.lossy:  # args: number, state, status, tags, summary, end_time
            self.lossy.discard(args[0])
            args[3][Tag.INCOMPLETE] = "true"
        try:
            result = getattr(tracker, name)(*args)
        except Exception as e:  # noqa: BLE001 - MLflow failing never stops the study
            self._probed = time.monotonic()
            if transient(e):
                if not self.down:
                    self.warn(
                        "down",
                        f"MLflow ({self.shown}) is not taking writes ({describe(e)}): they are dropped until it answers "
                        "(Optuna has every result; MLflow is filled in from it when the study ends)",
                    )
                self.down = True
            else:
                self.warn("rejected", f"MLflow ({self.shown}) rejected a write ({describe(e)}); the study goes on")
            self.dropped(name, args, tracker, everything=transient(e))
            return None
        self.down = False
        if name == "adopt_trial":  # a dead writer's run: what it had not written is lost
            self.lossy.add(args[0])
        return result

    def dropped(self, name: str, args: tuple[Any, ...], tracker: MlflowTracker, everything: bool) -> None:
        """Count a call that was not delivered and remember which runs it leaves incomplete.
        `everything`: what was buffered is dropped too (the store is down)."""
        self.lost += 1
        if name in ("start_trial", "adopt_trial") and args[0] not in tracker.runs:
            self.no_run.add(args[0])
        if name == "end_trial":
            tracker.runs.pop(args[0], None)
            self.lossy.discard(args[0])
        elif name in _TRIAL_CALLS:
            self.lossy.add(args[0])
        if everything and name in ("flush", "end_study", "end_trial"):
            self.lossy.update(tracker.runs)  # every run in flight lost what was buffered
            tracker.discard()  # not retried: the reconciliation fills it in


def _send(outbox: Connection, msg: tuple[str, Any]) -> None:
    """To the driver, which may be gone (its writes are still done)."""
    try:
        outbox.send(msg)
    except OSError:
        pass


def _read(inbox: Connection, calls: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None]) -> None:
    """The reader thread: every call off the pipe at once; None when the driver is gone."""
    while True:
        try:
            msg = inbox.recv()
        except (EOFError, OSError):
            calls.put(None)
            return
        calls.put(msg)
        if msg[0] == "close":
            return


def _serve(inbox: Connection, outbox: Connection) -> None:
    """The child: open a `Tracker` as the first message says, apply each call to it, flush
    on a timer and when the driver is gone. The reply to ``end_study`` is the number of
    calls lost; an error of a reconciliation call is sent back as an error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, (uri, flush_seconds, retry_seconds) = inbox.recv()
    calls: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
    threading.Thread(target=_read, args=(inbox, calls), daemon=True).start()  # the driver never waits for us
    warned: set[str] = set()

    def warn(kind: str, text: str) -> None:
        if kind not in warned:
            warned.add(kind)
            _send(outbox, ("warn", text))

    delivery = _Delivery(uri, retry_seconds, warn)
    if delivery.server:
        for k, v in _HTTP_ENV.items():
            os.environ.setdefault(k, v)
    try:
        if uri.startswith("sqlite:"):
            _sqlite_pragmas()
        tracker = MlflowTracker(
            uri,
            flush_seconds=flush_seconds,
            on_parent=lambda run_id: _send(outbox, ("parent", run_id)),
            retry_seconds=retry_seconds,
            on_retry=delivery.retrying,
            probe=delivery.server_up if delivery.server else None,
        )
    except Exception as e:  # noqa: BLE001 - the driver sees this process end
        warn("open", f"{_CANNOT_OPEN} {mask(uri)} ({describe(e)})")
        return
    while True:
        try:
            msg = calls.get(timeout=max(0.0, flush_seconds - (time.monotonic() - tracker.last_flush)))
        except queue.Empty:
            delivery.apply(tracker, "flush", ())
            continue
        if msg is None:  # the driver is gone: keep what it sent, leave runs as they are
            delivery.apply(tracker, "flush", ())
            tracker.close()
            return
        name, args = msg
        if name == "close":  # everything is written and committed: skip the slow interpreter teardown
            tracker.close()
            _send(outbox, ("reply", None))
            _exit()
        try:
            result = delivery.apply(tracker, name, args)
        except Exception as e:  # noqa: BLE001 - a reconciliation call: the driver handles it
            _send(outbox, ("error", f"{name}: {describe(e)}"))
            continue
        if name == "end_study":
            _send(outbox, ("reply", delivery.lost))
        elif name in _SYNC:
            _send(outbox, ("reply", result))


class _WriterGone(Exception):
    """The writer process ended (or its pipe broke)."""


class TrackerProcess:
    """`study.stores.tracker.Tracker`, executed by a child process (see the module docstring).

    `on_parent(run_id)` is called (in this process) when the study's parent run exists;
    `on_warning(text)` with each one-line warning (MLflow failing, the writer replaced);
    `sync_hint` is the command that fills MLflow in afterwards (``study sync NAME``)."""

    def __init__(
        self,
        uri: str,
        *,
        flush_seconds: float = 2.0,
        on_parent: Callable[[str], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        retry_seconds: float = 60.0,
        sync_hint: str = "study sync NAME",
    ) -> None:
        self.uri = uri
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self.parent_id = ""
        self.on_parent = on_parent
        self.on_warning = on_warning or (lambda text: print(f"warning: {text}", file=sys.stderr, flush=True))
        self.sync_hint = sync_hint
        self.lost = 0  # writes lost with dead writer processes (at least one each), or dropped without one
        self.restarts = 0
        self.dead = False  # no writer any more: calls are dropped
        self._unopenable = False  # a writer said it cannot open the store: another would not either
        self._study: tuple[Any, ...] | None = None  # the start_study call, for a new writer
        self._open: dict[int, tuple[dict[str, Any], dict[str, str], float | None]] = {}  # trials in flight
        self._start()

    # -- the process ----------------------------------------------------------------------
    def _start(self) -> None:
        child_in, out = os.pipe()
        into, child_out = os.pipe()
        try:
            fcntl.fcntl(out, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # a smaller pipe only means the driver may wait for the child sooner
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        }
        fd, self._log = tempfile.mkstemp(prefix="hpstudy-mlflow-writer-", suffix=".log")
        # a new session: the terminal's Ctrl-C goes to the driver only, which then closes us
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "study.stores.writer", str(child_in), str(child_out), self._log],
            pass_fds=(child_in, child_out),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=fd,
            env=env,
            start_new_session=True,
        )
        os.close(fd)
        os.close(child_in)
        os.close(child_out)
        self._out = Connection(out, readable=False)
        self._in = Connection(into, writable=False)
        self._out.send(("open", (self.uri, self.flush_seconds, self.retry_seconds)))  # the URI by pipe: never in `ps`

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _replaced(self) -> None:
        """The writer is gone: say so once, start another that takes over the parent run and
        the runs in flight (at most `MAX_RESTARTS` times), else go on without one."""
        try:  # what it said before it ended (why it could not open the store) says more than its exit code
            while self._in.poll():
                self._receive()
        except (_WriterGone, TrackingFailure, OSError):
            pass
        code = self._proc.poll()
        if code is None:
            self._proc.kill()
            code = self._proc.wait()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        log = self._log if os.path.exists(self._log) and os.path.getsize(self._log) > 0 else None
        if log is None:
            self._unlink_log()
        self._close_pipes()
        self.lost += 1
        while self.restarts < MAX_RESTARTS and not self._unopenable:
            self.restarts += 1
            self._start()
            try:
                if self._study is not None:
                    name, spec, parent, uid, _, start, under = self._study
                    self._send("start_study", name, spec, self.parent_id or parent, uid, True, start, under)
                for number, (params, tags, start) in self._open.items():
                    self._send("adopt_trial", number, params, tags, start)
            except _WriterGone:
                self._close_pipes()
                continue
            self.on_warning(
                f"the MLflow writer process stopped ({how}{f'; its log: {log}' if log else ''}); a new one took over. "
                "The study goes on (Optuna has every result); what MLflow missed is filled in from Optuna when it ends"
            )
            return
        self.dead = True
        why = "it cannot open the store" if self._unopenable else f"it was replaced {MAX_RESTARTS} times already"
        self.on_warning(
            f"the MLflow writer process stopped ({how}{f'; its log: {log}' if log else ''}) and {why}: the study goes on "
            f"without MLflow (Optuna has every result). Fill MLflow in afterwards with: {self.sync_hint}"
        )

    def _close_pipes(self) -> None:
        for conn in (self._out, self._in):
            try:
                conn.close()
            except OSError:
                pass

    def _send(self, name: str, *args: Any) -> None:
        try:
            self._out.send((name, args))
        except OSError:
            raise _WriterGone from None

    def _call(self, name: str, *args: Any) -> Any:
        """Send one call (and wait for its reply if it has one). A writer found dead is
        replaced and the call sent again to the new one; without a writer the call is
        dropped (a reconciliation call raises `TrackingFailure`)."""
        while not self.dead:
            try:
                self._send(name, *args)
                return self._answer("reply") if name in _SYNC else None
            except _WriterGone:
                self._replaced()
        if name in _NEEDS_SERVER:
            raise TrackingFailure(f"MLflow ({mask(self.uri)}): no writer process")
        self.lost += 1
        return None

    def _answer(self, kind: str) -> Any:
        while True:
            msg, value = self._receive()
            if msg == kind:
                return value

    def _receive(self) -> tuple[str, Any]:
        try:
            msg, value = self._in.recv()
        except (EOFError, OSError):
            raise _WriterGone from None
        if msg == "error":
            shown = mask(self.uri)
            raise TrackingFailure(f"MLflow ({shown}): {str(value).replace(self.uri, shown)}")
        if msg == "warn":
            self._unopenable = self._unopenable or str(value).startswith(_CANNOT_OPEN)
            self.on_warning(str(value).replace(self.uri, mask(self.uri)))
        if msg == "parent":
            self.parent_id = value
            if self.on_parent is not None:
                self.on_parent(value)
        return msg, value

    def close(self) -> None:
        if not self.dead and self._proc.poll() is None:
            try:
                self._out.send(("close", ()))
                self._answer("reply")
            except (TrackingFailure, _WriterGone, OSError):
                pass
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._close_pipes()
        self._unlink_log()

    def _unlink_log(self) -> None:
        try:
            os.unlink(self._log)
        except OSError:
            pass

    # -- the Tracker interface ------------------------------------------------------------
    def start_study(
        self,
        name: str,
        spec: dict[str, Any],
        parent_run_id: str | None,
        uid: str,
        live: bool = True,
        start_time: float | None = None,
        under: str | None = None,
    ) -> None:
        """Asynchronous: the parent run's id arrives later (`parent_id`, `on_parent`)."""
        self._study = (name, spec, parent_run_id, uid, live, start_time, under)
        self._call("start_study", name, spec, parent_run_id, uid, live, start_time, under)

    def study_progress(self, metrics: dict[str, float], step: int, at: float | None = None) -> None:
        self._call("study_progress", metrics, step, at)

    def record_verdict(self, verdict: dict[str, Any]) -> None:
        self._call("record_verdict", verdict)

    def end_study(self, status: str, summary: dict[str, float] | None, step: int, end_time: float | None = None) -> int:
        """Returns how many writes were lost (MLflow failing, or a writer process dying)."""
        lost = int(self._call("end_study", status, summary, step, end_time) or 0)
        return lost + self.lost

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str], start_time: float | None = None) -> None:
        self._open[number] = (params, tags, start_time)
        self._call("start_trial", number, params, tags, start_time)

    def tag_trial(self, number: int, tags: dict[str, str]) -> None:
        self._call("tag_trial", number, tags)

    def log_epoch(self, number: int, epoch: int, metrics: dict[str, float], at: float | None = None) -> None:
        self._call("log_epoch", number, epoch, metrics, at)

    def log_file(self, number: int, path: str, data: bytes, run_id: str | None = None) -> None:
        self._call("log_file", number, path, data, run_id)

    def end_trial(
        self,
        number: int,
        state: str,
        status: str,
        tags: dict[str, str],
        summary: dict[str, float],
        end_time: float | None = None,
    ) -> None:
        self._open.pop(number, None)
        self._call("end_trial", number, state, status, tags, summary, end_time)

    def maybe_flush(self) -> None:
        """The writer flushes on its own timer; here, only take in what it reported."""
        if self.dead:
            return
        try:
            while self._in.poll():
                self._receive()
        except (_WriterGone, OSError):
            self._replaced()

    def flush(self) -> None:
        self._call("flush")

    def trial_runs(self, numbers: Sequence[int] | None = None) -> dict[int, RunInfo]:
        return dict(self._call("trial_runs", numbers))

    def repair_trial(self, record: TrialRecord, metric: str | None, run: RunInfo | None) -> int:
        return int(self._call("repair_trial", record, metric, run) or 0)

    def close_parent(self, status: str, summary: dict[str, float], step: int, end_time: float | None = None) -> bool:
        return bool(self._call("close_parent", status, summary, step, end_time))


def _exit() -> None:
    """Leave at once; the log (our stderr) goes too when nothing was written to it (a killed
    driver cannot remove it)."""
    try:
        if os.fstat(2).st_size == 0 and len(sys.argv) > 3:
            os.unlink(sys.argv[3])
    except OSError:
        pass
    os._exit(0)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
    _exit()
