"""`python -m trainers`: a real training printed per epoch; bad input exits 2 in one line."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainers", *args], capture_output=True, text=True, timeout=120)


def test_trains_and_prints_every_epoch() -> None:
    p = run("--epochs", "3", "--depth", "1", "--width", "16", "--optimizer", "momentum", "--lr", "0.05", "--patience", "none")
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert [ln.split()[0] for ln in lines] == ["1", "2", "3"]
    assert "stop: completed at epoch 3" in p.stdout


def test_bad_value_exits_2_with_one_message() -> None:
    p = run("--dropout", "1.5")
    assert p.returncode == 2
    assert p.stderr.strip() == "error: dropout must be in [0, 1), got 1.5"
    p = run("--dataset", "nope.npz")
    assert p.returncode == 2 and "nope.npz" in p.stderr and "Traceback" not in p.stderr


def test_unparsable_flag_names_the_field() -> None:
    for args, message in [
        (("--depth", "abc"), "error: depth must be an integer, got 'abc'"),
        (("--width", "3,x"), "error: width must be an integer or comma-separated integers"),
        (("--lr", "fast"), "error: lr must be a number, got 'fast'"),
    ]:
        p = run(*args)
        assert p.returncode == 2 and p.stderr.startswith(message), p.stderr
