"""The compare section: validation naming the field, arms, cells, lr tuning, parameter budget."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from search_spaces.budget import count_params
from study.comparison import TUNE_SEED_BASE, parse_compare, runs
from trainers import TrainConfig

BASE = {
    "claim": "dropout reduces the gap",
    "factor": {"dropout": [0.0, 0.3, 0.5]},
    "baseline": 0,
    "measure": "gap",
    "expect": "lower",
}


def test_factor_arms_cells_and_judgement() -> None:
    c = parse_compare({**BASE, "seeds": 3})
    assert list(c.arms()) == ["dropout=0.0", "dropout=0.3", "dropout=0.5"]
    assert c.baseline_name == "dropout=0.0" and c.treatment_name == "dropout=0.5"  # baseline 0 names the level 0.0
    cells = c.cells()
    assert [(x.arm, x.seed) for x in cells[:4]] == [
        ("dropout=0.0", 0),
        ("dropout=0.3", 0),
        ("dropout=0.5", 0),
        ("dropout=0.0", 1),
    ]
    assert len(cells) == 9 and cells[4].overrides == {"dropout": 0.3, "seed": 1}
    assert cells[4].config({"depth": 1, "dropout": 0.9}) == TrainConfig(depth=1, dropout=0.3, seed=1)  # overrides beat fixed
    (j,) = c.judgements()
    assert j.measures == dict.fromkeys(c.arms(), "gap")
    assert j.kwargs == {
        "baseline": "dropout=0.0",
        "treatment": "dropout=0.5",
        "confidence": 0.95,
        "method": "t",
        "correction": "holm",
        "overall": "all",
        "claim": "dropout reduces the gap",
        "metric": "gap",
        "expect": "lower",
        "min_effect": 0.0,
    }


def test_factorial_and_named_levels_with_their_own_measures() -> None:
    f = parse_compare(
        {
            **BASE,
            "factor": None,
            "factors": {"depth": [1, 4], "optimizer": ["sgd", "adam"]},
            "baseline": {"depth": 1, "optimizer": "sgd"},
        }
    )
    assert list(f.arms()) == [
        "depth=1,optimizer=sgd",
        "depth=1,optimizer=adam",
        "depth=4,optimizer=sgd",
        "depth=4,optimizer=adam",
    ]
    assert f.baseline_name == "depth=1,optimizer=sgd"
    es = parse_compare(
        {
            "claim": "early stopping keeps near the minimum",
            "levels": {"hindsight": {}, "p3": {"measure": "es_kept:3"}, "p5": {"measure": "es_kept:5"}},
            "baseline": "hindsight",
            "measure": "min:val_loss",
            "expect": "equal",
            "min_effect": 0.02,
            "seeds": 2,
        }
    )
    cells = es.cells()
    assert {a: x.measure for a, x in es.arms().items()} == {"hindsight": "min:val_loss", "p3": "es_kept:3", "p5": "es_kept:5"}
    assert len(cells) == 6 and len(runs(cells)) == 2  # three arms measured on the same two runs
    assert es.judgements()[0].kwargs["metric"] == "es_kept:3, es_kept:5 against min:val_loss"


def test_tune_lr_cells_choice_and_main_cells() -> None:
    c = parse_compare(
        {
            **BASE,
            "factor": {"optimizer": ["sgd", "adam"]},
            "baseline": "sgd",
            "seeds": 2,
            "tune_lr": {"grid": [0.01, 0.1, 1.0], "seeds": 2, "select": "min:val_loss"},
        }
    )
    tune = c.tune_cells()
    assert len(tune) == 2 * 3 * 2 and {x.phase for x in tune} == {"tune"}
    assert {x.seed for x in tune} == {TUNE_SEED_BASE, TUNE_SEED_BASE + 1}  # never the verdict's seeds
    assert all(x.measure == "min:val_loss" for x in tune)
    values = {
        "optimizer=sgd": {0.01: [0.9, 0.8], 0.1: [0.3, 0.5], 1.0: [0.1, math.nan]},  # diverged once: worst
        "optimizer=adam": {0.01: [0.2, 0.2], 0.1: [0.2, 0.2], 1.0: [2.0, 2.0]},  # a tie keeps the earlier lr
    }
    lrs = c.choose_lrs(values)
    assert lrs == {"optimizer=sgd": 0.1, "optimizer=adam": 0.01}
    main = c.cells(lrs)
    assert [x.overrides for x in main[:2]] == [
        {"optimizer": "sgd", "lr": 0.1, "seed": 0},
        {"optimizer": "adam", "lr": 0.01, "seed": 0},
    ]
    with pytest.raises(ValueError, match="run tune_cells\\(\\) first and pass choose_lrs"):
        c.cells()
    with pytest.raises(ValueError, match="no tuning values for arm 'optimizer=adam' at lr 1.0"):
        c.choose_lrs({**values, "optimizer=adam": {0.01: [0.2], 0.1: [0.2]}})
    maximize = parse_compare(
        {
            **BASE,
            "factor": {"optimizer": ["sgd", "adam"]},
            "baseline": "sgd",
            "tune_lr": {"grid": [0.01, 0.1], "select": "max:val_acc", "goal": "maximize"},
        }
    )
    assert maximize.choose_lrs({"optimizer=sgd": {0.01: [0.9], 0.1: [0.8]}, "optimizer=adam": {0.01: [0.7], 0.1: [0.95]}}) == {
        "optimizer=sgd": 0.01,
        "optimizer=adam": 0.1,
    }


def test_param_budget_gives_each_depth_the_width_that_spends_it() -> None:
    c = parse_compare({**BASE, "factor": {"depth": [1, 2, 4]}, "baseline": 1, "param_budget": 600})
    cells = c.cells(fixed={"activation": "relu"}, shape=(8, 2))
    widths = {x.overrides["depth"]: x.overrides["width"] for x in cells}
    for depth, w in widths.items():
        n = count_params([w] * depth, 8, 2)
        assert abs(n - 600) <= abs(count_params([w + 1] * depth, 8, 2) - 600)  # the closest width...
        assert abs(n - 600) <= abs(count_params([w - 1] * depth, 8, 2) - 600)
    assert widths[1] > widths[2] > widths[4]
    maxout = c.cells(fixed={"activation": "maxout", "maxout_pieces": 3}, shape=(8, 2))
    assert maxout[0].overrides["width"] < widths[1]  # maxout units cost three columns each
    with pytest.raises(ValueError, match="param_budget needs the dataset's shape"):
        c.cells()


def test_check_names_the_arm_whose_config_is_invalid() -> None:
    c = parse_compare({**BASE, "factor": {"dropout": [0.0, 1.5]}})
    with pytest.raises(ValueError, match=r"compare arm 'dropout=1.5' .*dropout must be in \[0, 1\), got 1.5"):
        c.check({"depth": 2})
    t = parse_compare({**BASE, "factor": {"optimizer": ["sgd", "adam"]}, "baseline": "sgd", "tune_lr": {"grid": [0.1, 2000.0]}})
    with pytest.raises(ValueError, match="compare arm 'optimizer=sgd'.*weight_decay"):
        t.check({"weight_decay": 0.001})  # lr * weight_decay must stay < 1 at every lr of the grid


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"factor": None}, "give exactly one of factor, factors or levels, got none"),
        ({"levels": {"a": {}, "b": {}}}, "give exactly one of factor, factors or levels, got \\['factor', 'levels'\\]"),
        ({"factor": {"dropout": [0.0, 0.5], "l2": [0.0, 1.0]}}, "factor is one field -> its levels, got 2 fields"),
        ({"factor": {"droput": [0.0, 0.5]}}, "factor: 'droput' is not a TrainConfig field"),
        ({"factor": {"seed": [1, 2]}}, "'seed' is not a TrainConfig field \\(seed comes from seeds\\)"),
        ({"factor": {"dropout": [0.5]}, "baseline": 0.5}, "factor 'dropout' needs at least 2 levels"),
        ({"factor": {"dropout": [0.5, 0.5]}, "baseline": 0.5}, "factor 'dropout' repeats a level"),
        ({"baseline": 0.1}, "baseline 0.1 is not a level; levels: dropout=0.0, dropout=0.3, dropout=0.5"),
        ({"treatment": 0.0}, "treatment 0.0 must be a level other than the baseline"),
        ({"measure": "mean:gap"}, "unknown form 'mean'"),
        ({"expect": "smaller"}, "expect"),
        ({"expect": "equal"}, "expect 'equal' needs min_effect > 0"),
        ({"seeds": 1}, "seeds"),
        ({"confidence": 1.5}, "confidence"),
        ({"method": "jackknife"}, "method"),
        ({"colour": "red"}, "colour"),
        ({"tune_lr": {"grid": [0.1]}}, "grid"),
        ({"tune_lr": {"grid": [0.1, -1]}}, "every lr of the grid must be a finite number > 0"),
        ({"factor": {"lr": [0.1, 0.01]}, "baseline": 0.1, "tune_lr": {"grid": [0.1, 1.0]}}, "no level may set lr"),
        ({"factor": {"width": [8, 16]}, "baseline": 8, "param_budget": 500}, "no level may set width"),
        ({"also": [{"claim": "x", "measure": "gap", "expect": "equal"}]}, "equivalence margin"),
        (
            {"factor": None, "levels": {"a": {"dropuot": 0.1}, "b": {}}, "baseline": "a"},
            "level 'a': 'dropuot' is not a TrainConfig field",
        ),
    ],
)
def test_bad_compare_sections_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_compare({**BASE, **change})
