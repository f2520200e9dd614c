"""Integration: studies of the user's own code (``model:`` and ``trainer:``) on a real Ray (the
session's local cluster, or a 2-node ``ray.cluster_utils.Cluster``), real MLflow on SQLite
and real Optuna journal storage. The user's files live in a folder of their own next to the
spec, never in the working folder, so every test also checks that paths resolve against the
spec's folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import study
from study.record import TrialRecord
from study.run import launch as launching
from study.run.confirm import confirmation_spec
from study.run.prepare import prepare
from study.spec import SpecError, load_spec

pytestmark = pytest.mark.integration

DATA = {"name": "gaussian_mixture", "args": {"n_samples": 300, "n_features": 6, "n_classes": 3}}

MODEL = """\
from torch import nn

SEEN = {seen!r}  # the dropout rate each built module trains with, one line per trial


class Net(nn.Module):
    def __init__(self, n_inputs, n_classes, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_inputs, hidden), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(hidden, n_classes)
        self.told = False

    def forward(self, x):
        if self.training and not self.told and SEEN:
            self.told = True
            with open(SEEN, "a") as f:
                f.write(repr(self.body[2].p) + "\\n")
        return self.head(self.body(x))


def build(n_inputs, n_classes, hidden=8):
    return Net(n_inputs, n_classes, hidden)
"""

TRAINER = '''\
import math


def trial(params, data):
    """val_loss = a + 1/epoch; a in (0.8, 0.9] raises in epoch 1, a > 0.9 goes NaN in epoch 1."""
    for epoch in range(1, params["epochs"] + 1):
        a = params["a"]
        if 0.8 < a <= 0.9:
            raise ValueError(f"the user's bug at a={{a}}")
        loss = math.nan if a > 0.9 else a + 1 / epoch
        yield {{"val_loss": loss, "val_f1": 1 - a, "n_rows": float(len(data.y_train)), "seed_seen": float(params["seed"] % 1000)}}
'''


def n_params(hidden: int, n_in: int = 6, n_cls: int = 3) -> int:
    """The user's Net: two Linear layers with biases."""
    return n_in * hidden + hidden + hidden * n_cls + n_cls


def journal(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


def write_spec(folder: Path, work: Path, **fields: Any) -> Path:
    """A spec in the user's `folder`; storage and MLflow in the working folder `work`."""
    spec = {
        "dataset": DATA,
        "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
        "storage": f"journal:{work / 'optuna.journal'}",
        "pruner": "none",
        **fields,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def user_folder(workdir: Path, model_seen: Path | None = None) -> Path:
    folder = workdir / "user"
    folder.mkdir(exist_ok=True)
    (folder / "usermodel.py").write_text(MODEL.format(seen=str(model_seen) if model_seen else ""))
    (folder / "usertrainer.py").write_text(TRAINER.format())
    return folder


def run_on_ray(address: str, spec_path: Path, say: Any = None) -> launching.RunResult:
    prep = prepare(load_spec(spec_path))
    return launching.run_study(prep, executor=launching.ray_executor(address), say=say or (lambda m: None))


def runs_by_trial(work: Path, name: str) -> dict[int, Any]:
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}


MODEL_SPACE = {
    "parameters": {
        "hidden": {"int": [4, 32]},
        "lr": {"float": [1.0e-3, 0.1], "log": True},
        "dropout": {"float": [0.05, 0.5]},
    }
}


def test_user_model_study_trains_the_users_module(ray_address: str, workdir: Path) -> None:
    seen = workdir / "dropout_seen.txt"
    folder = user_folder(workdir, seen)
    spec = write_spec(
        folder, workdir, name="um", model="usermodel.py:build", space=MODEL_SPACE,
        fixed={"epochs": 3, "batch_size": 64, "optimizer": "adam"}, trials=4, concurrency=2,
    )  # fmt: skip
    result = run_on_ray(ray_address, spec)
    assert result.finished
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    runs = runs_by_trial(workdir, "um")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for t in trials:
        r = TrialRecord.of(t)
        hidden = t.params["hidden"]
        assert r.user_params == {"hidden": hidden}  # the factory's arguments, stored beside the config
        assert r.config is not None and r.config.dropout == t.params["dropout"] and r.config.optimizer == "adam"
        assert t.user_attrs["n_params"] == n_params(hidden)  # the user's model, not the MLP's count
        run = runs[t.number]
        assert run.data.params["hidden"] == str(hidden) and "depth" not in run.data.params and "width" not in run.data.params
        for key in ("val_loss", "grad_norm.body.0.weight", "weight_norm.head.bias"):  # every epoch, named norms
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key
        # this process had joined the (local) Ray already, so the workers loaded the user's own file
        placement = t.user_attrs["placement"]
        assert placement["code_sha256"] == result.study.user_attrs["hpstudy.code"]["sha256"]
        assert placement["code_path"] == str(folder / "usermodel.py")
    # dropout is set on the module's nn.Dropout to each trial's value (not the 0.5 it was built with), and resampled
    drawn = sorted(round(t.params["dropout"], 12) for t in trials)
    assert sorted(round(float(v), 12) for v in seen.read_text().split()) == drawn
    assert len(set(drawn)) == 4
    code = result.study.user_attrs["hpstudy.code"]
    assert code["role"] == "model" and code["path"] == str(folder / "usermodel.py")
    # the best trial's kept weights: the user's module's state dict, as an artifact of its run
    import torch

    top = min(trials, key=lambda t: t.values[0])
    path = client.download_artifacts(runs[top.number].info.run_id, "weights/state_dict.pt", str(workdir))
    state = torch.load(path, map_location="cpu", weights_only=True)
    h = top.params["hidden"]
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "body.0.weight": (h, 6), "body.0.bias": (h,), "head.weight": (3, h), "head.bias": (3,),
    }  # fmt: skip
    # confirm (re-training top trials as comparison arms of TrainConfigs) cannot carry the model's own values: refused
    with pytest.raises(SpecError, match=r"runs your own model \(usermodel.py:build\): confirm .* cannot carry"):
        confirmation_spec("um", f"journal:{workdir / 'optuna.journal'}", top=2, seeds=2)
    # queries show the user's model: its parameter as a searched column, none of the MLP's fields
    best = study.load("um", storage=f"journal:{workdir / 'optuna.journal'}").best_trials(k=4)
    assert best.attrs["searched"] == ["lr", "dropout", "hidden"]
    assert list(best["hidden"]) == [t.params["hidden"] for t in sorted(trials, key=lambda t: t.values[0])]
    assert not {"depth", "width", "activation"} & set(best.columns) and best["test_acc"].isna().all()  # no test split


