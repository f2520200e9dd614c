"""What a study stores about the user's own code: the code record and its change warning, and
each trial's user params and the MLflow params made from them (never the MLP's architecture
fields for a user's model, whichever of its attrs a killed driver managed to write)."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from study.record import CodeRecord, TrialAttr, TrialRecord, config_to_json, run_params
from trainers import TrainConfig


def frozen(attrs: dict[str, object]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        params={"hidden": 8, "lr": 0.01},
        distributions={"hidden": IntDistribution(4, 16), "lr": FloatDistribution(1e-3, 0.1, log=True)},
        value=0.5,
        user_attrs=attrs,
    )


def test_run_params_of_each_kind_of_trial() -> None:
    config = TrainConfig(lr=0.01, epochs=3)
    mlp = TrialRecord.of(frozen({TrialAttr.CONFIG: config_to_json(config)})).run_params()
    assert mlp == config.to_dict() and "depth" in mlp
    model = TrialRecord.of(frozen({TrialAttr.CONFIG: config_to_json(config), TrialAttr.USER_PARAMS: {"hidden": 8}}))
    assert model.user_params == {"hidden": 8}
    got = model.run_params()
    assert got["hidden"] == 8 and got["lr"] == 0.01 and got["epochs"] == 3 and not {"depth", "width", "activation"} & set(got)
    # a driver killed after the user params were stored but before the config: sampled values and user params
    half = TrialRecord.of(frozen({TrialAttr.USER_PARAMS: {"hidden": 8}})).run_params()
    assert half == {"hidden": 8, "lr": 0.01}
    trainer = TrialRecord.of(frozen({TrialAttr.USER_PARAMS: {"hidden": 8, "lr": 0.01, "epochs": 5, "seed": 1}}))
    assert trainer.config is None and trainer.run_params() == {"hidden": 8, "lr": 0.01, "epochs": 5, "seed": 1}
    assert run_params(None, {"a": 1}) == {"a": 1}


def test_a_changed_code_file_warns_with_both_hashes() -> None:
    old = CodeRecord("model", "cnn.py:build", "/p/cnn.py", "a" * 64)
    assert old.changed(CodeRecord("model", "cnn.py:build", "/p/cnn.py", "a" * 64)) is None
    warning = old.changed(CodeRecord("model", "cnn.py:build", "/p/cnn.py", "b" * 64))
    assert warning is not None and "a" * 64 in warning and "b" * 64 in warning and "/p/cnn.py" in warning
    other = old.changed(CodeRecord("model", "net.py:build", "/p/net.py", "c" * 64))
    assert other is not None and "cnn.py:build" in other and "net.py:build" in other
    assert CodeRecord.from_json(old.to_json()) == old and CodeRecord.from_json({"x": 1}) is None
