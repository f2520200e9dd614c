"""TrainConfig validation: one ValueError naming the field, the value and what is allowed."""

from __future__ import annotations

import dataclasses

import pytest

from trainers import TrainConfig

BAD = [
    ({"dropout": 1.2}, "dropout must be in [0, 1), got 1.2"),
    ({"input_dropout": -0.1}, "input_dropout must be in [0, 1)"),
    ({"depth": -1}, "depth must be an integer in [0, 64], got -1"),
    ({"depth": 2, "width": (8, 8, 8)}, "width must be an int or a tuple of 2 ints"),
    ({"width": 0}, "width must be an integer in [1, 65536]"),
    ({"activation": "swish"}, "activation must be one of sigmoid, tanh, relu, leaky_relu, maxout, got 'swish'"),
    ({"loss": "hinge"}, "loss must be one of cross_entropy, mse"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw"),
    ({"lr": 0}, "lr must be a finite number > 0, got 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 3.5}, "batch_size must be an integer >= 1"),
    ({"schedule": "linear"}, "schedule must be one of constant, step"),
    ({"gamma": 0.0}, "gamma must be in (0, 1]"),
    ({"warmup_epochs": 20, "epochs": 20}, "warmup_epochs must be an integer in [0, epochs=20)"),
    ({"l1": -1}, "l1 must be a finite number >= 0"),
    ({"weight_decay": 2.0, "lr": 1.0}, "weight_decay must be None or a number >= 0 with lr * weight_decay < 1"),
    ({"patience": 0}, "patience must be None (early stopping off) or an integer >= 1"),
    ({"monitor": "train_loss"}, "monitor must be one of val_loss, val_acc"),
    ({"maxout_pieces": 1}, "maxout_pieces must be an integer in [2, 16]"),
    ({"init": "zeros"}, "init must be one of auto, he, glorot, lecun, small"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be None or a finite number > 0"),
    ({"min_lr": 0.5, "lr": 0.1}, "min_lr must be a number in [0, lr=0.1)"),
    ({"restore_best": "yes"}, "restore_best must be true or false"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_values_name_the_field(kwargs, message) -> None:
    with pytest.raises(ValueError) as e:
        TrainConfig(**kwargs)
    assert message in str(e.value)


def test_frozen_and_round_trips() -> None:
    c = TrainConfig(depth=3, width=(32, 16, 8), optimizer="nesterov")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.depth = 4  # type: ignore[misc]
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.widths == (32, 16, 8)
    assert TrainConfig(width=[4, 4], depth=2).width == (4, 4)


def test_unknown_fields_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_init_auto_resolves_by_activation() -> None:
    assert TrainConfig(activation="sigmoid").resolved_init == "glorot"
    assert TrainConfig(activation="tanh").resolved_init == "glorot"
    assert TrainConfig(activation="relu").resolved_init == "he"
    assert TrainConfig(activation="maxout").resolved_init == "he"
    assert TrainConfig(activation="relu", init="small").resolved_init == "small"
