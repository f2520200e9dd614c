"""Storage URLs and tracking URIs: where they come from, checks that create nothing, and
password masking. Every URL shown or recorded goes through `mask`.

Where a study's storage and tracking URI come from, first found wins: the flag (or
``launch()``'s keyword), the spec (for a resume: the stored spec), the environment
(``HPSTUDY_STORAGE``, ``MLFLOW_TRACKING_URI``), the default. Passing credentials by
environment keeps passwords off command lines, which `ps` shows to every user.

Optuna storage URLs accepted (default: an Optuna journal file, ``.hpstudy/optuna.journal``):

- ``journal:PATH`` (or ``journal:///abs/path``), or a bare path ending in ``.journal``;
- ``sqlite:///relative.db`` / ``sqlite:////abs.db``, or a bare path ending in ``.db``/``.sqlite``;
- ``postgresql://user:pass@host/db`` (and ``postgresql+psycopg2://``), ``mysql://``.

Tracking URIs: ``sqlite:///PATH`` (default ``sqlite:///mlflow.db``), ``http(s)://HOST:PORT``
(an MLflow server), ``postgresql://...``, ``file:///PATH``.

A file store (journal, SQLite, ``file:``) must be writable where it lives: its folder (the
database's journal files go there too) and the file when it exists. The checks probe the
folder with an unnamed temporary file (``O_TMPFILE``), so they leave nothing behind.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from study.errors import SpecError

if TYPE_CHECKING:
    from study.spec import StudySpec

STORAGE_ENV = "HPSTUDY_STORAGE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_DIR = ".hpstudy"
DEFAULT_STORAGE = f"journal:{DEFAULT_DIR}/optuna.journal"
DEFAULT_TRACKING = "sqlite:///mlflow.db"
RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql")
STORAGE_ALLOWED = "journal:PATH, a .journal/.db file path, sqlite:///PATH, postgresql://USER:PASS@HOST/DB or mysql://..."
TRACKING_ALLOWED = "sqlite:///PATH, http(s)://HOST:PORT (an MLflow server), postgresql://..., file:///PATH"


class StorageError(SpecError):
    """A bad or unreachable storage URL."""


class TrackingError(SpecError):
    """A bad or unreachable tracking URI."""


class EnvError(SpecError):
    """A bad value given through an environment variable: the message starts with its name."""


def from_env(var: str, e: SpecError) -> EnvError:
    """`e`, about a value that came from environment variable `var`, saying so."""
    return EnvError(f"environment variable {var}: {e}")


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


def is_masked(url: str) -> bool:
    """Whether `url` carries a masked password (``***``): a stored URI, unusable as is."""
    return "***" in url


# -- where they come from ----------------------------------------------------------------------
def with_env_defaults(spec: StudySpec, storage_flag: str | None, tracking_flag: str | None) -> StudySpec:
    """`spec` with the environment's storage and tracking URI where neither the flag nor the
    spec gives one. A stored spec whose tracking URI was masked (it had a password) takes
    ``MLFLOW_TRACKING_URI`` when that is the same URI with its password."""
    changes: dict[str, str] = {}
    env_vars: dict[str, str] = {}
    env_storage = os.environ.get(STORAGE_ENV)
    if storage_flag is None and spec.storage is None and env_storage:
        changes["storage"] = env_storage
        env_vars["storage"] = STORAGE_ENV
    env_tracking = os.environ.get(TRACKING_ENV)
    if tracking_flag is None and env_tracking:
        given = "tracking_uri" in spec.model_fields_set
        if not given or (is_masked(spec.tracking_uri) and mask(env_tracking) == spec.tracking_uri):
            changes["tracking_uri"] = env_tracking
            env_vars["tracking_uri"] = TRACKING_ENV
    return spec.with_overrides(**changes).with_context(env_vars=env_vars) if changes else spec


def env_storage(storage: str | None) -> str | None:
    """`storage`, else ``HPSTUDY_STORAGE``, else None (the default)."""
    return storage or os.environ.get(STORAGE_ENV) or None


def unmasked_tracking(uri: str) -> str:
    """A stored tracking URI whose password was masked, with the password from
    ``MLFLOW_TRACKING_URI`` when that is the same URI; a SpecError if it stays masked."""
    env_uri = os.environ.get(TRACKING_ENV)
    if is_masked(uri) and env_uri and mask(env_uri) == uri:
        return env_uri
    if is_masked(uri):
        raise SpecError(f"the stored tracking URI {uri!r} had a password: pass it again with --tracking-uri or {TRACKING_ENV}")
    return uri


# -- Optuna storage ------------------------------------------------------------------------------
def resolve(url: str | None) -> str:
    """Canonical form: bare paths become ``journal:`` or ``sqlite:///`` URLs; None is the default."""
    if url is None or url == "":
        return DEFAULT_STORAGE
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
    return importlib.util.find_spec(module) is not None


def journal_path(url: str) -> str:
    rest = url.removeprefix("journal:")
    return rest[2:] if rest.startswith("///") else rest  # journal:///abs -> /abs


def sqlite_path(url: str) -> str:
    return url.split(":///", 1)[1] if ":///" in url else ""


def scheme(url: str) -> str:
    if url.startswith("journal:"):
        return "journal"
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return m.group(1).lower() if m else ""


