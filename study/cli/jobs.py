"""`study submit`: run a study's driver on the cluster as a Ray Job, so it outlives the laptop.

    study submit SPEC.yaml --address http://HEAD:8265 [--trials N] [--concurrency N]
                 [--storage URL] [--tracking-uri URI]       prints the job id
    study status --job JOB_ID --address http://HEAD:8265      the job's state
    study logs JOB_ID --address http://HEAD:8265 [--follow]   the driver's output

The job's runtime environment carries the spec's folder (``working_dir``: the folder of the
spec file, without ``.venv``, ``.git``, ``mlruns``, ``mlflow.db``, ``.hpstudy``, caches and
what its ``.gitignore`` leaves out), hpstudy's own packages (``py_modules``: ``study``,
``trainers``, ``search_spaces``) and the spec (its text, in the job's environment, written to
a file in the job's working folder). The entrypoint writes that file and runs ``PYTHON -m
study.cli launch SPEC_FILE --address auto --quiet`` on the head node (PYTHON: the interpreter
of the cluster's Ray workers). Relative paths in the spec (the user's ``model:`` or
``trainer:`` file, a space file, a CSV dataset) resolve in the job's copy of the spec's
folder as they do locally, and the trials run in copies of it on every node
(`study.run.code`); a user's file must therefore lie in the spec's folder.

The study must be reachable from the cluster and outlive the job: the Optuna storage must
be a database server (PostgreSQL/MySQL) and MLflow a tracking server or database, not files
in the job's temporary folder. Their URLs (with passwords) go to the job as environment
variables (``HPSTUDY_STORAGE``, ``MLFLOW_TRACKING_URI``) of its runtime environment, never on
its command line; anyone holding the cluster's token can read a job's runtime environment
through the Jobs API, as they can run code on it.

Authentication: with Ray token auth (``RAY_AUTH_MODE=token``), the token from
``RAY_AUTH_TOKEN`` or the file ``RAY_AUTH_TOKEN_PATH`` is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from study.run.code import EXCLUDES, SUBMITTED_ENV
from study.spec import SpecError, StudySpec, load_spec
from study.stores.uris import STORAGE_ENV, TRACKING_ENV, is_local_file, mask, resolve, with_env_defaults
from trainers.user_code import is_file_ref, split_ref

ROOT = Path(__file__).resolve().parents[2]
#: hpstudy's packages, shipped with every job (the cluster's Python has its dependencies).
PACKAGES = ("study", "trainers", "search_spaces")
SPEC_ENV = SUBMITTED_ENV
SPEC_FILE = ".hpstudy-submitted-spec.yaml"
DASHBOARD_ENVS = ("HPSTUDY_RAY_DASHBOARD", "RAY_API_SERVER_ADDRESS")
AGENT_WAIT_SECONDS = 120
#: The Python interpreter of the cluster's Ray workers, which has the project's dependencies
#: (`python` on the head's PATH may be another one): the prefix Ray's own ``_raylet.so`` was
#: loaded from by the job's supervisor (a Ray worker, the parent of the entrypoint's shell),
#: whose ``bin/python3`` is that interpreter; ``python3`` when it cannot be found (Linux only).
WORKER_PYTHON = (
    "P=$(grep -m1 -oE '/[^ ]+/lib/python3[^/]*/(site|dist)-packages/ray/' /proc/$PPID/maps 2>/dev/null"
    " | sed -E 's#/lib/python3[^/]*/(site|dist)-packages/ray/$##'); "
    'if [ -x "$P/bin/python3" ]; then PY="$P/bin/python3"; else PY=python3; fi; '
)


def dashboard_address(address: str | None) -> str:
    """The Jobs API address: the flag, else ``HPSTUDY_RAY_DASHBOARD`` / ``RAY_API_SERVER_ADDRESS``."""
    for value in (address, *(os.environ.get(e) for e in DASHBOARD_ENVS)):
        if value:
            if not value.startswith(("http://", "https://")):
                raise SpecError(f"--address {value!r}: the Ray dashboard's HTTP address is needed, e.g. http://127.0.0.1:8265")
            return value.rstrip("/")
    raise SpecError("--address: give the Ray dashboard's address (http://HEAD:8265), or set HPSTUDY_RAY_DASHBOARD")


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer TOKEN`` from RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (else none:
    Ray itself sends its default token file's when RAY_AUTH_MODE=token)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path:
        try:
            token = Path(path).read_text().strip()
        except OSError as e:
            raise SpecError(f"RAY_AUTH_TOKEN_PATH {path!r}: cannot read the token ({e.strerror})") from None
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextmanager
def _explicit_address() -> Iterator[None]:
    """Ray's client prefers RAY_ADDRESS / RAY_API_SERVER_ADDRESS over its argument; the flag wins here."""
    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def client(address: str | None) -> Any:
    """A `JobSubmissionClient` for the dashboard at `address`, authenticated; SpecError if unreachable."""
    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(logging.ERROR)  # not a line per packaged file or default exclude
    url = dashboard_address(address)
    try:
        with _explicit_address():
            return JobSubmissionClient(url, headers=auth_headers())
    except Exception as e:  # noqa: BLE001 - connection refused, 401/403, version: one message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecError(f"--address {url!r}: cannot reach the Ray Jobs API ({first})") from None


