"""Session fixtures for cluster-scale tests: real PostgreSQL, a real `mlflow server`, a multi-node Ray.

- ``postgres`` -> :class:`Postgres`: PostgreSQL 15 started by ``infra/local/start.sh`` (as the
  ``postgres`` OS user when run as root) on a free 127.0.0.1 port; ``.url`` is the Optuna
  storage URL (``postgresql+psycopg2://optuna:...``), ``.create_database(name)`` gives a fresh,
  empty database for one test.
- ``mlflow_server`` -> :class:`MlflowServer`: ``mlflow server`` with the PostgreSQL backend and a
  local artifacts destination; ``.uri`` is the tracking URI; ``.stop()`` / ``.start()`` take it
  down and bring it back on the same port and store (for outage tests).
- ``ray_cluster`` -> :class:`RayCluster`: ``ray.cluster_utils.Cluster`` with a head (1 CPU) and
  two worker nodes (2 CPUs each); the second worker also has 1 logical GPU. ``.address`` is the
  GCS address for ``ray.init(address=...)``; ``.kill_node(node)`` / ``.add_worker(...)`` for
  node-failure tests.

A component that cannot start fails the test loudly (never a skip). Every process started here
is stopped here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..ports import free_port

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "infra" / "local"
PG_BIN = Path(os.environ.get("HPSTUDY_PG_BIN", "/usr/lib/postgresql/15/bin"))
VENV_BIN = REPO / ".venv" / "bin"


# --------------------------------------------------------------------------------- helpers
def make_state_dir(prefix: str) -> Path:
    """A short folder under /tmp the PostgreSQL OS user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    return path


def script_env(state: Path, **settings: Any) -> dict[str, str]:
    """os.environ plus the infra/local settings for one state folder, without a caller's Ray/MLflow targets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "MLFLOW_TRACKING"))}
    env["HPSTUDY_LOCAL_STATE"] = str(state)
    env["HPSTUDY_STOP_GRACE"] = "2"  # tests need no graceful Ray shutdown; keeps teardown quick
    if VENV_BIN.is_dir():
        env["HPSTUDY_PYTHON_BIN"] = str(VENV_BIN)
    env.update({k: str(v) for k, v in settings.items()})
    return env


def run_script(name: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run infra/local/NAME; a non-zero exit fails the calling test with the script's stderr."""
    proc = subprocess.run([str(LOCAL / name)], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"infra/local/{name} exited {proc.returncode}:\n{proc.stderr[-4000:]}", pytrace=False)
    return proc


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME='value'`` lines of a cluster.env written by start.sh."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, raw = line[len("export ") :].partition("=")
            values[name] = shlex.split(raw)[0] if raw else ""
    return values


def libpq_dsn(sqlalchemy_url: str) -> str:
    """postgresql+psycopg2://... (SQLAlchemy/Optuna form) -> postgresql://... (psycopg2/libpq form)."""
    return sqlalchemy_url.replace("postgresql+psycopg2://", "postgresql://", 1)


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries HPSTUDY_LOCAL_MARKER=marker (what stop.sh stops)."""
    needle = f"HPSTUDY_LOCAL_MARKER={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def local_marker(state: Path) -> str:
    """The marker infra/local/env.sh derives from the state folder."""
    out = subprocess.run(["bash", "-c", f"source {shlex.quote(str(LOCAL / 'env.sh'))}; echo $HPSTUDY_LOCAL_MARKER"],
                         env=script_env(state), capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


# ------------------------------------------------------------------------------ PostgreSQL
@dataclass
class Postgres:
    """A running PostgreSQL started by infra/local/start.sh for the test session."""

    url: str  # Optuna/SQLAlchemy storage URL, role ``optuna``, database ``optuna``
    mlflow_url: str  # SQLAlchemy URL of the MLflow backend database (role ``mlflow``)
    port: int
    state: Path
    env: dict[str, str] = field(repr=False)

    @property
    def dsn(self) -> str:
        """The Optuna database as a libpq URL for psycopg2.connect."""
        return libpq_dsn(self.url)

    def superuser_sql(self, sql: str) -> str:
        """Run SQL as the superuser over the server's private Unix socket; returns psql's output."""
        cmd = [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.state / "pg" / "run"),
               "-p", str(self.port), "-U", "postgres", "-d", "postgres"]  # fmt: skip
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        """A new empty database owned by ``optuna``; returns its Optuna storage URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.superuser_sql(f'CREATE DATABASE "{name}" OWNER optuna;')
        return self.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """PostgreSQL 15 on a free port of 127.0.0.1, as the postgres OS user; stopped at session end."""
    for binary in ("initdb", "pg_ctl", "postgres", "psql"):
        if not (PG_BIN / binary).exists():
            pytest.fail(f"PostgreSQL binary {PG_BIN / binary} is missing: install postgresql-15 (HPSTUDY_PG_BIN)", pytrace=False)
    state = make_state_dir("hpst-pg-")
    port = free_port()
    env = script_env(state, HPSTUDY_LOCAL_COMPONENTS="postgres", HPSTUDY_PG_PORT=port)
    try:
        run_script("start.sh", env)
        values = read_env_file(state / "cluster.env")
        yield Postgres(url=values["HPSTUDY_STORAGE"], mlflow_url=values["HPSTUDY_MLFLOW_BACKEND_STORE_URI"], port=port,
                       state=state, env=env)  # fmt: skip
    finally:
        subprocess.run([str(LOCAL / "stop.sh")], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------------------------- MLflow
@dataclass
class MlflowServer:
    """A real ``mlflow server`` (PostgreSQL backend, proxied local artifacts) on 127.0.0.1."""

    uri: str
    artifacts: Path
    env: dict[str, str] = field(repr=False)

    def __str__(self) -> str:
        return self.uri

    def is_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.uri + "/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Take the server down (all its processes); the store and port stay reserved for start()."""
        run_script("stop.sh", self.env, timeout=120)

    def start(self) -> None:
        """Bring the server back on the same port, backend store and artifacts folder."""
        run_script("start.sh", self.env, timeout=180)


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres) -> Iterator[MlflowServer]:
    """``mlflow server`` backed by the session's PostgreSQL; terminated at session end."""
    port = free_port()
    env = dict(postgres.env, HPSTUDY_LOCAL_COMPONENTS="mlflow", HPSTUDY_MLFLOW_PORT=str(port))
    server = MlflowServer(uri=f"http://127.0.0.1:{port}", artifacts=postgres.state / "mlartifacts", env=env)
    try:
        server.start()
        yield server
    finally:
        subprocess.run([str(LOCAL / "stop.sh")], env=env, capture_output=True, timeout=120, check=False)


