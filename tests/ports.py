"""Ports for the servers the tests start (Ray heads, PostgreSQL, MLflow, the UI).

A port from ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range, where every
outgoing connection and every server started on port 0 (Ray starts several per node) also
takes its ports: one can be taken between the pick and the server's start. A CI run lost its
Ray client port that way ("port 33703 ... is already in use"). So ports are drawn below the
ephemeral range and above Ray's worker range (10002-19999), where only a server asked for that
exact port can be, checked bindable on every IPv4 and IPv6 address, and never handed out twice
in one test session (a fixture may pick several before it starts anything)."""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

#: Ray's default worker ports (``--min-worker-port`` to ``--max-worker-port``).
RAY_WORKER_PORTS = range(10002, 20000)
_handed_out: set[int] = set()
_draw = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this machine
            continue
        with s:
            try:
                s.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # IPv6 switched off
                    continue
                return False
    return True


def free_port() -> int:
    """A TCP port that nothing is bound to now, outside the ephemeral and Ray's worker ranges."""
    low, high = RAY_WORKER_PORTS.stop, _ephemeral_start() - 1
    if high - low < 1000:  # an unusual ephemeral range: any non-privileged port above Ray's
        low, high = 1024, 65535
    for _ in range(1000):
        port = _draw.randint(low, high)
        if port in _handed_out or port in RAY_WORKER_PORTS:
            continue
        if _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port found in {low}-{high}")
