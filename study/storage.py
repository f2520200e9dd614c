"""Optuna storage: where a study's trials live (the source of truth), from one URL.

Default: an Optuna journal file, ``.hpstudy/optuna.journal`` in the working folder. The
journal is an append-only log of storage operations, so a driver killed mid-study leaves a
readable file, and it costs far less per trial than SQLite (benchmarks/orchestration_overhead.py
measures both: about 9 ms against about 60 ms for one ask, ten reports and one tell).

URLs accepted:

- ``journal:PATH`` (or ``journal:///abs/path``), or a bare path ending in ``.journal``;
- ``sqlite:///relative.db`` / ``sqlite:////abs.db``, or a bare path ending in ``.db``/``.sqlite``;
- ``postgresql://user:pass@host/db`` (and ``postgresql+psycopg2://``), ``mysql://``.

`check` validates a URL without creating anything; `open_storage` opens (and for a new
study, creates) it. Passwords are masked (`mask`) wherever a URL is shown or recorded.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import optuna

from study.spec import SpecError

DEFAULT_DIR = ".hpstudy"
DEFAULT_URL = f"journal:{DEFAULT_DIR}/optuna.journal"
LOCK_GRACE_SECONDS = 5
RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql")
ALLOWED = "journal:PATH, a .journal/.db file path, sqlite:///PATH, postgresql://USER:PASS@HOST/DB or mysql://..."


class StorageError(SpecError):
    """A bad or unreachable storage URL."""


def mask(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def resolve(url: str | None) -> str:
    """Canonical form: bare paths become ``journal:`` or ``sqlite:///`` URLs; None is the default."""
    if url is None or url == "":
        return DEFAULT_URL
    if url.startswith("postgresql://") and not _has("psycopg") and _has("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")  # SQLAlchemy 2.1 defaults to psycopg 3
    if "://" not in url and not url.startswith("journal:"):
        low = url.lower()
        if low.endswith((".journal", ".log")):
            return f"journal:{url}"
        if low.endswith((".db", ".sqlite", ".sqlite3")):
            return f"sqlite:///{url}"
    return url


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _journal_path(url: str) -> str:
    rest = url.removeprefix("journal:")
    return rest[2:] if rest.startswith("///") else rest  # journal:///abs -> /abs


def _sqlite_path(url: str) -> str:
    return url.split(":///", 1)[1] if ":///" in url else ""


def _scheme(url: str) -> str:
    if url.startswith("journal:"):
        return "journal"
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return m.group(1).lower() if m else ""


def is_local_file(url: str | None) -> bool:
    """True for a journal or SQLite file (one machine's disk); False for a database server."""
    return _scheme(resolve(url)) in ("journal", "sqlite")


def check(url: str | None, *, must_exist: bool = False) -> str:
    """Validate `url` (resolved) without creating anything; return the resolved URL.

    A file storage must have an existing parent folder (the default's ``.hpstudy/`` is the
    one folder created on demand); a database server must accept a connection."""
    url = resolve(url)
    scheme = _scheme(url)
    shown = mask(url)
    if scheme == "journal" or scheme == "sqlite":
        path = _journal_path(url) if scheme == "journal" else _sqlite_path(url)
        if not path or path in (":memory:",):
            raise StorageError(f"storage {shown!r}: needs a file path (in-memory storage cannot be resumed); allowed: {ALLOWED}")
        if os.path.isdir(path):
            raise StorageError(f"storage {shown!r}: {path!r} is a directory, not a file")
        if must_exist and not os.path.isfile(path):
            raise StorageError(f"storage {shown!r}: no such file {path!r}; launch a study first or pass --storage")
        parent = os.path.dirname(os.path.abspath(path))
        if url != DEFAULT_URL and not os.path.isdir(parent):
            raise StorageError(f"storage {shown!r}: folder {parent!r} does not exist")
        if scheme == "sqlite" and os.path.isfile(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as f:
                if f.read(16) != b"SQLite format 3\x00":
                    raise StorageError(f"storage {shown!r}: {path!r} exists and is not an SQLite database")
        return url
    if scheme in RDB_SCHEMES:
        _check_server(url, shown)
        return url
    raise StorageError(f"storage {shown!r}: unknown kind of URL; allowed: {ALLOWED}")


def _check_server(url: str, shown: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - any driver error is a bad URL to the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {shown!r}: cannot connect ({first.replace(url, shown)})") from None


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Open the storage at `url` (resolved), creating the file or tables if needed."""
    url = resolve(url)
    if _scheme(url) == "journal":
        from optuna.storages.journal import JournalFileSymlinkLock

        path = _journal_path(url)
        if url == DEFAULT_URL:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # a write holds the lock for about a millisecond, so a lock unchanged for 5 s was left
        # by a killed driver (Optuna's default waits 30 s before breaking it)
        lock = JournalFileSymlinkLock(path, grace_period=LOCK_GRACE_SECONDS)
        return optuna.storages.JournalStorage(_journal_backend(path, lock))
    return optuna.storages.RDBStorage(url)


def _journal_backend(path: str, lock: Any) -> Any:
    """Optuna's journal file, appended without an fsync per operation.

    Optuna fsyncs every append (ask, each epoch's report, tell): about 1 ms each on a busy
    disk, a quarter of the driver's time with 32 trials in flight. Without it an append is
    still in the page cache the moment `write` returns, so a killed driver loses nothing;
    only a power cut can lose the last appends (the same trade as MLflow's SQLite in WAL
    mode with synchronous=NORMAL). Falls back to Optuna's backend if its internals move."""
    from optuna.storages.journal import JournalFileBackend

    try:
        from optuna.storages.journal._file import get_lock_file
    except ImportError:
        return JournalFileBackend(path, lock_obj=lock)

    class PageCacheJournal(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, object]]) -> None:
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with get_lock_file(self._lock), open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))

    return PageCacheJournal(path, lock_obj=lock)


def study_names(url: str | None) -> list[str]:
    """Names of the studies in an existing storage (none if the file does not exist yet)."""
    url = resolve(url)
    scheme = _scheme(url)
    if scheme in ("journal", "sqlite"):
        path = _journal_path(url) if scheme == "journal" else _sqlite_path(url)
        if not os.path.isfile(path):
            return []
    return [s.study_name for s in optuna.get_all_study_summaries(open_storage(url), include_best_trial=False)]
