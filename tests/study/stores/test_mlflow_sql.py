"""`SqlClient` against `MlflowClient`: the same calls on the same store give experiments, runs
and artifacts that MLflow reads back identically (run info, params, tags, latest metrics, every
metric point, artifact files), the same refusal of a changed param, and no import of MLflow
on a database at the installed MLflow's schema revision."""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import entities
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.stores import mlflow_sql
from study.stores.mlflow_sql import ParamChanged, SqlClient, open_client


def _calls(client: Any, experiment_id: str, kinds: Any) -> str:
    """One run through `client`: created, three batches (NaN, inf, repeated points, an older
    step after a newer one, a tag replaced, a tag repeated within a batch), a tag set, its
    status set, terminated. `kinds`: the module with the client's Metric, Param and RunTag."""
    Metric, Param, RunTag = kinds.Metric, kinds.Param, kinds.RunTag
    run = client.create_run(
        experiment_id, start_time=1_700_000_000_000, run_name="trial-3", tags={"trial_number": "3", "state": "RUNNING"}
    )
    rid = run.info.run_id
    client.log_batch(
        rid,
        metrics=[
            Metric("val_loss", 0.5, 1000, 1), Metric("val_loss", 0.4, 1001, 2), Metric("val_loss", 0.4, 1001, 2),
            Metric("train_loss", math.nan, 1000, 1), Metric("grad", math.inf, 1000, 1), Metric("neg", -math.inf, 1000, 1),
        ],
        params=[Param("lr", "0.01"), Param("depth", "2")],
        tags=[RunTag("seed", "7"), RunTag("dup", "a"), RunTag("dup", "b")],
    )  # fmt: skip
    client.log_batch(
        rid,
        metrics=[Metric("val_loss", 0.9, 999, 1), Metric("train_loss", 0.3, 1002, 3), Metric("objective", 0.35, 1003, 3)],
        params=[Param("lr", "0.01")],  # the same value again: allowed
        tags=[RunTag("state", "COMPLETE"), RunTag("stop_reason", "completed")],
    )
    client.log_batch(rid, metrics=[Metric("val_loss", 0.35, 1004, 2)])  # same step, later: the latest
    client.set_tag(rid, "seed", "8")
    client.update_run(rid, status="FAILED")
    client.update_run(rid, status="RUNNING")
    client.set_terminated(rid, status="KILLED", end_time=1_700_000_005_000)
    client.log_text(rid, "depth: 2\n", "spec.yaml")
    client.log_text(rid, "ünïcode", "weights/best.txt")
    return rid


def _later(client: Any, rid: str, kinds: Any) -> None:
    """More of the same run through a client that did not create it (a replaced writer, a
    repair): what the run holds is read back from the store, not known."""
    client.log_batch(
        rid,
        metrics=[kinds.Metric("val_loss", 0.2, 1005, 2), kinds.Metric("objective", 0.1, 1000, 1), kinds.Metric("new", 1.0, 1, 1)],
        params=[kinds.Param("lr", "0.01"), kinds.Param("width", "8")],
        tags=[kinds.RunTag("state", "PRUNED")],
    )
    client.set_terminated(rid, status="FINISHED", end_time=1_700_000_009_000)


def _seen(reader: MlflowClient, rid: str) -> dict[str, Any]:
    run = reader.get_run(rid)
    history = {k: sorted((m.step, m.timestamp, m.value) for m in reader.get_metric_history(rid, k)) for k in run.data.metrics}
    info = run.info
    files = {
        f.path: Path(reader.download_artifacts(rid, f.path)).read_text(encoding="utf-8")
        for folder in ("", "weights")
        for f in reader.list_artifacts(rid, folder or None)
        if not f.is_dir
    }
    return {
        "info": (info.status, info.start_time, info.end_time, info.lifecycle_stage, info.run_name, info.user_id),
        "artifacts": info.artifact_uri.replace(rid, "RUN"),
        "params": run.data.params,
        "tags": run.data.tags,
        "latest": run.data.metrics,
        "history": {k: [(s, t, "nan" if math.isnan(v) else v) for s, t, v in h] for k, h in history.items()},
        "files": files,
    }


