"""A study's trial runs read from a real ``mlflow server`` through its REST API without
importing MLflow (`study.stores.mlflow_rest`) equal what MLflow's client reads: all of them
or a few trials', the newest run of a re-created trial, NaN and infinite metrics, deleted
runs and runs of no trial left out; MLflow's client reads wherever it would send more
(an auth plugin, TLS settings, credentials in the URI), and a server that does not answer is
`RestUnavailable`, not a wrong answer."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from study.names import Tag
from study.stores.mlflow_rest import RestRunReader, RestUnavailable, rest_reader
from study.stores.runs import RunReader, TrialRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(mlflow_server: Any) -> tuple[str, str, str]:
    """(server URI, experiment, parent run id): trials 0-5 nested under the parent, trial 3
    twice (re-created later), trial 4's run deleted, one nested run of no trial, NaN and
    infinite metrics."""
    client = MlflowClient(mlflow_server.uri)
    name = f"rest-{uuid.uuid4().hex[:8]}"
    exp = client.create_experiment(name)
    parent = client.create_run(exp, start_time=1_000, run_name="study").info.run_id
    for i, number in enumerate([0, 1, 2, 3, 3, 4, 5, None]):
        tags = {Tag.PARENT: parent, **({Tag.TRIAL_NUMBER: str(number)} if number is not None else {})}
        run = client.create_run(exp, start_time=2_000 + i, tags=tags).info.run_id
        for step in range(1, 3):
            client.log_metric(run, "val_loss", 1.0 / (i + step), step=step)
        client.log_metric(run, "odd", [math.nan, math.inf, -math.inf][i % 3], step=1)
        client.set_terminated(run, "FINISHED" if i % 2 else "KILLED")
        if number == 4:
            client.delete_run(run)
    return mlflow_server.uri, name, parent


def _comparable(found: dict[int, TrialRun]) -> dict[int, tuple[Any, ...]]:
    return {
        n: (r.run_id, r.status, r.start_time, {k: "nan" if math.isnan(v) else v for k, v in r.metrics.items()})
        for n, r in found.items()
    }


@pytest.mark.parametrize("numbers,searches", [(None, 50), ([3, 0, 4, 5, 9], 50), ([3, 0, 4, 5, 9], 2)])
def test_runs_read_by_rest_equal_mlflows(
    runs: tuple[str, str, str], numbers: list[int] | None, searches: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few trials are searched one at a time; past `MAX_SEARCHES` every page is read."""
    from study.stores import runs as runs_module

    monkeypatch.setattr(runs_module, "MAX_SEARCHES", searches)
    uri, experiment, parent = runs
    fast = RunReader(uri)
    assert isinstance(fast._rest, RestRunReader)
    by_mlflow = RunReader(uri)
    by_mlflow._rest = None
    got = fast.trial_runs(experiment, parent, numbers)
    assert _comparable(got) == _comparable(by_mlflow.trial_runs(experiment, parent, numbers))
    assert sorted(got) == ([0, 1, 2, 3, 5] if numbers is None else [0, 3, 5])  # 4 deleted, 9 never ran
    assert (
        got[3].start_time == 2_004 and math.isnan(got[0].metrics["odd"]) and got[3].metrics["odd"] > 1e308
    )  # MLflow stores inf as the largest float
    assert fast._rest is not None  # the REST reader answered (no fall back)
    assert fast.trial_runs("no-such-experiment", parent, numbers) == {}


def test_reading_by_rest_imports_no_mlflow(runs: tuple[str, str, str]) -> None:
    uri, experiment, parent = runs
    code = (
        "import sys; from study.stores.runs import RunReader; "
        f"found = RunReader({uri!r}).trial_runs({experiment!r}, {parent!r}, [0, 1]); "
        "assert sorted(found) == [0, 1], found; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_mlflows_client_reads_where_it_would_send_more(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rest_reader("http://127.0.0.1:5000") is not None
    assert rest_reader("http://user:secret@127.0.0.1:5000") is None
    assert rest_reader("databricks") is None and rest_reader("sqlite:///mlflow.db") is None
    for var, value in (("MLFLOW_TRACKING_AUTH", "my_plugin"), ("MLFLOW_TRACKING_INSECURE_TLS", "true")):
        with monkeypatch.context() as m:
            m.setenv(var, value)
            assert rest_reader("https://mlflow.example.org") is None


def test_a_server_that_does_not_answer_is_unavailable_not_empty() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RestUnavailable):
        RestRunReader(f"http://127.0.0.1:{port}").trial_runs("any", "parent", None)