# ------------------------------------------------------------------------------------- Ray
def _children_of(parents: list[int]) -> list[int]:
    """PIDs whose parent is one of `parents` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid in parents:
            out.append(int(entry))
    return out


@dataclass
class RayCluster:
    """A multi-node Ray cluster in this machine's processes (``ray.cluster_utils.Cluster``)."""

    cluster: Any  # ray.cluster_utils.Cluster
    cpu_worker: Any  # ray._private.node.Node with 2 CPUs
    gpu_worker: Any  # ray._private.node.Node with 2 CPUs and 1 logical GPU

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def nodes(self) -> list[Any]:
        return self.cluster.list_all_nodes()

    def add_worker(self, num_cpus: int = 2, num_gpus: int = 0) -> Any:
        """Start one more worker node and wait until it has joined; returns its Node."""
        node = self.cluster.add_node(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=OBJECT_STORE_BYTES)
        self.cluster.wait_for_nodes()
        return node

    def kill_node(self, node: Any) -> None:
        """Kill a worker node abruptly (SIGKILL to its raylet and workers), as a machine loss would.

        The worker processes the raylet started are killed first and explicitly: orphaned by a
        killed raylet, a worker would otherwise go on running (and streaming results straight to
        its owner) until it noticed, which a machine loss never allows."""
        import signal

        raylets = [p.pid for kind, p in node.live_processes() if kind == "raylet"]
        for pid in _children_of(raylets):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.cluster.remove_node(node, allow_graceful=False)

    def replace_node(self, node: Any) -> Any:
        """Kill `node` (if still alive) and start a worker with the same CPUs and GPUs in its place.

        Updates ``cpu_worker`` / ``gpu_worker`` when it was one of them, so later tests of the session
        see the same cluster shape. Returns the new Node.
        """
        params = node._ray_params
        if node in self.cluster.worker_nodes:
            self.kill_node(node)
        new = self.add_worker(num_cpus=params.num_cpus, num_gpus=params.num_gpus or 0)
        if node is self.cpu_worker:
            self.cpu_worker = new
        if node is self.gpu_worker:
            self.gpu_worker = new
        return new


OBJECT_STORE_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """Head (1 CPU) + worker (2 CPUs) + worker (2 CPUs, 1 logical GPU); shut down at session end."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 0,
            "object_store_memory": OBJECT_STORE_BYTES,
            "include_dashboard": False,
            # A killed node is declared dead after ~5 s instead of Ray's default ~15 s (3 s x 5 checks).
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5},
        },
    )
    try:
        cpu_worker = cluster.add_node(num_cpus=2, num_gpus=0, object_store_memory=OBJECT_STORE_BYTES)
        gpu_worker = cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        yield RayCluster(cluster=cluster, cpu_worker=cpu_worker, gpu_worker=gpu_worker)
    finally:
        cluster.shutdown()
