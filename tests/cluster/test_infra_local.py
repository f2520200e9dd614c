"""infra/local/start.sh and stop.sh: a real one-machine cluster comes up, is reachable, is locked down, goes away."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from .conftest import (
    LOCAL,
    free_port,
    libpq_dsn,
    local_marker,
    make_state_dir,
    marked_pids,
    read_env_file,
    run_script,
    script_env,
)

pytestmark = pytest.mark.integration


class Local:
    def __init__(self) -> None:
        self.state = make_state_dir("hpst-loc-")
        self.ports = {
            "HPSTUDY_RAY_PORT": free_port(),
            "HPSTUDY_RAY_DASHBOARD_PORT": free_port(),
            "HPSTUDY_RAY_CLIENT_PORT": free_port(),
            "HPSTUDY_PG_PORT": free_port(),
            "HPSTUDY_MLFLOW_PORT": free_port(),
        }
        self.env = script_env(self.state, HPSTUDY_RAY_HEAD_CPUS=1, HPSTUDY_RAY_WORKERS="1:0 1:1", HPSTUDY_RAY_OBJECT_STORE_MB=80,
                              **self.ports)  # fmt: skip
        self.started: subprocess.CompletedProcess[str] | None = None

    @property
    def values(self) -> dict[str, str]:
        return read_env_file(self.state / "cluster.env")

    def client_env(self, **extra: str) -> dict[str, str]:
        # without the caller's own Ray/MLflow targets: another suite's RAY_AUTH_TOKEN in the
        # environment would win over this cluster's RAY_AUTH_TOKEN_PATH
        own = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "MLFLOW_TRACKING"))}
        return {**own, **self.values, **extra}


@pytest.fixture(scope="module")
def local():
    cluster = Local()
    try:
        cluster.started = run_script("start.sh", cluster.env, timeout=240)
        yield cluster
    finally:
        subprocess.run([str(LOCAL / "stop.sh"), "--purge"], env=cluster.env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(cluster.state, ignore_errors=True)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(addr)
    return found


LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def test_start_prints_no_secret_and_keeps_secrets_in_0600_files(local):
    values = local.values
    secrets = [
        values["HPSTUDY_OPTUNA_DB_PASSWORD"],
        values["HPSTUDY_MLFLOW_DB_PASSWORD"],
        Path(values["RAY_AUTH_TOKEN_PATH"]).read_text(),
    ]
    assert all(len(s) >= 32 for s in secrets)
    for secret in secrets:
        assert secret not in local.started.stdout and secret not in local.started.stderr
    for name in ("cluster.env", "secrets.env", "ray_auth_token"):
        assert stat.S_IMODE((local.state / name).stat().st_mode) == 0o600, name
    # stdout is what `eval "$(start.sh)"` runs: comments and sourcing the env file, nothing else.
    code = [line for line in local.started.stdout.splitlines() if line and not line.startswith("#")]
    assert code == [f". '{local.state / 'cluster.env'}'"]
    assert values["RAY_ADDRESS"] == f"127.0.0.1:{local.ports['HPSTUDY_RAY_PORT']}"
    assert values["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{local.ports['HPSTUDY_MLFLOW_PORT']}"
    # No password on any process's command line (`ps` shows those to every user).
    for pid in marked_pids(local_marker(local.state)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
        except OSError:
            continue
        assert not any(s in cmdline for s in secrets), cmdline


RAY_PROBE = textwrap.dedent(
    """
    import json, ray
    ray.init(log_to_driver=False)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    @ray.remote(num_gpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()
    gpu_nodes = [n["NodeID"] for n in nodes if n["Resources"].get("GPU")]
    print(json.dumps({"cpus": sorted(n["Resources"].get("CPU", 0) for n in nodes), "gpu_nodes": gpu_nodes,
                      "gpu_task_node": ray.get(where.remote())}))
    """
)


def test_ray_sees_head_and_workers_with_their_own_resources(local):
    proc = subprocess.run([sys.executable, "-c", RAY_PROBE], env=local.client_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["cpus"] == [1.0, 1.0, 1.0]
    assert len(seen["gpu_nodes"]) == 1 and seen["gpu_task_node"] == seen["gpu_nodes"][0]


def test_ray_refuses_a_client_without_the_token(local):
    env = local.client_env(RAY_AUTH_TOKEN="0" * 48)  # RAY_AUTH_TOKEN takes precedence over the token file
    probe = "import ray; ray.init(log_to_driver=False); print('connected', len(ray.nodes()))"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "connected" not in proc.stdout
    assert "AuthenticationError" in proc.stderr, proc.stderr[-2000:]


def test_ray_jobs_api_needs_the_token(local):
    """The Jobs API runs arbitrary code: without the bearer token it answers 401/403."""
    url = local.values["HPSTUDY_RAY_DASHBOARD"] + "/api/jobs/"
    token = Path(local.values["RAY_AUTH_TOKEN_PATH"]).read_text().strip()

    def status(headers: dict[str, str]) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as err:
            return err.code

    assert status({}) == 401
    assert status({"Authorization": "Bearer " + "0" * 48}) == 403
    assert status({"Authorization": "Bearer " + token}) == 200


def test_dashboard_postgres_and_mlflow_listen_on_loopback_only(local):
    for var in ("HPSTUDY_RAY_DASHBOARD_PORT", "HPSTUDY_PG_PORT", "HPSTUDY_MLFLOW_PORT"):
        assert listening_addresses(local.ports[var]) == {LOOPBACK}, var


def test_postgres_accepts_the_credentials_of_the_env_file(local):
    values = local.values
    for url, user in ((values["HPSTUDY_STORAGE"], "optuna"), (values["HPSTUDY_MLFLOW_BACKEND_STORE_URI"], "mlflow")):
        with psycopg2.connect(libpq_dsn(url), connect_timeout=10) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (user,)
        conn.close()


def test_mlflow_server_answers_its_rest_api(local):
    uri = local.values["MLFLOW_TRACKING_URI"]
    with urllib.request.urlopen(uri + "/api/2.0/mlflow/experiments/search?max_results=5", timeout=10) as resp:
        body = json.load(resp)
    assert resp.status == 200
    assert [e["name"] for e in body["experiments"]] == ["Default"]


def test_start_again_is_idempotent(local):
    before = (local.state / "cluster.env").read_text()
    pids = sorted(marked_pids(local_marker(local.state)))
    run_script("start.sh", local.env, timeout=120)
    assert (local.state / "cluster.env").read_text() == before
    assert set(pids) <= set(marked_pids(local_marker(local.state)))


def test_stop_leaves_no_process_and_frees_every_port(local):
    marker = local_marker(local.state)
    assert len(marked_pids(marker)) >= 6  # postgres, mlflow, 3 ray nodes and their helpers
    run_script("stop.sh", local.env, timeout=120)
    assert marked_pids(marker) == []
    for var, port in local.ports.items():
        assert listening_addresses(port) == set(), var
    again = run_script("stop.sh", local.env, timeout=60)
    assert again.returncode == 0


def test_a_bad_setting_is_one_clear_error_and_starts_nothing(tmp_path):
    state = tmp_path / "never"
    proc = subprocess.run([str(LOCAL / "start.sh")], env=script_env(state, HPSTUDY_RAY_WORKERS="2:1 two"),
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "HPSTUDY_RAY_WORKERS" in proc.stderr and "'two'" in proc.stderr and "Traceback" not in proc.stderr
    assert not state.exists()
