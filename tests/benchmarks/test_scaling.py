"""benchmarks/scaling.py --slots at a tiny size: its JSON line has every figure, and the counts
it reports say the study is whole (every trial and epoch in MLflow, nothing left RUNNING).

Real Ray (a simulated cluster of one 4-CPU node), a real Optuna journal and MLflow SQLite
file, and the query commands as fresh processes; the timings are checked for presence and
sense only (the benchmark prints its targets, the tests never time anything)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scaling.py"
TRIALS, SLOTS, EPOCHS, EPOCH_SECONDS = 24, 4, 2, 0.05
KEYS = {
    "trials", "slots", "ideal_s", "wall_s", "efficiency", "driver_peak_rss_mb", "writer_peak_rss_mb", "mlflow_trial_runs",
    "mlflow_epoch_points", "running_left", "status_s", "best_s", "best_trials_s", "resume_first_dispatch_s",
}  # fmt: skip


@pytest.fixture(scope="module")
def figures() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "HPSTUDY_", "MLFLOW_"))}
    cmd = [sys.executable, str(SCRIPT), "--trials", str(TRIALS), "--slots", str(SLOTS), "--epochs", str(EPOCHS),
           "--epoch-seconds", str(EPOCH_SECONDS), "--json"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_json_line_has_every_figure(figures: dict) -> None:
    assert KEYS <= figures.keys(), KEYS - figures.keys()
    assert "errors" not in figures, figures.get("errors")
    assert (figures["trials"], figures["slots"], figures["nodes"]) == (TRIALS, SLOTS, [SLOTS])


def test_every_trial_and_epoch_is_in_mlflow_and_nothing_runs(figures: dict) -> None:
    assert figures["completed"] == TRIALS
    assert figures["mlflow_trial_runs"] == TRIALS
    assert figures["mlflow_epoch_points"] == TRIALS * EPOCHS
    assert figures["optuna_running"] == 0 and figures["mlflow_running"] == 0 and figures["running_left"] == 0


def test_figures_make_sense(figures: dict) -> None:
    assert figures["ideal_s"] == pytest.approx(TRIALS * EPOCHS * EPOCH_SECONDS / SLOTS)
    # no study beats perfect packing of trials that sleep their whole length
    assert figures["wall_s"] >= figures["ideal_s"]
    assert figures["efficiency"] == pytest.approx(figures["ideal_s"] / figures["wall_s"], rel=1e-3)
    # ask to tell = queued in Ray + started to told; a trial runs at least its sleeps
    assert figures["held_s"] == pytest.approx(figures["queued_s"] + figures["ran_s"], abs=1e-3)
    assert figures["ran_s"] >= EPOCHS * EPOCH_SECONDS and figures["queued_s"] >= 0
    assert figures["driver_peak_rss_mb"] >= figures["driver_rss_start_mb"] > 0
    assert figures["writer_peak_rss_mb"] > 0 and figures["writer_processes"] == 1
    for key in ("status_s", "best_s", "best_trials_s", "resume_first_dispatch_s"):
        assert isinstance(figures[key], float) and math.isfinite(figures[key]) and figures[key] > 0, key
    phases = figures["resume_phases_s"]
    order = ["imported", "prepared", "ray_joined", "first_submit", "first_start"]
    assert [phases[k] for k in order] == sorted(phases[k] for k in order)
    assert phases["first_start"] == pytest.approx(figures["resume_first_dispatch_s"], abs=1e-2)
    # the worker that ran the resumed trial is a process of this machine, started by the resumed driver's Ray job
    assert 0 < phases["worker_spawned"] <= phases["first_start"] and figures["resume_worker_cpu_s"] > 0
    # where the study's wall time went besides the trials, in order, within the wall time
    study = figures["phases_s"]
    assert 0 <= study["to_first_start"] <= study["to_all_slots_busy"] < figures["wall_s"]
    assert 0 <= study["last_wave"] < figures["wall_s"] and 0 <= study["after_last_tell"] < figures["wall_s"]
