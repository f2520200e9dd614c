"""Every load error is raised before anything runs, naming the file, the parameter and what
is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

import search_spaces
from search_spaces import SpaceError

HEAD = "name: bad\ndescription: A space with a mistake in it.\n"

CASES = {
    "unknown_parameter": (
        "parameters:\n  learning_rate: {float: [0.001, 0.1]}\n",
        r"parameter 'learning_rate': name is not a TrainConfig field; allowed fields: .*\blr\b.*aux: true",
    ),
    "unknown_field": (
        "parameters:\n  lr_a: {field: learnrate, float: [0.001, 0.1]}\n",
        r"parameter 'lr_a': field 'learnrate' is not a TrainConfig field; allowed fields: .*\blr\b",
    ),
    "empty_range": ("parameters:\n  lr: {float: [0.1, 0.1]}\n", r"parameter 'lr': empty range \[0.1, 0.1\]; allowed: low < high"),
    "inverted_range": (
        "parameters:\n  depth: {int: [4, 1]}\n",
        r"parameter 'depth': inverted range \[4, 1\]; allowed: low < high",
    ),
    "log_range_with_zero": (
        "parameters:\n  l2: {float: [0, 0.1], log: true}\n",
        r"parameter 'l2': log range \[0, 0.1\] includes 0 or negatives; allowed on a log scale: 0 < low < high",
    ),
    "choice_outside_trainconfig": (
        "parameters:\n  activation: {choices: [relu, swish]}\n",
        r"parameter 'activation': value 'swish' is not allowed for activation: activation must be one of sigmoid, tanh, relu, leaky_relu, maxout",
    ),
    "range_outside_trainconfig": (
        "parameters:\n  dropout: {float: [0.0, 1.0]}\n",
        r"parameter 'dropout': value 1.0 is not allowed for dropout: dropout must be in \[0, 1\)",
    ),
    "layer_width_outside_trainconfig": (
        "parameters:\n  width: {layers: [0, 64]}\n",
        r"parameter 'width': value 0 is not allowed for width: width must be an integer in \[1, 65536\]",
    ),
    "range_against_fixed_value": (
        "fixed: {epochs: 3}\nparameters:\n  warmup_epochs: {int: [0, 5]}\n",
        r"parameter 'warmup_epochs': value 5 is not allowed for warmup_epochs: warmup_epochs must be an integer in \[0, epochs=3\)",
    ),
    "condition_on_missing_parameter": (
        "parameters:\n  optimizer: {choices: [sgd, momentum]}\n  momentum: {float: [0.5, 0.9], when: {optimiser: momentum}}\n",
        r"parameter 'momentum': condition on 'optimiser', which is not a parameter of this space \(did you mean 'optimizer'\?\); allowed: one of the parameters \['momentum', 'optimizer'\]",
    ),
    "condition_that_never_holds": (
        "parameters:\n  optimizer: {choices: [sgd, momentum]}\n  momentum: {float: [0.5, 0.9], when: {optimizer: nesterov}}\n",
        r"parameter 'momentum': condition value\(s\) \['nesterov'\] for 'optimizer' can never hold; allowed: choices sgd, momentum",
    ),
    "cycle": (
        "parameters:\n  optimizer: {choices: [sgd, momentum], when: {schedule: step}}\n"
        "  schedule: {choices: [constant, step], when: {optimizer: momentum}}\n",
        r"parameter 'optimizer': conditions form a cycle optimizer -> schedule -> optimizer; allowed: no parameter depending on itself",
    ),
    "self_condition": (
        "parameters:\n  optimizer: {choices: [sgd, momentum], when: {optimizer: sgd}}\n",
        r"parameter 'optimizer': conditions form a cycle optimizer -> optimizer",
    ),
    "two_parameters_one_field": (
        "parameters:\n  lr_a: {field: lr, float: [0.001, 0.1]}\n  lr_b: {field: lr, float: [0.01, 1.0]}\n",
        r"parameter 'lr_a': it and 'lr_b' both set field 'lr' and can be active in the same trial; allowed: conditions on a common parameter with disjoint values",
    ),
    "parameter_also_fixed": (
        "fixed: {lr: 0.01}\nparameters:\n  lr: {float: [0.001, 0.1]}\n",
        r"parameter 'lr': sets field 'lr', which is also under `fixed:`; allowed: one of the two",
    ),
    "step_with_log": (
        "parameters:\n  width: {int: [8, 64], log: true, step: 8}\n",
        r"parameter 'width': step and log cannot be combined; allowed: one of them",
    ),
    "step_not_dividing": (
        "parameters:\n  dropout: {float: [0.0, 0.5], step: 0.3}\n",
        r"parameter 'dropout': step 0.3 does not divide the range \[0, 0.5\]; allowed: \(high - low\) a multiple of step",
    ),
    "unknown_key": (
        "parameters:\n  lr: {float: [0.001, 0.1], scale: log}\n",
        r"parameter 'lr': unknown key\(s\) \['scale'\]; allowed with float: \['aux', 'field', 'float', 'log', 'step', 'when'\]",
    ),
    "two_kinds": (
        "parameters:\n  lr: {float: [0.001, 0.1], choices: [0.01]}\n",
        r"parameter 'lr': needs exactly one of float, int, choices, layers, budget, got \['float', 'choices'\]",
    ),
    "float_bounds_for_int": (
        "parameters:\n  depth: {int: [1, 2.5]}\n",
        r"parameter 'depth': int must be \[low, high\] with two integers, got \[1, 2.5\]",
    ),
    "list_choice": (
        "parameters:\n  width: {choices: [[64, 32], 64]}\n",
        r"parameter 'width': choice \[64, 32\] is not allowed: choices must be null, true/false, numbers or strings \(per-layer widths: `layers: \[low, high\]`\)",
    ),
    "budget_on_other_field": (
        "parameters:\n  depth: {budget: 1000}\n",
        r"parameter 'depth': budget sets the width field; its field must be 'width', got 'depth'",
    ),
    "layer_names_clash": (
        "parameters:\n  depth: {int: [1, 3]}\n  width: {layers: [8, 64]}\n  width_l0: {aux: true, choices: [1, 2]}\n",
        r"parameter 'width': its per-layer Optuna names width_l<i> clash with parameter\(s\) \['width_l0'\]",
    ),
    "condition_on_derived_width": (
        "parameters:\n  depth: {int: [1, 3]}\n  width: {budget: 5000}\n  dropout: {float: [0.0, 0.5], when: {width: 64}}\n",
        r"parameter 'dropout': condition on 'width', a budget width, which nothing may depend on",
    ),
}


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEAD + body)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_error_names_file_parameter_and_what_is_allowed(tmp_path: Path, case: str) -> None:
    body, message = CASES[case]
    path = _write(tmp_path, case, body)
    with pytest.raises(SpaceError, match=re.escape(str(path)) + ": " + message):
        search_spaces.load(path)


def test_every_case_is_fine_once_corrected(tmp_path: Path) -> None:
    """The same layout with a correct parameter loads and samples: the failures above are the mistakes, not the format."""
    path = _write(tmp_path, "good", "fixed: {epochs: 3}\nparameters:\n  optimizer: {choices: [sgd, momentum]}\n"
                  "  momentum: {float: [0.5, 0.9], when: {optimizer: momentum}}\n  warmup_epochs: {int: [0, 2]}\n"
                  "  lr_a: {field: lr, float: [0.001, 0.1], when: {optimizer: sgd}}\n"
                  "  lr_b: {field: lr, float: [0.01, 1.0], when: {optimizer: momentum}}\n")  # fmt: skip
    config = search_spaces.load(path).suggest(
        optuna.trial.FixedTrial({"optimizer": "momentum", "momentum": 0.7, "warmup_epochs": 2, "lr_b": 0.5})
    )
    assert (config.optimizer, config.momentum, config.warmup_epochs, config.lr, config.epochs) == ("momentum", 0.7, 2, 0.5, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: bad\ndescription: x\nparameters: {lr: {float: [0.1, 1]}\n", r"not valid YAML"),
        (
            "name: bad\ndescription: x\nparams: {}\n",
            r"unknown key\(s\) \['params'\] \(did you mean 'parameters'\?\); allowed: name, description, fixed, parameters",
        ),
        ("name: bad\nparameters: {}\n", r"description must be a non-empty paragraph"),
        ("description: x\n", r"name must be a word"),
        ("- just\n- a list\n", r"must be a mapping with keys name, description, fixed, parameters"),
        (
            "name: bad\ndescription: x\nfixed: {learning_rate: 0.1}\n",
            r"fixed value 'learning_rate' is not a TrainConfig field; allowed: .*\blr\b",
        ),
        (
            "name: bad\ndescription: x\nfixed: {optimizer: adam_w}\n",
            r"fixed value optimizer='adam_w' is not allowed: optimizer must be one of sgd",
        ),
        (
            "name: bad\ndescription: x\nfixed: !!python/object/apply:os.getcwd []\n",
            r"not valid YAML \(could not determine a constructor",
        ),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=re.escape(str(path)) + ": " + message):
        search_spaces.load(path)


def test_unknown_names_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(
        SpaceError,
        match=r"unknown search space 'optimisers' \(did you mean 'optimizers'\?\); allowed: a built-in name \(activations, .*optimizers",
    ):
        search_spaces.load("optimisers")
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpaceError, match=re.escape(f"{missing}: no such file")):
        search_spaces.load(missing)


def test_exponent_floats_read_as_numbers(tmp_path: Path) -> None:
    """PyYAML reads ``1e-3`` as a string; a space means the number."""
    path = _write(tmp_path, "exp", "fixed: {lr: 1e-3}\nparameters:\n  l2: {float: [1e-6, 1e-2], log: true}\n")
    config = search_spaces.load(path).suggest(optuna.trial.FixedTrial({"l2": 1e-4}))
    assert config.lr == 1e-3 and config.l2 == 1e-4
