"""The stored schema: the stop-reason table, a configuration's round trip through the JSON
stored in Optuna, and the typed view of a stored trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study.record import STOP_REASONS, Outcome, StopReason, TrialAttr, TrialRecord, config_to_json, mlflow_status
from study.stores.optuna_storage import open_storage
from trainers import TrainConfig


def test_stop_reason_table_is_consistent() -> None:
    assert set(STOP_REASONS) == {
        "completed",
        "early_stopped",
        "pruned",
        "diverged",
        "failed",
        "timeout",
        "worker_died",
        "interrupted",
    }
    for reason in STOP_REASONS:
        values = [1.0] if reason in ("completed", "early_stopped") else None
        o = Outcome(reason, values=values)
        assert o.mlflow_status == mlflow_status(o.state)
        assert (o.mlflow_status == "FINISHED") == (o.state == TrialState.COMPLETE)
    with pytest.raises(ValueError, match="needs its objective"):
        Outcome("completed")
    with pytest.raises(ValueError, match="stop reason must be one of"):
        Outcome("exploded")


@pytest.mark.parametrize(
    ("reason", "state", "status", "reruns"),
    [
        ("completed", TrialState.COMPLETE, "FINISHED", False),
        ("early_stopped", TrialState.COMPLETE, "FINISHED", False),
        ("pruned", TrialState.PRUNED, "KILLED", False),
        ("diverged", TrialState.FAIL, "FAILED", False),
        ("failed", TrialState.FAIL, "FAILED", False),
        ("timeout", TrialState.FAIL, "FAILED", False),
        ("worker_died", TrialState.FAIL, "FAILED", True),
        ("interrupted", TrialState.FAIL, "FAILED", True),
    ],
)
def test_every_stop_reason_maps_to_its_optuna_state_and_mlflow_status(
    reason: str, state: TrialState, status: str, reruns: bool
) -> None:
    r = StopReason(reason)
    assert (r.state, r.mlflow_status, r.reruns, str(r)) == (state, status, reruns, reason)


def test_trainer_stop_reasons_map_into_the_study_set() -> None:
    from trainers import STOP_REASONS as TRAINER_REASONS

    assert {StopReason.from_trainer(r) for r in TRAINER_REASONS if r != "stopped_by_caller"} == {
        StopReason.COMPLETED,
        StopReason.EARLY_STOPPED,
        StopReason.DIVERGED,
    }
    with pytest.raises(ValueError, match="completed, early_stopped or diverged, got 'stopped_by_caller'"):
        StopReason.from_trainer("stopped_by_caller")


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(),
        TrainConfig(depth=3, width=(64, 32, 16), activation="maxout", maxout_pieces=3, optimizer="adamw", lr=3e-3, dropout=0.25),
        TrainConfig(depth=0, optimizer="rmsprop", schedule="cosine", min_lr=1e-5, patience=3, monitor="val_acc", l1=1e-4, seed=7),
        TrainConfig(optimizer="momentum", weight_decay=5e-4, max_grad_norm=1.0, schedule="step", step_size=3, gamma=0.5),
    ],
)
def test_a_config_round_trips_through_the_json_stored_in_optuna(tmp_path: Path, config: TrainConfig) -> None:
    """Stored as the trial's ``config`` user attr in a real journal file, read back by a new
    process's view of the storage: the very same frozen TrainConfig, tuple widths included."""
    url = f"journal:{tmp_path / 'o.journal'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    trial = study.ask()
    trial.set_user_attr(TrialAttr.CONFIG, config_to_json(config))
    study.tell(trial, 1.0)
    again = optuna.load_study(study_name="s", storage=open_storage(url))
    back = TrialRecord.of(again.trials[0]).config
    assert back == config and type(back.width) is type(config.width)


def test_trial_record_counts_tags_and_summary() -> None:
    study = optuna.create_study()
    t = study.ask()
    for k, v in {"stop_reason": "completed", "seed": 11, "best_epoch": 2, "stopped_epoch": 3, "n_params": 40}.items():
        t.set_user_attr(k, v)
    t.set_user_attr(TrialAttr.PLACEMENT, {"node_id": "n1", "host": "h", "ignored": "x"})
    t.report(0.9, 1)
    t.report(0.5, 2)
    t.report(0.6, 3)
    study.tell(t, 0.5)
    r = TrialRecord.of(study.trials[0])
    assert r.counted and r.stop_reason is StopReason.COMPLETED and r.config is None and r.seed == 11
    assert r.tags() == {"state": "COMPLETE", "stop_reason": "completed", "seed": "11", "node_id": "n1", "host": "h"}
    assert r.summary_metrics("val_loss") == {
        "stopped_epoch": 3.0, "best_epoch": 2.0, "n_params": 40.0, "objective": 0.5, "best_val_loss": 0.5,
    }  # fmt: skip
    retried = study.ask()
    retried.set_user_attr(TrialAttr.RETRIED, True)
    study.tell(retried, state=TrialState.FAIL)
    assert not TrialRecord.of(study.trials[1]).counted and TrialRecord.of(study.trials[1]).finished
