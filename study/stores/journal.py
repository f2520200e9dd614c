"""The Optuna journal file, fast to append to and fast to open at ten thousand trials.

The file is Optuna's own format (one JSON operation a line), so Optuna reads it and hpstudy
reads Optuna's. What differs from Optuna's `JournalFileBackend`:

- appends go to the page cache without an fsync (about 1 ms each on a busy disk; a killed
  driver loses nothing, only a power cut may lose the last appends), through one file
  descriptor kept open, each one ``write`` under an exclusive ``flock`` of the journal file
  (two system calls; Optuna's symlink lock takes three file creations, renames and removals
  per append, about a tenth of a millisecond each, 18 appends a trial, and is left behind
  by a killed process until its grace period passes; the kernel releases an ``flock`` when
  its process dies). Every hpstudy process appends under it (a plain Optuna process writing
  the same journal at the same time would not);
- reads continue from the last byte read, and only that one position is kept (Optuna keeps
  the offset of every line read: memory that grows with every operation of every trial);
- the keys and short strings of the trials' attributes (each trial's ``config`` has some
  forty keys and mostly the same values) are one object each, not one per trial (`shared`):
  the replayed state is what the driver holds per finished trial;
- a snapshot: replaying 200,000 operations (10,000 trials) takes about 1.6 s of CPU, so
  the replayed state is saved as JSON beside the journal (``<journal>.snapshot``, never a
  pickle) and a process opening the journal loads it and replays only the operations after
  it. It is written by `save_snapshot` (the driver, at the end of a run) and when opening
  replayed more than `SNAPSHOT_LOGS` operations past it. A snapshot is used only if the
  journal still starts with the bytes it recorded and holds them up to its offset; anything
  else (a missing, stale or foreign file) means a full replay, never wrong data.

Internals of Optuna 5 used here (checked by `OPTUNA_MAJOR` in `study.stores.optuna_storage`):
`JournalStorage._backend`, `._replay_result`, `._thread_lock`, `._sync_with_backend` and the
fields of `JournalStorageReplayResult`; a test replays journals both ways and compares.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import weakref
from collections.abc import Generator
from datetime import datetime
from sys import intern
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: A process that replays more operations than this past the snapshot writes a new one.
SNAPSHOT_LOGS = 20_000
_FORMAT = "hpstudy-journal-snapshot/1"
_MARK = 64  # bytes of the journal recorded at its start and before the snapshot's offset


def snapshot_path(path: str) -> str:
    return path + ".snapshot"


#: Strings up to this long are shared by `shared`.
SHORT = 64
_NESTED = (dict, list, str)


def shared(obj: Any) -> Any:
    """`obj` (what JSON gives) with its dict keys and its strings of at most `SHORT`
    characters interned (``sys.intern``: one object for each, kept by the interpreter while
    used): a trial's config repeats some forty keys and mostly the same strings, which would
    otherwise be new objects in every trial the replayed state keeps. Numbers and longer
    strings stay as read."""
    t = type(obj)
    if t is dict:
        return {(intern(k) if type(k) is str else k): (shared(v) if type(v) in _NESTED else v) for k, v in obj.items()}
    if t is list:
        return [shared(v) if type(v) in _NESTED else v for v in obj]
    if t is str and len(obj) <= SHORT:
        return intern(obj)
    return obj


#: The keys of an operation whose values the replayed state keeps.
_KEPT = ("user_attr", "system_attr", "user_attrs", "system_attrs")


class JournalFile(JournalFileBackend):
    """Optuna's journal file with page-cache appends, incremental reads and one position."""

    def __init__(self, path: str) -> None:
        super().__init__(path)  # Optuna's lock object goes unused: appends take the flock
        self._log_number_offset = {}  # Optuna's per-line table: unused here
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND)
        self._next = (0, 0)  # (number of the next unread operation, its byte offset)
        self._hold = False  # while a snapshot is restored: read nothing
        weakref.finalize(self, os.close, self._fd)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode("utf-8")
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            while data:  # one write, unless a signal or a full disk cuts it short
                data = data[os.write(self._fd, data) :]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        if self._hold:
            return
        number, offset = self._next
        if log_number_from < number:  # a fresh replay: from the start
            number, offset = 0, 0
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size - offset, offset) if size > offset else b""
        end = data.rfind(b"\n") + 1  # complete lines only: a line being written is read next time
        start = 0
        while start < end:
            stop = data.index(b"\n", start) + 1
            line = data[start:stop]
            start = stop
            if number >= log_number_from:
                try:
                    log = json.loads(line)
                except json.JSONDecodeError:
                    if start < end:  # Optuna's rule: only the last line may be unreadable (yet)
                        raise
                    return
                self._next = (number + 1, offset + stop)
                for key in _KEPT:
                    if key in log:
                        log[key] = shared(log[key])
                if "param_name" in log:
                    log["param_name"] = shared(log["param_name"])
                yield log
            else:
                self._next = (number + 1, offset + stop)
            number += 1

    def position(self) -> tuple[int, int]:
        """(operations read, bytes read)."""
        return self._next

    def marks(self, offset: int) -> tuple[str, str]:
        """The journal's first bytes and the bytes before `offset` (hex)."""
        head = os.pread(self._fd, _MARK, 0)
        tail = os.pread(self._fd, min(_MARK, offset), max(0, offset - _MARK))
        return head.hex(), tail.hex()