def test_user_trainer_study_prunes_fails_and_diverges_per_trial(ray_address: str, workdir: Path) -> None:
    folder = user_folder(workdir)
    spec = write_spec(
        folder, workdir, name="ut", trainer="usertrainer.py:trial", space={"parameters": {"a": {"float": [0.0, 1.0]}}},
        fixed={"epochs": 4}, trials=5, concurrency=1,
        enqueue=[{"a": 0.1}, {"a": 0.2}, {"a": 0.7}, {"a": 0.85}, {"a": 0.95}],
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
    )  # fmt: skip
    result = run_on_ray(ray_address, spec)
    trials = {t.params["a"]: t for t in result.study.get_trials()}
    reasons = {a: t.user_attrs["stop_reason"] for a, t in trials.items()}
    assert reasons == {0.1: "completed", 0.2: "completed", 0.7: "pruned", 0.85: "failed", 0.95: "diverged"}
    assert trials[0.1].values == [pytest.approx(0.1 + 1 / 4)]  # best epoch: the last
    assert trials[0.7].user_attrs["pruned_step"] == 1  # 0.7 + 1 is worse than the median of 1.1 and 1.2
    params = TrialRecord.of(trials[0.1]).user_params
    assert params is not None and params["a"] == 0.1 and params["epochs"] == 4 and isinstance(params["seed"], int)
    assert TrialRecord.of(trials[0.1]).config is None  # a trainer function has no TrainConfig
    runs = runs_by_trial(workdir, "ut")
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    done = runs[trials[0.1].number]
    for key in ("val_loss", "val_f1", "n_rows"):  # any metric the function reports, every epoch
        assert [m.step for m in client.get_metric_history(done.info.run_id, key)] == [1, 2, 3, 4]
    assert done.data.metrics["n_rows"] == 240  # the study's dataset reached it (300 rows, a fifth for validation)
    assert done.data.params["a"] == "0.1" and done.data.params["epochs"] == "4"
    # the failed trial: the user's exception as its tag, the whole traceback beside the run
    failed = runs[trials[0.85].number]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"] == "ValueError: the user's bug at a=0.85"
    text = Path(client.download_artifacts(failed.info.run_id, "traceback.txt", str(workdir))).read_text()
    assert "Traceback (most recent call last)" in text and "usertrainer.py" in text and 'raise ValueError(f"the user' in text
    assert runs[trials[0.95].number].info.status == "FAILED" and trials[0.95].state == TrialState.FAIL