@pytest.fixture
def uri(tmp_path: Path, empty_mlflow_db: Path) -> str:
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_runs_written_by_sql_read_back_as_mlflow_writes_them(uri: str, tmp_path: Path) -> None:
    reader = MlflowClient(uri)
    exp = reader.create_experiment("same", artifact_location=(tmp_path / "art").as_uri())
    sql = open_client(uri)
    assert isinstance(sql, SqlClient)
    by_mlflow, by_sql = _calls(reader, exp, entities), _calls(sql, exp, mlflow_sql)
    expected, got = _seen(reader, by_mlflow), _seen(reader, by_sql)
    assert got == expected
    assert expected["latest"]["val_loss"] == 0.35 and expected["tags"]["dup"] == "b"  # the cases the calls meant to cover
    assert expected["tags"]["seed"] == "8" and expected["files"] == {"spec.yaml": "depth: 2\n", "weights/best.txt": "ünïcode"}
    assert math.isnan(expected["latest"]["train_loss"]) is False and expected["latest"]["grad"] > 1e308
    found = reader.search_runs([exp], filter_string="tags.trial_number = '3' and attributes.status = 'KILLED'")
    assert {r.info.run_id for r in found} == {by_mlflow, by_sql}
    record = sql.run(by_mlflow)
    run = reader.get_run(by_mlflow)
    assert (record.experiment_id, record.status, record.start_time, record.artifact_uri, record.tags) == (
        run.info.experiment_id, run.info.status, run.info.start_time, run.info.artifact_uri, run.data.tags
    )  # fmt: skip
    _later(reader, by_mlflow, entities)
    _later(open_client(uri), by_sql, mlflow_sql)
    assert _seen(reader, by_sql) == _seen(reader, by_mlflow) != expected


def test_experiments_made_by_sql_read_back_as_mlflow_makes_them(uri: str, tmp_path: Path) -> None:
    reader, sql = MlflowClient(uri), open_client(uri)
    tags = {"hpstudy.study": "s", "mlflow.experimentKind": "training"}
    ids = {
        who: client.create_experiment(f"by-{who}", artifact_location=(tmp_path / who).as_uri(), tags=tags)
        for who, client in (("mlflow", reader), ("sql", sql))
    }

    def seen(exp: Any) -> tuple[Any, ...]:
        return exp.artifact_location.replace("sql", "mlflow"), exp.lifecycle_stage, exp.tags, exp.creation_time > 0

    assert seen(reader.get_experiment(ids["sql"])) == seen(reader.get_experiment(ids["mlflow"]))
    for who, exp_id in ids.items():
        for got in (sql.get_experiment_by_name(f"by-{who}"), sql.get_experiment(exp_id)):
            mine = reader.get_experiment(exp_id)
            assert (got.experiment_id, got.name, got.artifact_location, got.lifecycle_stage) == (
                mine.experiment_id, mine.name, mine.artifact_location, mine.lifecycle_stage
            )  # fmt: skip
    assert sql.get_experiment_by_name("nobody") is None
    with pytest.raises(MlflowException, match="already exists"):  # MLflow's own refusal
        sql.create_experiment("by-mlflow", artifact_location=(tmp_path / "again").as_uri())
    reader.delete_experiment(ids["sql"])
    assert sql.get_experiment_by_name("by-sql").lifecycle_stage == "deleted"


def test_runs_found_by_tag_as_mlflows_search_finds_them(uri: str) -> None:
    reader, sql = MlflowClient(uri), open_client(uri)
    exp, other = reader.create_experiment("e"), reader.create_experiment("f")
    made = [
        reader.create_run(e, start_time=1000 + i, run_name=f"r{i}", tags={"uid": uid}).info.run_id
        for i, (e, uid) in enumerate([(exp, "a"), (exp, "b"), (exp, "a"), (other, "a"), (exp, "a")])
    ]
    reader.delete_run(made[4])
    expected = [r.info.run_id for r in reader.search_runs([exp], filter_string="tags.uid = 'a'")]
    assert sql.run_ids_with_tag(exp, "uid", "a") == expected == [made[2], made[0]]


def test_a_changed_param_is_refused_as_by_mlflow(uri: str) -> None:
    reader, sql = MlflowClient(uri), open_client(uri)
    exp = reader.create_experiment("p")
    for client, kinds, refusal in ((reader, entities, MlflowException), (sql, mlflow_sql, ParamChanged)):
        run = client.create_run(exp, run_name="r")
        client.log_batch(run.info.run_id, params=[kinds.Param("lr", "0.1")])
        with pytest.raises(refusal, match="Changing param values is not allowed"):
            client.log_batch(run.info.run_id, params=[kinds.Param("lr", "0.2"), kinds.Param("depth", "3")])
        assert reader.get_run(run.info.run_id).data.params == {"lr": "0.1"}  # nothing of the refused batch written


def test_a_tracking_server_keeps_the_mlflow_client() -> None:
    assert type(open_client("http://127.0.0.1:9")) is MlflowClient  # nothing is sent until a call


