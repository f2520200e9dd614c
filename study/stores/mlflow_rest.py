"""A study's trial runs read from an MLflow server's REST API without importing MLflow.

``import mlflow`` costs over a second of CPU, more than the rest of ``study best`` on a
study of thousands of trials. What the query side needs from a server is two endpoints of
MLflow's REST API (version 2.0, stable): the experiment by name and the search of runs, as
``MlflowClient.search_runs`` sends them. `RestRunReader` sends those with the standard
library and gives what `study.stores.mlflow_sql.SqlRunReader` gives for a database store.

It is used only where MLflow's client would send nothing more: an ``http(s)://`` URI
without credentials in it, and no authentication plugin or TLS setting of MLflow's in the
environment (``MLFLOW_TRACKING_AUTH``, ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``); MLflow's own
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic) and
``MLFLOW_TRACKING_TOKEN`` (bearer) are sent as MLflow sends them. Anything else, and any
request that fails, leaves the reading to MLflow's client (`RestUnavailable`), with its
retries and its errors.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from study.names import Tag

#: MLflow settings that change what its client sends: with any of them, MLflow's client reads.
_MLFLOW_ONLY = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
)
TIMEOUT = 30.0
PAGE = 1000


class RestUnavailable(Exception):
    """The server did not answer as expected: let MLflow's client read instead."""


def rest_reader(uri: str) -> RestRunReader | None:
    """A `RestRunReader` for an MLflow server at `uri` when MLflow's client would send the
    same requests; else None."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or parts.query or parts.fragment:
        return None
    if any(os.environ.get(k) for k in _MLFLOW_ONLY):
        return None
    return RestRunReader(uri.rstrip("/"))


def _auth() -> dict[str, str]:
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.standard_b64encode(f"{user}:{password}".encode()).decode("ascii")}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


class RestRunReader:
    """Trial runs of a study from an MLflow server: (number, run id, status, start time in
    ms, latest metrics) per run, as ``MlflowClient.search_runs`` on the parent's children
    gives them (active runs only)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _request(self, path: str, body: dict[str, Any] | None = None, query: dict[str, str] | None = None) -> Any:
        url = f"{self.base}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", **_auth()} if data is not None else _auth()
        req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if e.code == 404 and path == "experiments/get-by-name":
                return None
            raise RestUnavailable(f"HTTP {e.code} from {path}") from None
        except (OSError, ValueError) as e:  # refused, timed out, not JSON
            raise RestUnavailable(f"{type(e).__name__} from {path}") from None

    def experiment_id(self, name: str) -> str | None:
        got = self._request("experiments/get-by-name", query={"experiment_name": name})
        return None if got is None else str(got["experiment"]["experiment_id"])

    def _search(self, experiment_id: str, where: str, page_size: int) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            body: dict[str, Any] = {"experiment_ids": [experiment_id], "filter": where, "max_results": page_size}
            if token:
                body["page_token"] = token
            page = self._request("runs/search", body)
            yield from page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return

    def trial_runs(self, experiment: str, parent_run_id: str, numbers: list[int] | None) -> list[tuple[Any, ...]]:
        """Every trial run under the parent, or those of the trials `numbers` (one search
        each, eight at a time)."""
        exp = self.experiment_id(experiment)
        if exp is None:
            return []
        parent = f"tags.`{Tag.PARENT}` = '{parent_run_id}'"
        if numbers is None:
            runs: list[dict[str, Any]] = list(self._search(exp, parent, PAGE))
        else:
            wheres = [f"{parent} and tags.`{Tag.TRIAL_NUMBER}` = '{int(n)}'" for n in numbers]
            with ThreadPoolExecutor(max_workers=8) as pool:
                runs = [r for page in pool.map(lambda w: list(self._search(exp, w, 100)), wheres) for r in page]
        out = []
        for run in runs:
            data = run.get("data", {})
            tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
            number = tags.get(Tag.TRIAL_NUMBER, "")
            if not number.isdigit():
                continue
            info = run["info"]
            metrics = {m["key"]: float(m["value"]) for m in data.get("metrics", [])}
            out.append((int(number), info["run_id"], info["status"], int(info.get("start_time", 0)), metrics))
        return out