PACED = """\
import time


def trial(params, data):
    \"\"\"Epochs of 0.5 s, each one line (a, epoch, end time) in LOG when it ends; val_loss = a + 1/epoch.\"\"\"
    for epoch in range(1, params["epochs"] + 1):
        time.sleep(0.5)
        with open({log!r}, "a") as f:
            f.write(f"{{params['a']}} {{epoch}} {{time.monotonic()}}\\n")
        yield {{"val_loss": params["a"] + 1 / epoch}}
"""


def test_a_trial_waits_at_a_rung_for_the_verdict(ray_address: str, workdir: Path) -> None:
    """Successive halving with rungs at epochs 1, 2 and 4: a trial waits after a rung's epoch
    for the pruner's verdict, so a pruned trial trains no epoch past its rung (without the
    pause, each trained the next 0.5-s epoch while the driver decided), and one let past
    goes on at once (the driver's `go`), not after the pause's bound of one epoch."""
    folder = user_folder(workdir)
    log = workdir / "epochs.log"
    (folder / "paced.py").write_text(PACED.format(log=str(log)))
    spec = write_spec(
        folder, workdir, name="paced", trainer="paced.py:trial", space={"parameters": {"a": {"float": [0.0, 1.0]}}},
        fixed={"epochs": 6}, trials=4, concurrency=1, enqueue=[{"a": 0.1}, {"a": 0.5}, {"a": 0.6}, {"a": 0.7}],
        pruner={"name": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    )  # fmt: skip
    result = run_on_ray(ray_address, spec)
    trials = {t.params["a"]: t for t in result.study.get_trials()}
    assert trials[0.1].state == TrialState.COMPLETE  # the first at every rung goes on unopposed
    ends: dict[float, dict[int, float]] = {}
    for line in log.read_text().splitlines():
        a, epoch, at = line.split()
        ends.setdefault(float(a), {})[int(epoch)] = float(at)
    for a in (0.5, 0.6, 0.7):  # worse than 0.1 at epoch 1: pruned there, and trained nothing more
        assert trials[a].state == TrialState.PRUNED and trials[a].user_attrs["pruned_step"] == 1
        assert sorted(ends[a]) == [1], f"trial a={a} trained epochs {sorted(ends[a])} after being pruned at epoch 1"
    done = ends[0.1]
    assert sorted(done) == [1, 2, 3, 4, 5, 6]
    for rung in (1, 2, 4):  # told to go on: the next epoch started within far less than the pause's bound (0.5 s)
        assert done[rung + 1] - done[rung] < 0.85, f"trial a=0.1 waited {done[rung + 1] - done[rung] - 0.5:.2f} s at rung {rung}"


def test_resume_after_a_sigkilled_driver_keeps_the_users_model(ray_address: str, workdir: Path, study_cli: str) -> None:
    folder = user_folder(workdir)
    slow = {"name": "gaussian_mixture", "args": {"n_samples": 1500, "n_features": 6, "n_classes": 3}}
    spec = write_spec(
        folder, workdir, name="um-kill", model="usermodel.py:build", dataset=slow,
        space={"parameters": {"hidden": {"int": [4, 32]}}}, fixed={"epochs": 30, "batch_size": 16}, trials=4, concurrency=2,
    )  # fmt: skip
    proc = subprocess.Popen(
        [study_cli, "launch", str(spec), "--address", ray_address, "--quiet"], cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    storage = journal(workdir / "optuna.journal")
    deadline = time.monotonic() + 240
    while True:  # until one trial has finished and another runs past epoch 3
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the driver never got a trial going"
        try:
            trials = optuna.load_study(study_name="um-kill", storage=storage).get_trials()
        except (KeyError, FileNotFoundError):
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) > 3]
        if running and any(t.state.is_finished() for t in trials):
            break
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    resumed = subprocess.run(
        [study_cli, "resume", "um-kill", "--storage", f"journal:{workdir / 'optuna.journal'}", "--address", ray_address, "--quiet"],
        cwd=workdir / "user", capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reconciled" in resumed.stderr and "changed" not in resumed.stderr
    trials = optuna.load_study(study_name="um-kill", storage=storage).get_trials()
    counted = [t for t in trials if TrialRecord.of(t).counted]
    assert len(counted) == 4 and any(t.user_attrs.get("retry_of") is not None for t in counted)
    for t in counted:  # the resumed trials trained the user's model, not the default MLP (4,803 parameters here)
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs["n_params"] == n_params(t.params["hidden"])
        assert t.user_attrs["user_params"] == {"hidden": t.params["hidden"]}
        # `--address`: the code travelled in the job's runtime environment; the workers ran Ray's copy of the folder
        placement = t.user_attrs["placement"]
        assert placement["code_sha256"] == trials[0].user_attrs["placement"]["code_sha256"]
        assert "runtime_resources" in Path(placement["code_path"]).parts and folder not in Path(placement["code_path"]).parents
    runs = runs_by_trial(workdir, "um-kill")  # MLflow, repaired by the resume, shows the user's model too
    drawn = {t.number for t in trials if t.params}  # not a trial the kill caught between its ask and its draw
    assert counted and all(t.number in drawn for t in counted)
    assert all("hidden" in r.data.params for n, r in runs.items() if n in drawn), {
        n: (r.data.params, r.data.tags, r.info.status) for n, r in runs.items()
    }
    assert not [n for n, r in runs.items() if "depth" in r.data.params]  # never the MLP's architecture
    assert sorted(runs) == [t.number for t in trials]


def test_a_resume_whose_code_changed_warns_with_both_hashes(ray_address: str, workdir: Path) -> None:
    folder = user_folder(workdir)
    spec = write_spec(
        folder, workdir, name="um-edit", model="usermodel.py:build", space={"parameters": {"hidden": {"int": [4, 8]}}},
        fixed={"epochs": 2, "batch_size": 64}, trials=1,
    )  # fmt: skip
    first = run_on_ray(ray_address, spec)
    before = first.study.user_attrs["hpstudy.code"]["sha256"]
    model = folder / "usermodel.py"
    model.write_text(model.read_text().replace("hidden=8", "hidden=9"))
    said: list[str] = []
    prep = prepare(launching.spec_from_storage("um-edit", f"journal:{workdir / 'optuna.journal'}").with_overrides(trials=2))
    result = launching.run_study(prep, resume=True, executor=launching.ray_executor(ray_address), say=said.append)
    after = result.study.user_attrs["hpstudy.code"]["sha256"]
    assert after != before
    (warning,) = [m for m in said if "changed" in m]
    assert before in warning and after in warning and str(model) in warning
    history = result.study.user_attrs["hpstudy.code_history"]
    assert [h["sha256"] for h in history] == [before] and history[0]["until_trial"] == 1
    trials = result.study.get_trials()
    assert [t.user_attrs["placement"]["code_sha256"] for t in trials] == [before, after]


def two_nodes(attempts: int = 3) -> tuple[Any, Any]:
    """A head without CPUs and a 2-CPU worker node (`ray.cluster_utils.Cluster`). Ray waits a
    fixed 30 s for a starting node to register, which a machine under heavy load can miss:
    that start is retried (and only that)."""
    from ray.cluster_utils import Cluster

    mib100 = 100 * 1024 * 1024
    for attempt in range(attempts):
        cluster = Cluster(initialize_head=False, connect=False)
        try:
            cluster.add_node(num_cpus=0, include_dashboard=False, object_store_memory=mib100)  # the head
            worker = cluster.add_node(num_cpus=2, object_store_memory=mib100)
            cluster.wait_for_nodes()
            return cluster, worker
        except Exception as e:
            cluster.shutdown()
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def test_a_worker_node_that_never_saw_the_folder_runs_the_users_code(tmp_path: Path, empty_mlflow_db: Path) -> None:
    """A 2-node cluster whose head has no CPU: every trial runs on the worker node, in a
    worker started in Ray's copy of the user's folder (its runtime environment), while the
    driver runs in another folder; the trial records the copy's path and the same sha256."""
    import shutil

    work, user = tmp_path / "driver", tmp_path / "user"
    work.mkdir()
    shutil.copy(empty_mlflow_db, work / "mlflow.db")
    user_folder(tmp_path)  # writes tmp_path/user
    spec = write_spec(
        user, work, name="um-cluster", model="usermodel.py:build", space={"parameters": {"hidden": {"int": [4, 8]}}},
        fixed={"epochs": 2, "batch_size": 64}, trials=2, concurrency=2,
    )  # fmt: skip
    cluster, worker = two_nodes()
    try:
        cli = Path(sys.executable).parent / "study"
        p = subprocess.run(
            [str(cli), "launch", str(spec), "--address", cluster.address, "--quiet"],
            cwd=work, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )  # fmt: skip
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        trials = optuna.load_study(study_name="um-cluster", storage=journal(work / "optuna.journal")).get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        sha = trials[0].user_attrs["placement"]["code_sha256"]
        for t in trials:
            where = t.user_attrs["placement"]
            assert where["node_id"] == worker.node_id  # the head has no CPU for a trial
            assert where["code_sha256"] == sha
            copy = Path(where["code_path"])
            assert copy.name == "usermodel.py" and "runtime_resources" in copy.parts and user not in copy.parents
            assert t.user_attrs["n_params"] == n_params(t.params["hidden"])
    finally:
        cluster.shutdown()