def file_path(url: str) -> str | None:
    """The file of a journal or SQLite storage URL (resolved), None for a database server."""
    kind = scheme(url)
    if kind == "journal":
        return journal_path(url)
    if kind == "sqlite":
        return sqlite_path(url)
    return None


def is_local_file(url: str | None) -> bool:
    """True for a journal or SQLite file (one machine's disk); False for a database server."""
    return scheme(resolve(url)) in ("journal", "sqlite")


def check_storage(url: str | None, *, must_exist: bool = False) -> str:
    """Validate a storage URL (resolved) without creating anything; return the resolved URL.

    A file storage must have an existing parent folder (the default's ``.hpstudy/`` is the one
    folder created on demand); a database server must accept a connection."""
    url = resolve(url)
    kind = scheme(url)
    shown = mask(url)
    if kind in ("journal", "sqlite"):
        path = journal_path(url) if kind == "journal" else sqlite_path(url)
        if not path or path in (":memory:",):
            raise StorageError(
                f"storage {shown!r}: needs a file path (in-memory storage cannot be resumed); allowed: {STORAGE_ALLOWED}"
            )
        if os.path.isdir(path):
            raise StorageError(f"storage {shown!r}: {path!r} is a directory, not a file")
        if must_exist and not os.path.isfile(path):
            raise StorageError(f"storage {shown!r}: no such file {path!r}; launch a study first or pass --storage")
        parent = os.path.dirname(os.path.abspath(path))
        if url != DEFAULT_STORAGE and not os.path.isdir(parent):
            raise StorageError(f"storage {shown!r}: folder {parent!r} does not exist")
        problem = _unwritable(path if os.path.isdir(parent) else parent)
        if problem:
            raise StorageError(f"storage {shown!r}: {problem}")
        if kind == "sqlite" and _not_sqlite(path):
            raise StorageError(f"storage {shown!r}: {path!r} exists and is not an SQLite database")
        return url
    if kind in RDB_SCHEMES:
        check_server(url, "storage")
        return url
    raise StorageError(f"storage {shown!r}: unknown kind of URL; allowed: {STORAGE_ALLOWED}")


def _unwritable(path: str) -> str | None:
    """Why a file at `path` could not be written (its folder or the file itself), or None.
    The folder is probed by opening an unnamed temporary file in it: permissions, read-only
    mounts and pseudo file systems (``/proc``) all answer truthfully, and nothing is left."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return f"cannot create a file in folder {folder!r} ({e.strerror or e})"
    if os.path.isfile(path) and not os.access(path, os.W_OK):
        return f"file {path!r} is not writable"
    return None


def _not_sqlite(path: str) -> bool:
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as f:
        return f.read(16) != b"SQLite format 3\x00"


def check_server(url: str, field: str) -> None:
    """A SpecError naming `field` unless the database server at `url` accepts a connection."""
    import sqlalchemy

    shown = mask(url)
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - any driver error is a bad URL to the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        error = StorageError if field == "storage" else TrackingError
        raise error(f"{field} {shown!r}: cannot connect ({first.replace(url, shown)})") from None


# -- MLflow tracking -----------------------------------------------------------------------------
def check_tracking(uri: str) -> str:
    """Validate a tracking URI without creating anything."""
    shown = mask(uri)
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise TrackingError(f"tracking_uri {shown!r}: needs a file path; allowed: {TRACKING_ALLOWED}")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise TrackingError(f"tracking_uri {shown!r}: folder {parent!r} does not exist")
        if os.path.isdir(path):
            raise TrackingError(f"tracking_uri {shown!r}: {path!r} is a directory, not a database file")
        problem = _unwritable(path)
        if problem:
            raise TrackingError(f"tracking_uri {shown!r}: {problem}")
        if _not_sqlite(path):
            raise TrackingError(f"tracking_uri {shown!r}: {path!r} exists and is not an SQLite database")
        return uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                if r.status != 200:
                    raise TrackingError(f"tracking_uri {shown!r}: /health answered {r.status}, not an MLflow server?")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise TrackingError(f"tracking_uri {shown!r}: MLflow server not reachable ({getattr(e, 'reason', e)})") from None
        return uri
    if uri.startswith(("postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://")):
        check_server(uri, "tracking_uri")
        return uri
    if uri.startswith("file:"):
        path = uri.removeprefix("file://").removeprefix("file:")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise TrackingError(f"tracking_uri {shown!r}: folder of {path!r} does not exist")
        problem = _unwritable(os.path.join(path, "x") if os.path.isdir(path) else path)
        if problem:
            raise TrackingError(f"tracking_uri {shown!r}: {problem}")
        return uri
    raise TrackingError(f"tracking_uri {shown!r}: unknown kind of URI; allowed: {TRACKING_ALLOWED}")


def artifact_root(uri: str) -> str | None:
    """Where a new experiment of a SQLite tracking store keeps its artifacts: ``mlartifacts/``
    next to the database (a ``file://`` URI), so a study writes nothing into the working
    folder (MLflow's default for a database store is ``./mlruns``). None for other stores: a
    server chooses its own, a ``file:`` store keeps them inside itself."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///")
    if not path or path == ":memory:":
        return None
    return (Path(path).resolve().parent / "mlartifacts").as_uri()


def is_server(uri: str) -> bool:
    """Whether the tracking URI is an MLflow server (http/https) rather than a store."""
    return uri.startswith(("http://", "https://"))
