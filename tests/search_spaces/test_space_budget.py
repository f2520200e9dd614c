"""Parameter counting matches the real NumPy MLP; a budget width spends its budget."""

from __future__ import annotations

import optuna
import pytest

import search_spaces
from search_spaces import SpaceError, count_params, width_for_budget
from trainers.config import TrainConfig
from trainers.numpy_mlp import MLP


@pytest.mark.parametrize(
    "kw",
    [
        {"depth": 0},
        {"depth": 1, "width": 7},
        {"depth": 3, "width": (50, 20, 5)},
        {"depth": 2, "width": 9, "activation": "maxout", "maxout_pieces": 3},
        {"depth": 4, "width": (8, 6, 4, 2), "activation": "maxout", "maxout_pieces": 2},
    ],
)
@pytest.mark.parametrize(("n_in", "n_cls"), [(64, 10), (2, 3)])
def test_count_params_matches_the_numpy_mlp(kw: dict, n_in: int, n_cls: int) -> None:
    config = TrainConfig(**kw)
    pieces = config.maxout_pieces if config.activation == "maxout" else 1
    assert count_params(config.widths, n_in, n_cls, pieces) == MLP(config, n_in, n_cls).n_params


@pytest.mark.parametrize("pieces", [1, 3])
@pytest.mark.parametrize("depth", [1, 2, 5, 8])
def test_budget_width_is_the_closest_width(depth: int, pieces: int) -> None:
    budget = 20_000
    w = width_for_budget(budget, depth, 64, 10, pieces)

    def err(x: int) -> int:
        return abs(count_params([x] * depth, 64, 10, pieces) - budget)

    assert err(w) <= err(w - 1) and err(w) <= err(w + 1)
    assert err(w) <= 0.05 * budget


@pytest.mark.parametrize(("n_in", "n_cls"), [(64, 10), (2, 2), (784, 10)])
def test_depth_vs_width_meets_its_budget_at_every_depth(n_in: int, n_cls: int) -> None:
    space = search_spaces.load("depth_vs_width")
    widths = []
    for depth in range(1, 9):
        trial = optuna.trial.FixedTrial({"sizing": "budget", "depth": depth})
        config = space.suggest(trial, n_inputs=n_in, n_classes=n_cls)
        n = MLP(config, n_in, n_cls).n_params
        assert trial.user_attrs["n_params"] == n
        assert trial.user_attrs["n_params_budget"] == 20_000
        assert abs(n - 20_000) <= 0.03 * 20_000, (depth, config.width, n)
        assert config.depth == depth and isinstance(config.width, int)
        widths.append(config.width)
    assert widths == sorted(widths, reverse=True)  # deeper means thinner at equal cost


def test_budget_counts_maxout_pieces(tmp_path) -> None:
    path = tmp_path / "maxout_budget.yaml"
    path.write_text(
        "name: maxout_budget\ndescription: Maxout at a fixed budget.\n"
        "fixed: {activation: maxout}\n"
        "parameters:\n  maxout_pieces: {int: [2, 4]}\n  depth: {int: [1, 4]}\n  width: {budget: 10000}\n"
    )
    space = search_spaces.load(path)
    for pieces in (2, 3, 4):
        trial = optuna.trial.FixedTrial({"maxout_pieces": pieces, "depth": 3})
        config = space.suggest(trial)
        n = MLP(config, 64, 10).n_params
        assert abs(n - 10_000) <= 0.05 * 10_000
        assert config.width == width_for_budget(10_000, 3, 64, 10, pieces)


def test_budget_parameter_from_an_aux_choice(tmp_path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(
        "name: budgets\ndescription: Several budgets.\n"
        "parameters:\n  size: {aux: true, choices: [5000, 50000]}\n  depth: {int: [1, 6]}\n  width: {budget: size}\n"
    )
    space = search_spaces.load(path)
    for size in (5000, 50000):
        trial = optuna.trial.FixedTrial({"size": size, "depth": 4})
        config = space.suggest(trial)
        assert abs(MLP(config, 64, 10).n_params - size) <= 0.05 * size


def test_unreachable_budget_is_an_error_naming_the_parameter(tmp_path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\ndescription: Too small.\nparameters:\n  depth: {int: [1, 8]}\n  width: {budget: 50}\n")
    space = search_spaces.load(path)
    with pytest.raises(SpaceError, match=r"tiny\.yaml: parameter 'width': no width gives 50 parameters within 5% at depth 8"):
        space.suggest(optuna.trial.FixedTrial({"depth": 8}))


def test_budget_with_depth_zero_is_refused_at_load(tmp_path) -> None:
    path = tmp_path / "zero.yaml"
    path.write_text("name: zero\ndescription: Depth 0.\nparameters:\n  depth: {int: [0, 3]}\n  width: {budget: 5000}\n")
    with pytest.raises(
        SpaceError, match=r"zero\.yaml: parameter 'width': a parameter budget needs depth >= 1, but depth can be 0"
    ):
        search_spaces.load(path)
