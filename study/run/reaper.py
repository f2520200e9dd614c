"""A driver's local Ray dies with it, promptly, even when the driver is SIGKILLed.

Ray starts the head processes of a local cluster (GCS, raylet, dashboard, monitors) with the
parent-death signal, so they die with the driver; but the raylet's own children (its
DashboardAgent and RuntimeEnvAgent, idle workers) notice that the raylet is gone only 30 to 80
seconds later, and a ``study resume`` started meanwhile competes with them for CPUs.

`watch(pids)` starts a small watcher process that holds the read end of a pipe from the
driver. While the driver lives, the watcher notes every `SNAPSHOT_SECONDS` the descendants of
the processes Ray started (the raylet's agents and workers). When the pipe ends without a
goodbye (`release`), the driver is gone: the watcher SIGKILLs every process it noted that
still runs (each known by pid and start time, so a reused pid is never hit), and every
process whose environment names one of them as its raylet (``RAY_RAYLET_PID``: a worker
started since the last note). Linux only (``/proc``); elsewhere nothing is watched. No Ray
import here: the watcher starts in a few milliseconds.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

#: How often the watcher notes the processes of the driver's Ray (seconds).
SNAPSHOT_SECONDS = 1.0
_BYE = b"bye\n"
_watcher: subprocess.Popen[bytes] | None = None


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), None if it is gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _parents() -> dict[int, list[int]]:
    """Every process's children, by parent pid."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields:
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid`."""
    return set(_parents().get(pid, []))


def descendants(roots: set[int]) -> dict[int, int]:
    """The processes below `roots` (not the roots), by pid: their start times."""
    tree = _parents()
    out: dict[int, int] = {}
    todo = [c for r in roots for c in tree.get(r, [])]
    while todo:
        p = todo.pop()
        started = start_time(p)
        if started is not None and p not in out:
            out[p] = started
            todo.extend(tree.get(p, []))
    return out


def watch(pids: set[int]) -> None:
    """Kill `pids` (and the processes that name one of them as their raylet) when this
    process dies without calling `release`. Replaces an earlier watch."""
    global _watcher
    release()
    if not sys.platform.startswith("linux") or not pids:
        return
    targets = [f"{p}:{s}" for p in sorted(pids) if (s := start_time(p)) is not None]
    _watcher = subprocess.Popen(
        [sys.executable, "-m", "study.run.reaper", *targets],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the terminal's process group: Ctrl-C is the driver's
    )


def release() -> None:
    """The driver stopped its Ray itself: the watcher leaves without killing anything."""
    global _watcher
    if _watcher is None:
        return
    try:
        assert _watcher.stdin is not None
        _watcher.stdin.write(_BYE)
        _watcher.stdin.close()
        _watcher.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        _watcher.kill()
    _watcher = None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _raylet_children(raylets: set[int]) -> set[int]:
    """Processes whose environment says ``RAY_RAYLET_PID`` is one of `raylets`."""
    wanted = {f"RAY_RAYLET_PID={p}".encode() for p in raylets}
    out = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted.intersection(env):
            out.add(int(entry.name))
    return out


def reap(noted: dict[int, int], raylets: set[int]) -> None:
    """SIGKILL each noted process still running (same start time), and the processes that
    name one of `raylets` as theirs."""
    for pid, started in noted.items():
        if start_time(pid) == started:
            _kill(pid)
    for _ in range(3):  # a worker being started while we kill is caught by the next pass
        for pid in _raylet_children(raylets) - {os.getpid()}:
            _kill(pid)
        time.sleep(0.3)


def _main(args: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    roots = {int(p): int(s) for p, s in (a.split(":") for a in args)}
    noted = dict(roots)
    said = b""
    while True:  # until the driver writes goodbye or dies
        ready, _, _ = select.select([sys.stdin.buffer], [], [], SNAPSHOT_SECONDS)
        if ready:
            chunk = os.read(sys.stdin.fileno(), 64)
            if not chunk:
                break
            said += chunk
            continue
        alive = {p for p, s in roots.items() if start_time(p) == s}
        noted.update(descendants(alive))
    if said != _BYE:
        reap(noted, set(roots))


if __name__ == "__main__":
    _main(sys.argv[1:])
