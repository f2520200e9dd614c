"""Deleting a study from both stores: its MLflow runs (and experiment) and its Optuna study.

What belongs to a study in MLflow: its parent run (tagged with the study's uid, and recorded
in Optuna) and the trial runs nested under it. The experiment named after the study is
deleted with them only when it holds nothing else (another storage's study of the same
name may share it); it is first renamed ``NAME.deleted-<uid>`` so that the name is free for a
new study (MLflow keeps a deleted experiment's name taken, and restoring it would bring back
every run it ever held). MLflow deletes softly: ``mlflow gc`` removes deleted runs for good.

MLflow is deleted first: if that fails, the Optuna study (which says where its MLflow record
is) is still there to retry with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from study.record import Tag
from study.stores.optuna_storage import open_storage
from study.stores.tracker import child_runs, quiet_mlflow


@dataclass(frozen=True)
class MlflowPart:
    """A study's MLflow record: its experiment (None: there is none), its own runs (parent
    first) and whether the experiment holds anything else."""

    experiment_id: str | None
    run_ids: list[str]
    whole_experiment: bool


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    quiet_mlflow()
    return client


def _all_runs(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_mlflow(uri: str, name: str, uid: str, parent_run_id: str | None, experiment: str | None = None) -> MlflowPart:
    """What study `name` (uid `uid`, parent run `parent_run_id`) has in the tracking store:
    its parent run and every run nested under it, however deep (a confirmation's runs sit
    under its own parent, nested in the confirmed study's). `experiment`: where its parent
    run is, when not in the experiment named after it (a confirmation: the confirmed study's)."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment or name)
    if exp is None or exp.lifecycle_stage != "active":
        return MlflowPart(None, [], False)
    parents = {r.info.run_id for r in _all_runs(client, exp.experiment_id, f"tags.`{Tag.STUDY_UID}` = '{uid}'")} if uid else set()
    if parent_run_id:
        parents.add(parent_run_id)
    ids = [p for p in sorted(parents)]
    todo = sorted(parents)
    while todo:
        found = [r.info.run_id for r in child_runs(client, exp.experiment_id, todo.pop())]
        ids.extend(found)
        todo.extend(found)
    everything = {r.info.run_id for r in _all_runs(client, exp.experiment_id)}
    ours = [i for i in ids if i in everything]
    return MlflowPart(exp.experiment_id, ours, everything <= set(ours))


def delete_mlflow(uri: str, part: MlflowPart, name: str, uid: str) -> None:
    """Delete the study's runs, and its experiment when it holds nothing else (see the module)."""
    if part.experiment_id is None:
        return
    client = _client(uri)
    if part.whole_experiment:
        client.rename_experiment(part.experiment_id, f"{name}.deleted-{uid[:12] or part.experiment_id}")
        client.delete_experiment(part.experiment_id)  # its runs with it
        return
    for run_id in part.run_ids:
        client.delete_run(run_id)


def delete_optuna(url: str, name: str) -> None:
    """Delete study `name` and its trials from the Optuna storage at `url`."""
    optuna.delete_study(study_name=name, storage=open_storage(url))
