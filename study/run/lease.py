"""Which drivers hold a study, by one liveness rule, and the lock several drivers share.

Every driver beats: the study user attr ``hpstudy.beat.<host:pid>`` holds the time of its
last beat (written at most every `BEAT_SECONDS`), and 0 once it ended. One rule says whether a
driver is gone (`is_gone`), whatever the storage:

- it said it ended (beat 0) or it never beat;
- on this host: its process no longer runs (a pid reused by another program does not count:
  a driver's command line names ``study``);
- on another host: its last beat is older than `STALE_SECONDS`.

A study in a local file (journal or SQLite) has one driver at a time: a launch, resume or
sync is refused while another driver of it is alive. In a database server (PostgreSQL,
MySQL) several drivers share a study: each trial records the driver that asked for it
(trial attr ``driver``), and before a new trial is asked for, the finished and running
trials of *all* drivers are counted under a database lock (PostgreSQL advisory lock, MySQL
``GET_LOCK``) held from the count to the ask, so two drivers never both take the last slot.
A resuming driver re-runs only the RUNNING trials of drivers that are gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import optuna

from study.record import StudyAttr, TrialRecord

BEAT_SECONDS = 10.0
STALE_SECONDS = 60.0


def driver_id() -> str:
    """This process as a driver: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def beats(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Every driver's last beat, from a study's user attrs."""
    return {k.removeprefix(StudyAttr.BEAT): v for k, v in attrs.items() if k.startswith(StudyAttr.BEAT)}


def _runs_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it runs, as another user
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"study" in f.read()
    except OSError:
        return True


def is_gone(driver: str, last_beats: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether the driver ``host:pid`` has stopped (the rule in the module docstring)."""
    beat = last_beats.get(driver)
    if not isinstance(beat, (int, float)) or isinstance(beat, bool) or beat == 0:
        return True
    host, _, pid = driver.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _runs_here(int(pid))
    return (now or time.time()) - beat > STALE_SECONDS


def live_drivers(attrs: Mapping[str, Any], but: str | None = None) -> list[str]:
    """The drivers of a study (its user attrs) that are alive, less `but`."""
    b = beats(attrs)
    return sorted(d for d in b if d != but and not is_gone(d, b))


class Lease:
    """This driver's hold on `study`: its beats, and with a database server (`shared_url`)
    the lock under which trials are counted and asked for."""

    def __init__(self, study: optuna.Study, shared_url: str | None) -> None:
        self.study = study
        self.driver = driver_id()
        self.shared = shared_url is not None
        self._lock = _StudyLock(shared_url, study.study_name) if shared_url is not None else None
        self._beat_at = 0.0
        self.beat()

    def beat(self, ended: bool = False) -> None:
        """Say this driver is alive (every `BEAT_SECONDS` at most), or that it ended."""
        now = time.time()
        if ended or now - self._beat_at >= BEAT_SECONDS:
            self.study.set_user_attr(StudyAttr.BEAT + self.driver, 0 if ended else now)
            self._beat_at = now

    def owns(self, t: TrialRecord, last_beats: Mapping[str, Any]) -> bool:
        """Whether this driver may settle trial `t`: it asked for it, or no live driver did
        (always, with one driver per study)."""
        owner = t.driver
        return not self.shared or owner is None or owner == self.driver or is_gone(owner, last_beats)

    def counting(self) -> contextlib.AbstractContextManager[None]:
        """Held from counting a shared study's trials to asking for the next one."""
        return self._lock.held() if self._lock is not None else contextlib.nullcontext()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()


class _StudyLock:
    """A lock on one study shared by every driver using the same database: a PostgreSQL
    session advisory lock, or MySQL's ``GET_LOCK``, on a connection of its own."""

    def __init__(self, url: str, name: str) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.conn = self.engine.connect()
        self.mysql = self.engine.dialect.name in ("mysql", "mariadb")
        digest = hashlib.sha256(f"hpstudy:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.name = f"hpstudy:{digest.hex()[:40]}"

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        from sqlalchemy import text

        if self.mysql:
            self.conn.execute(text("SELECT GET_LOCK(:n, 60)"), {"n": self.name})
        else:
            self.conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        self.conn.commit()
        try:
            yield
        finally:
            if self.mysql:
                self.conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self.name})
            else:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()