def test_the_schema_head_is_mlflows_own() -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert mlflow_sql.schema_head() == _get_latest_schema_revision()


_STUDY = """
import sys
from study.stores.tracker import MlflowTracker
t = MlflowTracker(sys.argv[1])
t.start_study("s", {"lr": 0.1}, None, "uid-1")
for n in range(3):
    t.start_trial(n, {"lr": 0.1 * n}, {"seed": "1"})
    t.log_epoch(n, 1, {"val_loss": 0.5, "val_acc": 0.9})
    t.log_file(n, "weights/w.txt", b"w")
    t.end_trial(n, "COMPLETE", "FINISHED", {"stop_reason": "completed"}, {"objective": 0.5})
t.study_progress({"best": 0.5}, 3)
t.end_study("FINISHED", {"finished": 3.0}, 3)
t.close()
print("mlflow imported:", "mlflow" in sys.modules)
"""


def test_a_study_on_a_current_database_never_imports_mlflow(tmp_path: Path, empty_mlflow_db: Path) -> None:
    """A whole study's writes through `MlflowTracker` in a fresh interpreter: MLflow is only
    imported to create a new database; what was written reads back through MLflow."""
    for db, imported in ((tmp_path / "new.db", True), (tmp_path / "copy.db", False)):
        if not imported:
            shutil.copy(empty_mlflow_db, db)
        uri = f"sqlite:///{db}"
        out = subprocess.run([sys.executable, "-c", _STUDY, uri], capture_output=True, text=True, timeout=120, check=True)
        assert f"mlflow imported: {imported}" in out.stdout, out.stderr
        runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("s").experiment_id])
        assert sorted((r.info.run_name, r.info.status) for r in runs) == [("s", "FINISHED")] + [
            (f"trial-{n}", "FINISHED") for n in range(3)
        ]
        trial = next(r for r in runs if r.info.run_name == "trial-1")
        assert trial.data.metrics["val_acc"] == 0.9 and trial.data.params["lr"] == "0.1"
        assert [f.path for f in MlflowClient(uri).list_artifacts(trial.info.run_id, "weights")] == ["weights/w.txt"]


def test_a_database_of_another_schema_revision_is_left_to_mlflow(uri: str) -> None:
    path = uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00000000000'")
    assert SqlClient(uri).current() is False
    with pytest.raises(MlflowException, match="out-of-date database schema"):  # MLflow's words, as without this module
        open_client(uri)


def test_trial_runs_read_from_the_tables_match_mlflows_search(tmp_path: Path, empty_mlflow_db: Path) -> None:
    """Children of one parent only, deleted runs left out, NaN metrics, a trial with two runs
    (both returned; the reader keeps the newest), a subset of trial numbers."""
    from study.stores.mlflow_sql import sql_reader
    from study.stores.runs import RunReader

    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("s")
    parent, other = client.create_run(exp, run_name="study"), client.create_run(exp, run_name="other")
    for n, under in ((0, parent), (1, parent), (1, parent), (2, parent), (3, other), (4, parent)):
        run = client.create_run(
            exp,
            start_time=1000 + n,
            run_name=f"trial-{n}",
            tags={"mlflow.parentRunId": under.info.run_id, "trial_number": str(n)},
        )
        client.log_batch(
            run.info.run_id,
            metrics=[entities.Metric("val_loss", math.nan if n == 2 else 0.1 * n, 5, 1), entities.Metric("objective", 0.5, 5, 1)],
        )
        if n == 4:
            client.delete_run(run.info.run_id)
    client.set_terminated(parent.info.run_id)
    reader = sql_reader(uri)
    assert reader is not None
    via_sql = RunReader(uri)
    via_mlflow = RunReader(uri)
    via_mlflow._sql = None
    for numbers in (None, [1, 2, 7]):
        got, expected = (
            via_sql.trial_runs("s", parent.info.run_id, numbers),
            via_mlflow.trial_runs("s", parent.info.run_id, numbers),
        )
        nan = {n: {k: "nan" if math.isnan(v) else v for k, v in r.metrics.items()} for n, r in got.items()}
        assert {n: (r.run_id, r.status, r.start_time) for n, r in got.items()} == {
            n: (r.run_id, r.status, r.start_time) for n, r in expected.items()
        }
        assert nan == {n: {k: "nan" if math.isnan(v) else v for k, v in r.metrics.items()} for n, r in expected.items()}
    assert sorted(via_sql.trial_runs("s", parent.info.run_id)) == [0, 1, 2]
    assert len(reader.trial_runs(parent.info.run_id, [1])) == 2  # both runs of trial 1; the newest is kept above
