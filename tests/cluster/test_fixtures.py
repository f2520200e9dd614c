"""The cluster fixtures give real, working components: PostgreSQL, an MLflow server, a multi-node Ray."""

from __future__ import annotations

import collections
import http.client
import time
import uuid
from urllib.parse import urlsplit

import psycopg2
import pytest

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------ PostgreSQL
def test_postgres_accepts_the_optuna_role_and_stores_rows(postgres):
    with psycopg2.connect(postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database(), inet_server_addr()::text, current_setting('server_version_num')")
        user, database, addr, version = cur.fetchone()
        cur.execute("CREATE TEMP TABLE t (x int)")
        cur.execute("INSERT INTO t SELECT generate_series(1, 100)")
        cur.execute("SELECT sum(x) FROM t")
        (total,) = cur.fetchone()
    conn.close()
    assert (user, database) == ("optuna", "optuna")
    assert addr.split("/")[0] == "127.0.0.1"
    assert int(version) // 10000 == 15
    assert total == 5050


def test_postgres_refuses_a_wrong_password(postgres):
    parts = urlsplit(postgres.dsn)
    wrong = postgres.dsn.replace(f":{parts.password}@", ":not-the-password@")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong, connect_timeout=5)


def test_postgres_create_database_gives_an_empty_database_owned_by_optuna(postgres):
    name = f"t_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    assert url.endswith("/" + name)
    with psycopg2.connect(url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database(), count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone() == (name, 0)
    conn.close()


# ---------------------------------------------------------------------------------- MLflow
def test_mlflow_server_records_over_rest_into_postgres_and_serves_artifacts(mlflow_server, postgres, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    name = f"fixture-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    run = client.create_run(experiment_id)
    for epoch in range(1, 4):
        client.log_metric(run.info.run_id, "val_loss", 1.0 / epoch, step=epoch)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert client.get_experiment_by_name(name).experiment_id == experiment_id
    # The artifact went through the server's proxy into the artifacts destination on disk.
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    assert [p.read_text() for p in mlflow_server.artifacts.rglob("note.txt")] == ["hello"]
    # The backend store is the PostgreSQL database of the mlflow role.
    with psycopg2.connect(postgres.mlflow_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM experiments WHERE name = %s", (name,))
        assert cur.fetchone() == (1,)
    conn.close()


def test_mlflow_server_stop_and_start_keep_the_store(mlflow_server):
    """What an outage test needs: the server goes away completely and comes back with its data."""
    from mlflow.tracking import MlflowClient

    name = f"outage-{uuid.uuid4().hex[:8]}"
    experiment_id = MlflowClient(tracking_uri=mlflow_server.uri).create_experiment(name)
    mlflow_server.stop()
    try:
        assert not mlflow_server.is_up()
    finally:
        mlflow_server.start()
    assert mlflow_server.is_up()
    assert MlflowClient(tracking_uri=mlflow_server.uri).get_experiment_by_name(name).experiment_id == experiment_id


def test_mlflow_server_rejects_a_foreign_host_header(mlflow_server):
    """--allowed-hosts is set: a DNS-rebinding style Host header is refused, the real one is not."""
    parts = urlsplit(mlflow_server.uri)

    def status(host: str) -> int:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
        code = conn.getresponse().status
        conn.close()
        return code

    assert status(parts.netloc) == 200
    assert status("evil.example.com") in (400, 403)


# ------------------------------------------------------------------------------------- Ray
def test_ray_cluster_places_gpu_tasks_only_on_the_gpu_node(ray_cluster):
    import ray

    ray.init(address=ray_cluster.address, log_to_driver=False)
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 3
        assert ray.cluster_resources()["CPU"] == 5 and ray.cluster_resources()["GPU"] == 1

        @ray.remote(num_cpus=1, num_gpus=1)
        def on_gpu() -> tuple[str, list]:
            return ray.get_runtime_context().get_node_id(), ray.get_gpu_ids()

        @ray.remote(num_cpus=1)
        def on_cpu() -> str:
            time.sleep(0.3)
            return ray.get_runtime_context().get_node_id()

        placed = ray.get([on_gpu.remote() for _ in range(4)])
        assert {node for node, _ in placed} == {ray_cluster.gpu_worker.node_id}
        assert all(len(ids) == 1 for _, ids in placed)

        # CPU-only work spreads over several nodes; a request no node can meet stays pending.
        spread = collections.Counter(ray.get([on_cpu.options(scheduling_strategy="SPREAD").remote() for _ in range(6)]))
        assert len(spread) >= 2
        impossible = on_gpu.options(num_gpus=2).remote()
        ready, _ = ray.wait([impossible], timeout=2)
        assert ready == []
        ray.cancel(impossible, force=True)
    finally:
        ray.shutdown()


def test_ray_cluster_kill_node_mid_task_and_replace_it(ray_cluster, tmp_path):
    """A task running on a killed node is retried on another; replace_node restores the cluster's shape."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    killed = ray_cluster.cpu_worker
    started = tmp_path / "started"
    ray.init(address=ray_cluster.address, log_to_driver=False)
    try:

        @ray.remote(num_cpus=1, max_retries=2)
        def long_task(flag: str) -> str:
            with open(flag, "a") as f:
                f.write(ray.get_runtime_context().get_node_id() + "\n")
            time.sleep(2)
            return ray.get_runtime_context().get_node_id()

        ref = long_task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(killed.node_id, soft=True)).remote(
            str(started)
        )
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.read_text().split() == [killed.node_id]
        ray_cluster.kill_node(killed)
        finished_on = ray.get(ref, timeout=120)
        assert finished_on != killed.node_id
        assert started.read_text().split() == [killed.node_id, finished_on]  # ran twice: once killed, once retried

        new = ray_cluster.replace_node(killed)
        assert ray_cluster.cpu_worker is new and new.node_id != killed.node_id
        alive = [n for n in ray.nodes() if n["Alive"]]
        assert len(alive) == 3 and ray.cluster_resources()["CPU"] == 5
    finally:
        ray.shutdown()