def open_journal(path: str) -> JournalStorage:
    """A `JournalStorage` on the file at `path`, from its snapshot when that is valid."""
    backend = JournalFile(path)
    snap = _read_snapshot(path, backend)
    backend._hold = snap is not None
    storage = JournalStorage(backend)
    if snap is not None:
        _restore(storage, snap)
        backend._next = (snap["log_number"], snap["offset"])
        backend._hold = False
    before = storage._replay_result.log_number_read
    with storage._thread_lock:
        storage._sync_with_backend()
    if storage._replay_result.log_number_read - before > SNAPSHOT_LOGS or (snap is None and before > SNAPSHOT_LOGS):
        save_snapshot(storage)
    return storage


def save_snapshot(storage: optuna.storages.BaseStorage) -> bool:
    """Write the replayed state of a journal storage beside its file (atomically); False if
    the storage is not one of ours or the folder is not writable."""
    backend = getattr(storage, "_backend", None)
    if not isinstance(storage, JournalStorage) or not isinstance(backend, JournalFile):
        return False
    with storage._thread_lock:
        storage._sync_with_backend()
        r = storage._replay_result
        number, offset = backend.position()
        if number != r.log_number_read:
            return False
        head, tail = backend.marks(offset)
        snap = {
            "format": _FORMAT, "optuna": optuna.__version__, "log_number": number, "offset": offset, "head": head,
            "tail": tail, "next_study_id": r._next_study_id,
            "studies": [_study_json(s) for s in r._studies.values()],
            "study_trials": [[i, ids] for i, ids in r._study_id_to_trial_ids.items()],
            "trials": [_trial_json(t, r._trial_id_to_study_id[i]) for i, t in r._trials.items()],
        }  # fmt: skip
        text = json.dumps(snap, separators=(",", ":"))
    target = snapshot_path(backend._file_path)
    tmp = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


# -- the snapshot's JSON ------------------------------------------------------------------------
def _read_snapshot(path: str, backend: JournalFile) -> dict[str, Any] | None:
    try:
        with open(snapshot_path(path)) as f:
            snap = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(snap, dict) or snap.get("format") != _FORMAT:
        return None
    offset = snap.get("offset")
    if not isinstance(offset, int) or offset > os.fstat(backend._fd).st_size:
        return None
    if backend.marks(offset) != (snap.get("head"), snap.get("tail")):
        return None
    return snap


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d is not None else None


def _study_json(s: FrozenStudy) -> list[Any]:
    return [s._study_id, s.study_name, [int(d) for d in s.directions], s.user_attrs, s.system_attrs]


def _trial_json(t: FrozenTrial, study_id: int) -> list[Any]:
    dists = t.distributions
    return [
        t._trial_id, study_id, t.number, int(t.state), t._values, _iso(t.datetime_start), _iso(t.datetime_complete),
        {k: dists[k].to_internal_repr(v) for k, v in t.params.items()}, {k: distribution_to_json(d) for k, d in dists.items()},
        t.user_attrs, t.system_attrs, [[s, v] for s, v in t.intermediate_values.items()],
    ]  # fmt: skip


def _restore(storage: JournalStorage, snap: dict[str, Any]) -> None:
    """Fill the storage's (empty) replay result from a snapshot (attributes through `shared`)."""
    r = storage._replay_result
    cache: dict[str, BaseDistribution] = {}

    def dist(raw: str) -> BaseDistribution:
        d = cache.get(raw)
        if d is None:
            d = cache[raw] = json_to_distribution(raw)
        return d

    when = datetime.fromisoformat
    for sid, name, directions, user_attrs, system_attrs in snap["studies"]:
        r._studies[sid] = FrozenStudy(
            study_name=name, direction=None, user_attrs=user_attrs, system_attrs=system_attrs, study_id=sid,
            directions=[StudyDirection(d) for d in directions],
        )  # fmt: skip
    for sid, trial_ids in snap["study_trials"]:
        r._study_id_to_trial_ids[sid] = list(trial_ids)
    for tid, sid, number, state, values, start, done, params, dists, user_attrs, system_attrs, steps in snap["trials"]:
        ds = {shared(k): dist(v) for k, v in dists.items()}
        r._trials[tid] = FrozenTrial(
            number, TrialState(state), None, when(start) if start else None, when(done) if done else None,
            {shared(k): ds[k].to_external_repr(v) for k, v in params.items()}, ds, shared(user_attrs), shared(system_attrs),
            {int(s): v for s, v in steps}, tid, values=values,
        )  # fmt: skip
        r._trial_id_to_study_id[tid] = sid
    r._next_study_id = snap["next_study_id"]
    r.log_number_read = snap["log_number"]


def set_trial_user_attrs(storage: JournalStorage, trial_id: int, attrs: dict[str, Any]) -> None:
    """Several ``SET_TRIAL_USER_ATTR`` operations (one attr each, as Optuna writes them) in
    one append, then read back as Optuna does after each of its own."""
    from optuna.storages.journal._storage import JournalOperation

    worker = storage._replay_result.worker_id
    logs = [
        {"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": worker, "trial_id": trial_id, "user_attr": {k: v}}
        for k, v in attrs.items()
    ]
    with storage._thread_lock:
        storage._backend.append_logs(logs)
        storage._sync_with_backend()
