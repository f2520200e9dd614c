"""Reading a study's MLflow runs back: the query side's only way into MLflow.

Optuna storage says what a trial was (its configuration, state, values); MLflow adds its run
id and every epoch's record. `RunReader` lists a study's trial runs with their latest
metrics (all of them, or those of a few trials: a query for the best ten reads ten small
pages, not the whole study; from a SQLite or PostgreSQL store, two queries on its tables and
no MLflow import, `study.stores.mlflow_sql`; from an MLflow server, its REST API without
importing MLflow where MLflow's client would send the same, `study.stores.mlflow_rest`), reads metric histories (in parallel: one request per run and
metric), and logs report files to the parent run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from study.record import Tag
from study.stores.mlflow_rest import RestUnavailable, rest_reader
from study.stores.mlflow_sql import sql_reader
from study.stores.tracker import child_runs, quiet_mlflow, trial_run_pages

#: `RunReader.trial_runs` looks runs up one trial at a time for at most this many trials;
#: past that, reading every page of the parent's children costs less.
MAX_SEARCHES = 50


@dataclass(frozen=True)
class TrialRun:
    """One trial's MLflow run: its id, status, start time (ms) and latest metric values."""

    number: int
    run_id: str
    status: str
    start_time: int
    metrics: dict[str, float]


def _newest(runs: Iterable[TrialRun]) -> dict[int, TrialRun]:
    """By trial number, the run started last when a trial has several."""
    out: dict[int, TrialRun] = {}
    for run in runs:
        if run.number not in out or run.start_time > out[run.number].start_time:
            out[run.number] = run
    return out


class RunReader:
    """Read access to one tracking store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: Any = None
        self._sql = sql_reader(uri)  # a database store: its tables read directly, MLflow not imported
        self._rest = rest_reader(uri) if self._sql is None else None  # a server: its REST API, as above

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
            quiet_mlflow()
        return self._client

    def experiment_id(self, experiment: str) -> str | None:
        """The id of the experiment named `experiment`, None when there is none."""
        exp = self.client.get_experiment_by_name(experiment)
        return None if exp is None else str(exp.experiment_id)

    def trial_runs(self, experiment: str, parent_run_id: str | None, numbers: Iterable[int] | None = None) -> dict[int, TrialRun]:
        """The study's trial runs by trial number (the newest when a number repeats): all of
        them (every page of the parent's children), or those of the trials `numbers` only
        (one small search each, `MAX_SEARCHES` at most: MLflow has no ``IN`` for tags; past
        that, every page is read and the trials asked for kept)."""
        if not parent_run_id:
            return {}
        if self._sql is not None:
            return _newest(
                TrialRun(*row) for row in self._sql.trial_runs(parent_run_id, None if numbers is None else list(numbers))
            )
        wanted = None if numbers is None else sorted({int(n) for n in numbers})
        few = wanted if wanted is not None and len(wanted) <= MAX_SEARCHES else None  # None: every page
        found = self._rest_runs(experiment, parent_run_id, few)
        if found is None:
            found = self._client_runs(experiment, parent_run_id, few)
        if wanted is None or few is not None:
            return found
        keep = set(wanted)
        return {n: r for n, r in found.items() if n in keep}

    def _rest_runs(self, experiment: str, parent_run_id: str, numbers: list[int] | None) -> dict[int, TrialRun] | None:
        """`trial_runs` through a server's REST API; None when there is none to use, or it
        failed (MLflow's client reads from then on: its retries, its errors)."""
        if self._rest is None:
            return None
        try:
            return _newest(TrialRun(*row) for row in self._rest.trial_runs(experiment, parent_run_id, numbers))
        except RestUnavailable:
            self._rest = None
            return None

    def _client_runs(self, experiment: str, parent_run_id: str, numbers: list[int] | None) -> dict[int, TrialRun]:
        """`trial_runs` through MLflow's client."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        if numbers is None:
            runs: Iterable[Any] = child_runs(self.client, exp.experiment_id, parent_run_id)
        else:
            runs = (r for page in self._pool(lambda n: self._runs_of(exp.experiment_id, parent_run_id, n), numbers) for r in page)
        found = (
            TrialRun(int(n), run.info.run_id, run.info.status, run.info.start_time, dict(run.data.metrics))
            for run in runs
            if (n := run.data.tags.get(Tag.TRIAL_NUMBER, "")).isdigit()
        )
        return _newest(found)

    def _runs_of(self, experiment_id: str, parent_run_id: str, number: int) -> list[Any]:
        return trial_run_pages(self.client, experiment_id, parent_run_id, number)

    @staticmethod
    def _pool(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(fn, items))

    def histories(self, jobs: Iterable[tuple[int, str, str]]) -> list[tuple[int, str, list[tuple[int, float]]]]:
        """For each (trial number, run id, metric): that metric's (step, value) history."""

        def one(job: tuple[int, str, str]) -> tuple[int, str, list[tuple[int, float]]]:
            number, run_id, key = job
            return number, key, [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(one, list(jobs)))

    def log_artifacts(self, run_id: str, files: Iterable[tuple[str, str]]) -> None:
        """Log each (local file, artifact folder) to run `run_id`."""
        for path, folder in files:
            self.client.log_artifact(run_id, path, artifact_path=folder)
