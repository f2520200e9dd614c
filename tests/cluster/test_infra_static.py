"""Static checks of infra/: compose, launcher config and KubeRay manifests parse and point at real things.

Docker, AWS and Kubernetes are not available to the tests, so these files are checked for what
can be checked without them: they parse with yaml.safe_load, every file, build context and entry
point they name exists in the project, every ${VAR} is documented in infra/README.md, no secret
is written in plain text, published ports stay on 127.0.0.1, and Ray token auth is on. The two
shell entry points of the compose setup are run for real, with stubs for mlflow and psql.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE_DIR = INFRA / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
AWS = INFRA / "aws" / "cluster.yaml"
RAYCLUSTER = INFRA / "kuberay" / "raycluster.yaml"
RAYJOB = INFRA / "kuberay" / "rayjob.yaml"
README = INFRA / "README.md"

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
SECRET_ENV = re.compile(r"^[A-Z][A-Z0-9_]*(PASSWORD|TOKEN|SECRET)$")  # an environment variable holding a secret


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (dotted path, scalar) in a parsed YAML tree."""
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in walk(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in walk(v, f"{path}[{i}]")]
    return [(path, node)]


def readme_names() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README.read_text()))


def k8s_env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


# ------------------------------------------------------------------------------- all files
@pytest.mark.parametrize("path", [COMPOSE, AWS, RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_every_variable_used_is_documented_in_the_readme(path):
    used = {m.group(1) for m in VAR.finditer(path.read_text())}
    assert used or path == AWS  # the launcher config uses no ${...}: it has nothing to substitute
    missing = used - readme_names()
    assert not missing, f"{path.name} uses ${{...}} variables not documented in infra/README.md: {sorted(missing)}"


def test_every_local_setting_is_documented_in_the_readme():
    settings = set(re.findall(r"^(HPSTUDY_[A-Z0-9_]+)=\"\$\{", (INFRA / "local" / "env.sh").read_text(), re.MULTILINE))
    assert len(settings) >= 15
    assert not settings - readme_names(), sorted(settings - readme_names())


@pytest.mark.parametrize("path", [COMPOSE, AWS, RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_no_default_or_plaintext_secret(path):
    text = path.read_text()
    assert "password1234" not in text
    for m in VAR.finditer(text):
        if SECRET_NAME.search(m.group(1)):
            assert m.group(2) == ":?", f"{path.name}: secret ${{{m.group(1)}}} must be required (:?), not defaulted"
    docs = load_all(path) if path.parent.name == "kuberay" else [load(path)]
    checked = 0
    for doc in docs:
        for where, value in walk(doc):
            key = where.rsplit(".", 1)[-1]
            if SECRET_ENV.match(key) and isinstance(value, str):  # compose `environment:` mappings
                assert VAR.fullmatch(value), f"{path.name}: {where} holds a literal secret"
                checked += 1
            if key == "name" and isinstance(value, str) and SECRET_ENV.match(value):  # k8s `env:` lists
                entry = where.rsplit(".", 1)[0]
                assert not any(w == entry + ".value" for w, _ in walk(doc)), (
                    f"{path.name}: {entry} ({value}) must come from a Secret (valueFrom), not a literal value"
                )
                checked += 1
    assert checked or path == AWS  # the launcher config holds no secret variable at all


# --------------------------------------------------------------------------------- compose
@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE)


def dockerfile_copies(dockerfile: Path) -> list[tuple[str, str]]:
    copies = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY" and not any(p.startswith("--from") for p in parts):
            *sources, dest = parts[1:]
            copies += [(s, dest) for s in sources]
    return copies


def test_compose_builds_the_project_image_from_paths_that_exist(compose):
    built = [s for s in compose["services"].values() if "build" in s]
    assert len(built) >= 3  # mlflow, ray-head, ray-worker(s)
    for service in built:
        context = (COMPOSE_DIR / service["build"]["context"]).resolve()
        assert context == REPO
        dockerfile = context / service["build"]["dockerfile"]
        assert dockerfile.is_file()
    dockerfile = REPO / built[0]["build"]["dockerfile"]
    text = dockerfile.read_text()
    assert re.search(r'pip install "\.(\$\{HPSTUDY_PIP_EXTRAS\})?"', text), "the image must pip install the project"
    ignore = (dockerfile.parent / (dockerfile.name + ".dockerignore")).read_text().splitlines()
    for source, _ in dockerfile_copies(dockerfile):
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, f"{source} is excluded from the build context"


def test_the_study_entry_point_the_images_run_is_declared_and_defined():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["study"].partition(":")
    path = REPO / module.replace(".", "/")
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text())
    assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    cli = importlib.import_module(module)
    commands = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"launch", "resume", "submit", "status"} <= set(commands)


def test_compose_publishes_ports_on_loopback_only(compose):
    published = [(name, p) for name, s in compose["services"].items() for p in s.get("ports", [])]
    assert {name for name, _ in published} == {"postgres", "mlflow", "ray-head"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name} publishes {port!r} beyond 127.0.0.1"
    # The GCS port (6379) is not published: drivers run on the head (exec or Ray Jobs API).
    assert not any(p.endswith(":6379") for _, p in published)


def test_compose_ray_nodes_use_token_auth_and_only_the_head_holds_credentials(compose):
    ray_services = {n: s for n, s in compose["services"].items() if n.startswith("ray-")}
    assert {"ray-head", "ray-worker", "ray-gpu-worker"} <= set(ray_services)
    for name, service in ray_services.items():
        env = service["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert VAR.fullmatch(env["RAY_AUTH_TOKEN"]).group(2) == ":?", name
        assert service["command"].split()[:2] == ["ray", "start"], name
        if name != "ray-head":
            assert not {"HPSTUDY_STORAGE", "MLFLOW_TRACKING_PASSWORD"} & set(env), f"{name} must not hold credentials"
            assert "--address ray-head:6379" in service["command"]
    assert "HPSTUDY_STORAGE" in ray_services["ray-head"]["environment"]
    gpu = ray_services["ray-gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_compose_mounts_and_entry_points_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).is_file(), f"{name} mounts missing {source}"
                assert os.access(COMPOSE_DIR / source, os.X_OK), f"{source} must be executable"
    entrypoint = compose["services"]["mlflow"]["entrypoint"][0]
    copied = {dest: src for src, dest in dockerfile_copies(COMPOSE_DIR / "Dockerfile")}
    assert entrypoint in copied, f"{entrypoint} is not copied into the image"
    assert os.access(REPO / copied[entrypoint], os.X_OK)


# ------------------------------------------------------- compose entry points, run for real
def run_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir(exist_ok=True)
    stub = stub_dir / "mlflow"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_OUT/args"\nenv > "$STUB_OUT/env"\n')
    stub.chmod(0o755)
    base = {"PATH": f"{stub_dir}:/usr/bin:/bin", "STUB_OUT": str(tmp_path), "HPSTUDY_MLFLOW_AUTH_DIR": str(tmp_path / "auth"),
            "HPSTUDY_MLFLOW_ARTIFACTS_DIR": str(tmp_path / "artifacts")}  # fmt: skip
    (tmp_path / "auth").mkdir(exist_ok=True)
    return subprocess.run(["sh", str(COMPOSE_DIR / "mlflow-entrypoint.sh")], env={**base, **env}, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip


GOOD = {"MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-admin-secret", "HPSTUDY_MLFLOW_DB_PASSWORD": "db-secret-123",
        "MLFLOW_ALLOWED_HOSTS": "localhost:5000,mlflow:5000"}  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": ""}, "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "password1234"}, "default password"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, "at least 12"),
        ({"HPSTUDY_MLFLOW_DB_PASSWORD": ""}, "HPSTUDY_MLFLOW_DB_PASSWORD is not set"),
        ({"MLFLOW_ALLOWED_HOSTS": "localhost:5000,*"}, "must not allow every host"),
        ({"MLFLOW_ALLOWED_HOSTS": ""}, "MLFLOW_ALLOWED_HOSTS is not set"),
    ],
)
def test_mlflow_entrypoint_refuses_unsafe_settings(tmp_path, override, message):
    proc = run_entrypoint(tmp_path, **{**GOOD, **override})
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "args").exists()  # mlflow never started


