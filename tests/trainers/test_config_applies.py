"""`TrainConfig.applies`: a field said not to apply leaves training bit-identical whatever its
value; a conditional field said to apply changes it. Trained for real, NumPy backend."""

from __future__ import annotations

import pytest

from trainers import TrainConfig, load_dataset, train
from trainers.config import APPLIES, OPTIMIZERS, SCHEDULES

DATA = load_dataset("gaussian_mixture", n_samples=120, n_features=4, n_classes=3, seed=0)
BASE = {"depth": 1, "width": 8, "epochs": 3, "batch_size": 16, "lr": 0.05, "seed": 1}
#: Two values of each conditional field, far enough apart to show whenever the field matters.
VALUES = {
    "width": (8, 5),
    "activation": ("relu", "sigmoid"),
    "maxout_pieces": (2, 4),
    "leaky_slope": (0.01, 0.5),
    "dropout": (0.0, 0.5),
    "dropout_eval": ("scale", "mc"),
    "mc_samples": (2, 5),
    "momentum": (0.0, 0.9),
    "beta1": (0.5, 0.9),
    "beta2": (0.9, 0.999),
    "rho": (0.5, 0.99),
    "eps": (1e-8, 0.5),
    "gamma": (0.1, 0.9),
    "step_size": (1, 2),
    "plateau_patience": (1, 2),
    "min_lr": (0.0, 0.04),
}

#: Configurations covering every optimizer, schedule and activation, depth 0 and warm-up.
CASES = (
    [{"optimizer": o} for o in OPTIMIZERS]
    + [{"schedule": s, "optimizer": "sgd"} for s in SCHEDULES]
    + [{"activation": a} for a in ("relu", "leaky_relu", "maxout", "tanh")]
    + [{"depth": 0, "init": "he"}, {"depth": 0, "init": "auto"}, {"warmup_epochs": 1}]
    + [{"dropout_eval": "mc"}, {"dropout": 0.3}, {"depth": 0, "dropout": 0.3, "dropout_eval": "mc"}]
)


def history(**kw: object) -> list[dict[str, float]]:
    result = train(TrainConfig(**{**BASE, **kw}), DATA)
    return [{k: v for k, v in r.metrics().items() if k != "seconds"} for r in result.history]


def test_every_conditional_field_has_test_values() -> None:
    assert set(APPLIES) == set(VALUES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_a_field_that_does_not_apply_has_no_effect(case: dict[str, object]) -> None:
    config = TrainConfig(**{**BASE, **case})
    idle = [f for f in APPLIES if not config.applies(f)]
    assert idle, "every case leaves some field without effect"
    reference = history(**case)
    for f in idle:
        for v in VALUES[f]:
            try:
                TrainConfig(**{**BASE, **case, f: v})
            except ValueError:
                continue
            assert history(**{**case, f: v}) == reference, f"{f}={v!r} changed a run where it is said not to apply"
    used = config.used()
    assert set(used) == {f for f in config.to_dict() if f not in idle}


#: (configuration, conditional field that applies there): changing it must show in 3 epochs.
EFFECTS = [
    ({"depth": 1}, "width"),
    ({"depth": 1}, "activation"),
    ({"depth": 0, "init": "auto"}, "activation"),  # auto init: Glorot for sigmoid, He for relu
    ({"activation": "maxout"}, "maxout_pieces"),
    ({"activation": "leaky_relu"}, "leaky_slope"),
    ({"depth": 1}, "dropout"),
    ({"dropout": 0.3}, "dropout_eval"),
    ({"input_dropout": 0.3, "depth": 0}, "dropout_eval"),
    ({"dropout": 0.3, "dropout_eval": "mc"}, "mc_samples"),
    ({"optimizer": "momentum"}, "momentum"),
    ({"optimizer": "nesterov"}, "momentum"),
    ({"optimizer": "adam"}, "beta1"),
    ({"optimizer": "adamw"}, "beta2"),
    ({"optimizer": "rmsprop"}, "rho"),
    ({"optimizer": "adagrad"}, "eps"),
    ({"optimizer": "sgd", "schedule": "step", "step_size": 1}, "gamma"),
    ({"optimizer": "sgd", "schedule": "exponential"}, "gamma"),
    ({"optimizer": "sgd", "schedule": "step", "gamma": 0.5}, "step_size"),
    ({"optimizer": "sgd", "schedule": "cosine"}, "min_lr"),
]


@pytest.mark.parametrize(("case", "field"), EFFECTS, ids=[f"{f}:{c}" for c, f in EFFECTS])
def test_a_field_that_applies_has_an_effect(case: dict[str, object], field: str) -> None:
    assert TrainConfig(**{**BASE, **case}).applies(field)
    a, b = VALUES[field]
    assert history(**{**case, field: a}) != history(**{**case, field: b})


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown TrainConfig field 'lr_adam'"):
        TrainConfig().applies("lr_adam")
