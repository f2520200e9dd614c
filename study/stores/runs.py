"""Reading a study's MLflow runs back: the query side's only way into MLflow.

Optuna storage says what a trial was (its configuration, state, values); MLflow adds its run
id and every epoch's record. `RunReader` lists a study's trial runs with their latest
metrics, reads metric histories (in parallel: one request per run and metric), and logs
report files to the parent run.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from study.record import Tag
from study.stores.tracker import child_runs, quiet_mlflow


@dataclass(frozen=True)
class TrialRun:
    """One trial's MLflow run: its id, status, start time (ms) and latest metric values."""

    number: int
    run_id: str
    status: str
    start_time: int
    metrics: dict[str, float]


class RunReader:
    """Read access to one tracking store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: Any = None

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

    def trial_runs(self, experiment: str, parent_run_id: str | None) -> dict[int, TrialRun]:
        """The study's trial runs by trial number (the newest when a number repeats)."""
        if not parent_run_id:
            return {}
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        out: dict[int, TrialRun] = {}
        for run in child_runs(self.client, exp.experiment_id, parent_run_id):
            n = run.data.tags.get(Tag.TRIAL_NUMBER, "")
            if n.isdigit() and (int(n) not in out or run.info.start_time > out[int(n)].start_time):
                out[int(n)] = TrialRun(int(n), run.info.run_id, run.info.status, run.info.start_time, dict(run.data.metrics))
        return out

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