def test_mlflow_entrypoint_starts_basic_auth_with_allowed_hosts_and_no_password_in_argv(tmp_path):
    proc = run_entrypoint(tmp_path, **GOOD)
    assert proc.returncode == 0, proc.stderr
    args = (tmp_path / "args").read_text().split("\n")
    assert args[:3] == ["server", "--app-name", "basic-auth"]
    assert args[args.index("--allowed-hosts") + 1] == "localhost:5000,mlflow:5000"
    assert not any(GOOD["HPSTUDY_MLFLOW_DB_PASSWORD"] in a or GOOD["MLFLOW_AUTH_ADMIN_PASSWORD"] in a for a in args)
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://mlflow:db-secret-123@postgres:5432/mlflow"
    ini = tmp_path / "auth" / "basic_auth.ini"
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(ini)
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    assert GOOD["MLFLOW_AUTH_ADMIN_PASSWORD"] not in ini.read_text()


def test_postgres_init_creates_both_roles_with_passwords_on_stdin_only(tmp_path):
    stub = tmp_path / "psql"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_OUT/args"\ncat > "$STUB_OUT/stdin"\n')
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "STUB_OUT": str(tmp_path), "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
           "HPSTUDY_OPTUNA_DB_PASSWORD": "opt-secret-1", "HPSTUDY_MLFLOW_DB_PASSWORD": "mlf-secret-2"}  # fmt: skip
    script = str(COMPOSE_DIR / "postgres-init.sh")
    proc = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    sql = (tmp_path / "stdin").read_text()
    assert "CREATE ROLE optuna LOGIN PASSWORD 'opt-secret-1'" in sql and "CREATE DATABASE mlflow OWNER mlflow" in sql
    assert "secret" not in (tmp_path / "args").read_text()
    bad = subprocess.run(
        ["bash", script], env={**env, "HPSTUDY_MLFLOW_DB_PASSWORD": ""}, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "HPSTUDY_MLFLOW_DB_PASSWORD" in bad.stderr


# ------------------------------------------------------------------------------------- AWS
def test_aws_launcher_config_has_cpu_and_gpu_worker_types_within_bounds():
    config = load(AWS)
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    gpu = [n for n, t in workers.items() if re.match(r"(g|p)\d", t["node_config"]["InstanceType"])]
    cpu = [n for n in workers if n not in gpu]
    assert gpu and cpu
    for t in workers.values():
        assert 0 <= t["min_workers"] <= t["max_workers"]
    assert sum(t["max_workers"] for t in workers.values()) <= config["max_workers"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # the head runs the driver only


def test_aws_launcher_installs_the_project_on_every_node_with_token_auth():
    config = load(AWS)
    mounts = config["file_mounts"]
    project = [remote for remote, local in mounts.items() if (REPO / local).resolve() == REPO]
    assert len(project) == 1
    for local in mounts.values():
        if not local.startswith("~"):
            assert (REPO / local).exists(), f"file_mounts source {local} does not exist"
    assert any("pip install" in c and project[0] in c for c in config["setup_commands"])
    assert not config.get("head_setup_commands") and not config.get("worker_setup_commands")  # every node alike
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token" in c for c in starts), key
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert ".venv" in config["rsync_exclude"]
    ranges = [r["CidrIp"] for p in config["provider"]["security_group"]["IpPermissions"] for r in p["IpRanges"]]
    assert "0.0.0.0/0" not in ranges


# --------------------------------------------------------------------------------- KubeRay
def cluster_specs() -> list[tuple[str, dict, list[dict]]]:
    """(file, RayClusterSpec, all docs of the file) for the RayCluster and the RayJob."""
    cluster_docs, job_docs = load_all(RAYCLUSTER), load_all(RAYJOB)
    cluster = next(d for d in cluster_docs if d["kind"] == "RayCluster")
    job = next(d for d in job_docs if d["kind"] == "RayJob")
    return [("raycluster.yaml", cluster["spec"], cluster_docs), ("rayjob.yaml", job["spec"]["rayClusterSpec"], job_docs)]


@pytest.mark.parametrize(("name", "spec", "docs"), cluster_specs(), ids=["raycluster", "rayjob"])
def test_kuberay_enables_token_auth(name, spec, docs):
    assert spec["authOptions"]["mode"] == "token"
    secret = spec["authOptions"]["secretName"]
    assert secret in README.read_text(), "the README must say how to create the token Secret"
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            env = k8s_env(container)
            # The operator injects the token; nothing may turn auth off or hard-code a token.
            assert env.get("RAY_AUTH_MODE", {"value": "token"}).get("value") == "token"
            assert "value" not in env.get("RAY_AUTH_TOKEN", {})


def test_kuberay_rayjob_submitter_authenticates_with_the_cluster_token():
    job = next(d for d in load_all(RAYJOB) if d["kind"] == "RayJob")
    secret = job["spec"]["rayClusterSpec"]["authOptions"]["secretName"]
    env = k8s_env(job["spec"]["submitterPodTemplate"]["spec"]["containers"][0])
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "auth_token"}
    words = job["spec"]["entrypoint"].split()
    assert words[:2] == ["study", "launch"] and "--address" in words and "--storage" in words


@pytest.mark.parametrize(("name", "spec", "docs"), cluster_specs(), ids=["raycluster", "rayjob"])
def test_kuberay_has_cpu_and_gpu_worker_groups_within_bounds(name, spec, docs):
    groups = spec["workerGroupSpecs"]

    def gpus(group: dict) -> int:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        return int(limits.get("nvidia.com/gpu", 0))

    assert any(gpus(g) == 0 for g in groups) and any(gpus(g) > 0 for g in groups)
    for g in groups:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    images = {c["image"] for grp in [spec["headGroupSpec"], *groups] for c in grp["template"]["spec"]["containers"]}
    assert images == {"${HPSTUDY_IMAGE}"}


@pytest.mark.parametrize(("name", "spec", "docs"), cluster_specs(), ids=["raycluster", "rayjob"])
def test_kuberay_dashboard_stays_cluster_internal(name, spec, docs):
    head = spec["headGroupSpec"]
    if head["rayStartParams"].get("dashboard-host") == "0.0.0.0":
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"
        policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        assert policies, f"{name}: dashboard-host 0.0.0.0 needs a NetworkPolicy keeping it in-cluster"
        labels = head["template"]["metadata"]["labels"] | {"ray.io/cluster": "hpstudy"}
        covering = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert covering, f"{name}: no NetworkPolicy selects the head pod"
        for policy in covering:
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            for rule in policy["spec"]["ingress"]:
                assert all(set(peer) == {"podSelector"} for peer in rule["from"]), "ingress only from pods of the cluster"
        readme = README.read_text()
        assert 'dashboard-host: "0.0.0.0"' in readme and "ClusterIP" in readme and "NetworkPolicy" in readme
