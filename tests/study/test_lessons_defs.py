"""The built-in lessons: every file loads and validates, and the large effects point the
lecture's way at a small size (few seeds, few epochs) through train + measures + verdicts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from study.comparison import CompareSpec, lessons, load_lesson, parse_compare
from study.lessons import LESSON_DIR, LESSON_NAMES
from study.measures import measure_result, parse_measure
from study.query.verdicts import compare
from study.spec import DatasetSpec, parse_spec
from trainers import load_dataset, train


def _dataset(spec: dict[str, Any]) -> Any:
    ds = DatasetSpec.model_validate(spec.get("dataset", {}))
    return load_dataset(ds.name, val=ds.val, test=ds.test, seed=ds.seed, label_column=ds.label_column, **ds.args)


def test_every_lesson_has_a_file_and_every_file_is_a_lesson() -> None:
    files = {p.stem for p in Path(LESSON_DIR).glob("*.yaml")}
    assert files == set(LESSON_NAMES)
    listed = lessons()
    assert list(listed) == list(LESSON_NAMES)
    for name, (claim, path) in listed.items():
        assert claim == load_lesson(name)["compare"]["claim"] and path == LESSON_DIR / f"{name}.yaml"


@pytest.mark.parametrize("name", LESSON_NAMES)
def test_lesson_loads_and_validates(name: str) -> None:
    spec = load_lesson(name)
    assert spec["name"] == f"lesson-{name}"
    study = parse_spec(spec, source=f"lesson {name}")
    assert study.backend == "numpy" and study.concurrency == 2 and study.pruner.name == "none"
    comp = parse_compare(spec["compare"])
    assert study.compare == comp and study.trials == comp.n_runs  # a comparison trains each of its runs once
    data = _dataset(spec)
    comp.check(study.fixed, (data.n_features, data.n_classes))  # every arm is a valid TrainConfig
    for j in comp.judgements():
        for m in j.measures.values():
            parse_measure(m)
    lrs = dict.fromkeys(comp.arms(), 0.01) if comp.tune_lr else None
    cells = comp.cells(lrs, study.fixed, (data.n_features, data.n_classes))
    assert comp.seeds >= 5 and len(cells) == comp.seeds * len(comp.arms())


def test_unknown_lesson_lists_the_lessons() -> None:
    with pytest.raises(ValueError, match="unknown lesson 'dropuot'; lessons: deeper, cross_entropy"):
        load_lesson("dropuot")


# -- the large effects, at a small size ----------------------------------------------------------
def _run_small(name: str, seeds: int, **fixed: Any) -> list[dict[str, Any]]:
    """The lesson with `seeds` seeds and `fixed` over its fixed values, trained in-process."""
    spec = load_lesson(name)
    comp: CompareSpec = parse_compare({**spec["compare"], "seeds": seeds})
    assert comp.tune_lr is None
    data = _dataset(spec)
    cells = comp.cells(fixed={**spec["fixed"], **fixed}, shape=(data.n_features, data.n_classes))
    results = {}
    for c in cells:
        if c.key not in results:
            results[c.key] = train(c.config({**spec["fixed"], **fixed}), data, threads=1)
    out = []
    for j in comp.judgements():
        arms: dict[str, dict[int, float]] = defaultdict(dict)
        for c in cells:
            arms[c.arm][c.seed] = measure_result(j.measures[c.arm], results[c.key])
        out.append(compare(arms, **j.kwargs))
    return out


def test_sigmoid_vs_relu_gradient_ratio_small() -> None:
    (v, *_) = _run_small("vanishing_gradients", seeds=3, epochs=1)
    assert v["outcome"] == "supported" and v["effect"] > 2  # over a hundred times, in log10
    assert v["seeds"] == [0, 1, 2] and v["metric"] == "log10:grad_ratio@1"


def test_l1_vs_l2_sparsity_small() -> None:
    (v,) = _run_small("l1_sparsity", seeds=3, epochs=5)
    assert v["outcome"] == "supported" and v["effect"] > 0.05


def test_dropout_gap_small() -> None:
    v, _ = _run_small("dropout", seeds=3, epochs=8)
    assert v["outcome"] == "supported"
    levels = {lv["level"]: lv for lv in v["levels"]}
    assert levels["dropout=0.5"]["effect"] < levels["dropout=0.3"]["effect"] < 0  # more dropout, smaller gap