def job_spec(spec_path: str, overrides: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The spec's text for the job (overrides applied) and the job's environment variables.
    SpecError for a spec that cannot run as a job (local storage or tracking files, code
    outside the spec's folder)."""
    import yaml

    spec = load_spec(spec_path)
    spec = with_env_defaults(spec, overrides.get("storage"), overrides.get("tracking_uri")).with_overrides(**overrides)
    _code_travels(spec)
    storage = resolve(spec.storage)
    if is_local_file(storage):
        raise SpecError(
            f"storage {mask(storage)!r}: a submitted study needs a database server every node can reach "
            f"(postgresql://...): --storage or {STORAGE_ENV}"
        )
    uri = spec.tracking_uri
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        raise SpecError(
            f"tracking_uri {mask(uri)!r}: a submitted study needs an MLflow server or database "
            f"(http://HOST:5000): --tracking-uri or {TRACKING_ENV}"
        )
    data = spec.model_dump(mode="json")
    data["storage"] = None  # travels as HPSTUDY_STORAGE, not in the spec text
    data["tracking_uri"] = None
    data = {k: v for k, v in data.items() if v is not None}
    return yaml.safe_dump(data, sort_keys=False), {STORAGE_ENV: storage, TRACKING_ENV: uri}


def _code_travels(spec: StudySpec) -> None:
    """A SpecError when the user's code file lies outside the spec's folder (the job's working_dir)."""
    if spec.code is None or spec.base_dir is None:
        return
    role, ref = spec.code
    target, _ = split_ref(ref, role)
    if not is_file_ref(target):
        return  # a module: the spec's folder travels and goes on the path; an installed one must be on the cluster
    path = os.path.abspath(spec.path(target))
    if os.path.relpath(path, spec.base_dir).startswith(os.pardir):
        raise SpecError(
            f"field {role}: {path} is outside the spec's folder {spec.base_dir}, which is what a submitted study "
            "carries to the cluster; move the file (or the spec) so that the spec's folder holds it"
        )


def job_runtime_env(spec_path: str, env: dict[str, str]) -> dict[str, Any]:
    """The job's runtime environment: the spec's folder, hpstudy's packages, the environment."""
    folder = os.path.dirname(os.path.abspath(spec_path))
    return {
        "working_dir": folder,
        "py_modules": [str(ROOT / p) for p in PACKAGES],
        "excludes": EXCLUDES,
        "env_vars": env,
    }


def submit(spec_path: str, address: str | None, overrides: dict[str, Any]) -> tuple[str, str]:
    """Submit the study as a Ray Job; returns (job id, dashboard address)."""
    text, env = job_spec(spec_path, overrides)
    c = client(address)
    runtime_env = job_runtime_env(spec_path, {**env, SPEC_ENV: text})
    name = Path(spec_path).stem
    spec_file = shlex.quote(SPEC_FILE)
    entrypoint = f'{WORKER_PYTHON}printf "%s" "${SPEC_ENV}" > {spec_file} && exec "$PY" -m study.cli launch {spec_file} --address auto --quiet'
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    while True:
        try:
            job_id = c.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata={"hpstudy.spec": name})
            return str(job_id), dashboard_address(address)
        except RuntimeError as e:  # a head that just started has no job agent yet
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise SpecError(f"the Ray Jobs API refused the job: {str(e).strip().splitlines()[0]}") from None
            time.sleep(1.0)
        except ValueError as e:  # the spec's folder cannot be packaged (too large, unreadable)
            raise SpecError(f"cannot ship the spec's folder {os.path.dirname(os.path.abspath(spec_path))}: {e}") from None


def state(job_id: str, address: str | None) -> tuple[str, str]:
    """(status, message) of a submitted job."""
    c = client(address)
    try:
        info = c.get_job_info(job_id)
    except Exception as e:  # noqa: BLE001 - an unknown id
        raise SpecError(f"job {job_id!r}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    return str(getattr(info.status, "value", info.status)), str(info.message or "")


def job_logs(job_id: str, address: str | None, write: Callable[[str], None], follow: bool = False) -> str:
    """Write the job's output so far, or (follow) as it comes until the job ends; returns the
    job's final status (or its current one without follow)."""
    c = client(address)
    status, _ = state(job_id, address)  # an unknown id is one clear error
    if not follow:
        write(c.get_job_logs(job_id))
        return status
    import asyncio

    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(tail())
    return state(job_id, address)[0]


# -- the commands ------------------------------------------------------------------------------
ADDRESS_HELP = "Ray dashboard / Jobs API, http://HEAD:8265 (default: env HPSTUDY_RAY_DASHBOARD)"


def add_commands(sub: Any) -> None:
    submit_cmd = sub.add_parser("submit", help="run the study's driver on a Ray cluster as a Ray Job; prints the job id")
    submit_cmd.add_argument("spec", help="YAML spec file")
    submit_cmd.add_argument("--address", help=ADDRESS_HELP)
    submit_cmd.add_argument("--trials", type=int, help="number of finished trials to reach (overrides the spec)")
    submit_cmd.add_argument("--concurrency", type=int, help="trials in flight (default: what the Ray cluster's CPUs hold)")
    submit_cmd.add_argument(
        "--storage", help=f"Optuna storage, a database server (first found wins: this flag, the spec, env {STORAGE_ENV})"
    )
    submit_cmd.add_argument(
        "--tracking-uri", dest="tracking_uri", help=f"MLflow server (first found wins: this flag, the spec, env {TRACKING_ENV})"
    )
    submit_cmd.set_defaults(func=submit_command)
    logs = sub.add_parser("logs", help="the output of a study submitted as a Ray Job")
    logs.add_argument("job_id", help="the Ray job id `study submit` printed")
    logs.add_argument("--address", help=ADDRESS_HELP)
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    logs.set_defaults(func=logs_command)


def submit_command(args: argparse.Namespace) -> int:
    overrides = {
        "trials": args.trials,
        "concurrency": args.concurrency,
        "storage": args.storage,
        "tracking_uri": args.tracking_uri,
    }
    job_id, dash = submit(args.spec, args.address, overrides)
    print(f"submitted; follow it with: study logs {job_id} --address {dash} --follow", file=sys.stderr)
    print(f"its state: study status --job {job_id} --address {dash}", file=sys.stderr)
    print(job_id)
    return 0


def job_status(args: argparse.Namespace) -> int:
    """``study status --job JOB``."""
    status, message = state(args.job, args.address)
    print(f"job {args.job}: {status}" + (f" ({message})" if message else ""))
    return 0


def logs_command(args: argparse.Namespace) -> int:
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    status = job_logs(args.job_id, args.address, write, follow=args.follow)
    if args.follow:
        print(f"job {args.job_id}: {status}", file=sys.stderr)
        return 0 if status == "SUCCEEDED" else 1
    return 0
