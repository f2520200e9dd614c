"""`study ui NAME`: MLflow's UI on the study's store without MLflow's GenAI job runner, and
the direct URL of the study's runs; with an MLflow server as tracking URI, the writer prints
no "View run ... at" lines into the live display. A real `study ui` process, a real study."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from study.run import launch as launching
from study.run.executor import InProcessExecutor
from study.run.prepare import Prepared, prepare
from study.spec import parse_spec
from study.stores.writer import TrackerProcess

from ...ports import free_port

pytestmark = pytest.mark.integration


def _tree(pid: int) -> list[str]:
    """Command lines of `pid` and every process below it."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        todo.extend(parents.get(p, []))
        try:
            out.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return out


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_ui_without_job_runner_and_a_server_prints_no_view_run_lines(
    workdir: Path, tiny_spec: Any, study_cli: str, capfd: pytest.CaptureFixture[str]
) -> None:
    def make(prep: Prepared) -> tuple[InProcessExecutor, Callable[[], None]]:
        ex = InProcessExecutor(prep.data, slots=2)
        return ex, ex.close

    spec = tiny_spec(trials=2)
    launching.run_study(prepare(parse_spec(spec)), executor=make, say=lambda m: None, inline_tracking=True)
    port = free_port()
    ui = subprocess.Popen(
        [study_cli, "ui", "tiny-study", "--storage", spec["storage"], "--port", str(port)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert ui.stdout is not None
        printed = b""
        deadline = time.monotonic() + 180
        while not _up(base):
            assert ui.poll() is None and time.monotonic() < deadline, printed.decode()
            if select.select([ui.stdout], [], [], 1)[0]:
                printed += os.read(ui.stdout.fileno(), 65536)
        exp_id = MlflowClient(spec["tracking_uri"]).get_experiment_by_name("tiny-study").experiment_id
        assert f"the study's runs: {base}/#/experiments/{exp_id}/runs" in printed.decode(), printed.decode()
        processes = _tree(ui.pid)
        assert not [c for c in processes if "huey" in c or "mlflow.server.jobs" in c], processes  # no GenAI job runner

        capfd.readouterr()
        tracker = TrackerProcess(base)
        tracker.start_study("served", {"name": "served"}, None, "uid-1", start_time=time.time())
        tracker.start_trial(0, {"lr": 0.1}, {}, start_time=time.time())
        tracker.log_epoch(0, 1, {"val_loss": 0.5}, at=time.time())
        tracker.end_trial(0, "COMPLETE", "FINISHED", {"stop_reason": "completed"}, {"objective": 0.5}, end_time=time.time())
        assert tracker.end_study("FINISHED", {"finished": 1.0}, 1, time.time()) == 0
        tracker.close()
        out, err = capfd.readouterr()
        assert "View run" not in out + err and "View experiment" not in out + err
        client = MlflowClient(base)
        runs = client.search_runs([client.get_experiment_by_name("served").experiment_id])
        assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
