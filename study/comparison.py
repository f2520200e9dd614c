"""The ``compare:`` section of a study spec: a designed experiment that ends with a verdict.

A comparison varies one factor over levels (or a few, full factorial; or named arms, each a
set of TrainConfig overrides), holds ``fixed`` as it is, runs every arm over the same
``seeds`` (so arms pair by seed), never prunes, and judges ``measure``
(`study.measures`) with `study.query.verdicts`::

    compare:
      claim: Dropout reduces the gap between validation and training loss
      factor: {dropout: [0.0, 0.3, 0.5]}
      baseline: 0.0
      measure: gap
      expect: lower
      seeds: 5

Arms are named ``dropout=0.3`` (``factor``), ``depth=2,width=64`` (``factors``) or by their
key (``levels``, whose overrides may also carry a ``measure`` of their own: a level measured
differently on the same runs, e.g. early stopping replayed at several patiences).

With ``param_budget`` every arm spends the same number of parameters: its width is the one
whose MLP at the arm's depth has the parameter count closest to the budget
(`search_spaces.budget.width_for_budget`, from the dataset's inputs and classes), so depth
is compared against width at an equal cost.

With ``tune_lr`` every arm gets its own learning rate, fairly: each lr of the grid runs
on ``tune_lr.seeds`` tuning seeds (``10000 + i``, never the verdict's seeds), the arm keeps
the lr with the best mean ``select`` measure (a diverged run counts as worst; a tie keeps
the earlier lr of the grid), and only then do the verdict's cells run at that lr.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search_spaces.budget import width_for_budget
from study.lessons import LESSON_DIR, LESSON_NAMES
from study.measures import parse_measure
from trainers.config import TrainConfig, field_names

TUNE_SEED_BASE = 10_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _measure(v: str) -> str:
    parse_measure(v)  # a ValueError naming the allowed forms
    return v


class TuneLR(_Model):
    """A small learning-rate grid, chosen per arm by ``select`` on tuning seeds."""

    grid: list[float] = Field(min_length=2)
    seeds: int = Field(2, ge=1, le=20, description="tuning seeds per lr, apart from the verdict's seeds")
    select: str = "min:val_loss"
    goal: Literal["minimize", "maximize"] = "minimize"

    @field_validator("select")
    @classmethod
    def _select(cls, v: str) -> str:
        return _measure(v)

    @field_validator("grid")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) or x <= 0 for x in v):
            raise ValueError(f"every lr of the grid must be a finite number > 0, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"the lr grid repeats a value: {v}")
        return v


class ConfirmsSpec(_Model):
    """A confirmation (``study confirm``): the arms are the top trials of tuning study
    `study`, re-trained on fresh seeds; they are ranked by their mean measure toward `goal`
    (`study.query.verdicts.rank`) rather than judged against a claim."""

    study: str = Field(min_length=1)
    goal: Literal["minimize", "maximize"]


class AlsoSpec(_Model):
    """A secondary claim judged on the same arms and runs (not corrected across claims)."""

    claim: str = Field(min_length=1)
    measure: str
    expect: Literal["lower", "higher", "equal"]
    min_effect: float = Field(0.0, ge=0)

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str) -> str:
        return _measure(v)

    @model_validator(mode="after")
    def _margin(self) -> AlsoSpec:
        if self.expect == "equal" and self.min_effect <= 0:
            raise ValueError("expect 'equal' needs min_effect > 0: the equivalence margin")
        return self


@dataclass(frozen=True)
class Arm:
    """One arm: its TrainConfig overrides (without seed) and the measure it is judged by."""

    name: str
    overrides: dict[str, Any]
    measure: str


@dataclass(frozen=True)
class Cell:
    """One run to make: `arm` at `seed`. ``key`` is shared by cells with identical overrides
    (arms that differ only in their measure), so each is trained once."""

    arm: str
    seed: int
    overrides: dict[str, Any]  # TrainConfig fields of this run, seed (and tuned lr) included
    measure: str
    phase: Literal["tune", "main"] = "main"
    key: str = field(default="", compare=False)

    def config(self, fixed: Mapping[str, Any]) -> TrainConfig:
        """The run's TrainConfig: `fixed` under this cell's overrides."""
        return TrainConfig.from_dict({**fixed, **self.overrides})


def _name(assign: Mapping[str, Any]) -> str:
    """``dropout=0.3``, ``optimizer=adam,lr=0.01``, ``width=[64, 64]``."""
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in assign.items())


def _match(value: Any, levels: Sequence[Any]) -> Any:
    """The level equal to `value` (so that a baseline of 0 names the level 0.0)."""
    return next((v for v in levels if v == value and isinstance(v, bool) == isinstance(value, bool)), value)


class CompareSpec(_Model):
    """The ``compare:`` section (see the module docstring)."""

    claim: str = Field(min_length=1, description="the claim in words")
    factor: dict[str, list[Any]] | None = Field(None, description="one TrainConfig field -> its levels")
    factors: dict[str, list[Any]] | None = Field(None, description="several fields -> levels, full factorial")
    levels: dict[str, dict[str, Any]] | None = Field(None, description="named arms -> TrainConfig overrides")
    baseline: Any = Field(description="the reference level: a value (factor), a mapping (factors) or a name (levels)")
    treatment: Any = Field(None, description="the headline level; default the last one")
    measure: str
    expect: Literal["lower", "higher", "equal"]
    seeds: int = Field(5, ge=2, le=1000)
    first_seed: int = Field(0, ge=0, lt=TUNE_SEED_BASE)
    confidence: float = Field(0.95, gt=0, lt=1)
    min_effect: float = Field(0.0, ge=0)
    method: Literal["t", "bootstrap", "percentile"] = "t"
    correction: Literal["holm", "bonferroni"] = "holm"
    overall: Literal["all", "any"] = "all"
    param_budget: int | None = Field(None, ge=1, description="every arm's width spends this many parameters at its depth")
    tune_lr: TuneLR | None = None
    also: list[AlsoSpec] = Field(default_factory=list)
    confirms: ConfirmsSpec | None = None

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str) -> str:
        return _measure(v)

    @model_validator(mode="after")
    def _consistent(self) -> CompareSpec:
        given = [k for k in ("factor", "factors", "levels") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of factor, factors or levels, got {given or 'none'}")
        fields = set(field_names()) - {"seed"}
        design = getattr(self, given[0])
        if given[0] == "factor" and len(design) != 1:
            raise ValueError(f"factor is one field -> its levels, got {len(design)} fields; use factors for several")
        if given[0] == "factors" and len(design) < 2:
            raise ValueError("factors needs at least 2 fields; use factor for one")
        for key, values in design.items():
            allowed = fields | {"measure"} if given[0] == "levels" else fields
            for f in values if given[0] == "levels" else [key]:
                if f not in allowed:
                    where = f"level {key!r}" if given[0] == "levels" else given[0]
                    raise ValueError(
                        f"{where}: {f!r} is not a TrainConfig field (seed comes from seeds); allowed: {sorted(allowed)}"
                    )
            if given[0] != "levels":
                if len(values) < (2 if given[0] == "factor" else 1):
                    raise ValueError(f"{given[0]} {key!r} needs at least {2 if given[0] == 'factor' else 1} levels, got {values}")
                if len({json.dumps(v) for v in values}) != len(values):
                    raise ValueError(f"{given[0]} {key!r} repeats a level: {values}")
            elif "measure" in values:
                _measure(values["measure"])
        if given[0] == "levels" and len(design) < 2:
            raise ValueError(f"levels needs at least 2 named arms, got {list(design)}")
        names = list(self.arms())
        base = self.baseline_name
        if base not in names:
            raise ValueError(f"baseline {self.baseline!r} is not a level; levels: {', '.join(names)}")
        if self.treatment is not None and (self.treatment_name not in names or self.treatment_name == base):
            raise ValueError(f"treatment {self.treatment!r} must be a level other than the baseline; levels: {', '.join(names)}")
        if self.expect == "equal" and self.min_effect <= 0:
            raise ValueError("expect 'equal' needs min_effect > 0: the equivalence margin")
        if self.tune_lr is not None and any("lr" in a.overrides for a in self.arms().values()):
            raise ValueError("tune_lr chooses lr per arm, so no level may set lr")
        if self.param_budget is not None and any("width" in a.overrides for a in self.arms().values()):
            raise ValueError("param_budget sets every arm's width, so no level may set width")
        return self

    # -- arms and cells ------------------------------------------------------------------------
    def _level_name(self, level: Any) -> str:
        if self.factor is not None:
            ((key, values),) = self.factor.items()
            return _name({key: _match(level, values)})
        if self.factors is not None:
            if not isinstance(level, Mapping) or set(level) != set(self.factors):
                return repr(level)
            return _name({k: _match(level[k], v) for k, v in self.factors.items()})
        return str(level)

    @property
    def baseline_name(self) -> str:
        return self._level_name(self.baseline)

    @property
    def treatment_name(self) -> str:
        """The headline level: `treatment`, else the last arm."""
        return list(self.arms())[-1] if self.treatment is None else self._level_name(self.treatment)

    def arms(self) -> dict[str, Arm]:
        """Every arm by name, in the order given (factorial: the first factor slowest)."""
        if self.levels is not None:
            out = {}
            for name, ov in self.levels.items():
                ov = dict(ov)
                out[name] = Arm(name, ov, ov.pop("measure", self.measure))
            return out
        design = self.factor if self.factor is not None else self.factors
        assert design is not None
        keys = list(design)
        combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*design.values())]
        return {_name(c): Arm(_name(c), c, self.measure) for c in combos}

    @property
    def n_runs(self) -> int:
        """How many runs the comparison trains: every distinct arm (arms that differ only in
        their measure share runs) at every lr of the grid on every tuning seed, then at every
        seed of the verdict. A width derived from ``param_budget`` keeps distinct arms distinct."""
        distinct = len({json.dumps(a.overrides, sort_keys=True) for a in self.arms().values()})
        tune = len(self.tune_lr.grid) * self.tune_lr.seeds if self.tune_lr is not None else 0
        return distinct * (tune + self.seeds)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def _resolved(self, arm: Arm, fixed: Mapping[str, Any], shape: tuple[int, int] | None) -> dict[str, Any]:
        """The arm's overrides, with the width that spends ``param_budget`` when there is one."""
        if self.param_budget is None:
            return dict(arm.overrides)
        if shape is None:
            raise ValueError("param_budget needs the dataset's shape: pass shape=(n_inputs, n_classes)")
        merged = {**fixed, **arm.overrides}
        depth = merged.get("depth", TrainConfig.depth)
        if depth == 0:
            return dict(arm.overrides)
        pieces = merged.get("maxout_pieces", TrainConfig.maxout_pieces) if merged.get("activation") == "maxout" else 1
        return {**arm.overrides, "width": width_for_budget(self.param_budget, depth, shape[0], shape[1], pieces)}

    def tune_cells(self, fixed: Mapping[str, Any] | None = None, shape: tuple[int, int] | None = None) -> list[Cell]:
        """The learning-rate tuning runs (arm x lr x tuning seed); empty without tune_lr.
        `fixed` and `shape` (n_inputs, n_classes) are needed with ``param_budget`` only."""
        if self.tune_lr is None:
            return []
        t = self.tune_lr
        return [
            _cell(a.name, TUNE_SEED_BASE + i, {**self._resolved(a, fixed or {}, shape), "lr": lr}, t.select, "tune")
            for a in self.arms().values()
            for lr in t.grid
            for i in range(t.seeds)
        ]

    def choose_lrs(self, values: Mapping[str, Mapping[float, Sequence[float]]]) -> dict[str, float]:
        """Per arm, the lr of the grid with the best mean ``select`` over the tuning seeds
        (`values`: arm -> lr -> values); NaN counts as worst, ties keep the earlier lr."""
        if self.tune_lr is None:
            raise ValueError("choose_lrs needs tune_lr in the compare section")
        sign = 1.0 if self.tune_lr.goal == "minimize" else -1.0
        out = {}
        for arm in self.arms():
            if arm not in values:
                raise ValueError(f"no tuning values for arm {arm!r}")
            scores = []
            for lr in self.tune_lr.grid:
                vs = list(values[arm].get(lr, []))
                if not vs:
                    raise ValueError(f"no tuning values for arm {arm!r} at lr {lr}")
                ok = all(math.isfinite(v) for v in vs)
                scores.append(sign * sum(vs) / len(vs) if ok else math.inf)
            out[arm] = self.tune_lr.grid[min(range(len(scores)), key=scores.__getitem__)]
        return out

    def cells(
        self, lrs: Mapping[str, float] | None = None, fixed: Mapping[str, Any] | None = None, shape: tuple[int, int] | None = None
    ) -> list[Cell]:
        """The verdict's runs: every arm at every seed (seed-major, so a partial run still
        pairs). With tune_lr, `lrs` (from `choose_lrs`) gives each arm's learning rate;
        `fixed` and `shape` (n_inputs, n_classes) are needed with ``param_budget`` only."""
        if self.tune_lr is not None and lrs is None:
            raise ValueError("this comparison tunes lr per arm: run tune_cells() first and pass choose_lrs(...) as lrs")
        arms = self.arms().values()
        ov = {a.name: self._resolved(a, fixed or {}, shape) for a in arms}
        if lrs is not None and self.tune_lr is not None:
            ov = {a: {**o, "lr": lrs[a]} for a, o in ov.items()}
        return [_cell(a.name, s, ov[a.name], a.measure, "main") for s in self.seed_list for a in arms]

    def check(self, fixed: Mapping[str, Any], shape: tuple[int, int] | None = None) -> None:
        """Every arm (at every lr of the grid) gives a valid TrainConfig under `fixed`; a
        ValueError naming the arm otherwise. Without `shape` a ``param_budget`` width is not
        resolved (the fixed width stands in)."""
        lrs = self.tune_lr.grid if self.tune_lr is not None else [None]
        for a in self.arms().values():
            for lr in lrs:
                own = a.overrides if shape is None else self._resolved(a, fixed, shape)
                ov = {**fixed, **own, **({"lr": lr} if lr is not None else {})}
                try:
                    TrainConfig.from_dict(ov)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"compare arm {a.name!r} with fixed {dict(fixed)}: {e}") from None

    # -- what to judge ---------------------------------------------------------------------------
    def judgements(self) -> list[Judgement]:
        """The primary claim and every ``also``: which measure each arm is judged by and the
        keyword arguments of `study.query.verdicts.compare` (besides the arms' values)."""
        common = {
            "baseline": self.baseline_name,
            "treatment": self.treatment_name,
            "confidence": self.confidence,
            "method": self.method,
            "correction": self.correction,
            "overall": self.overall,
        }
        arms = self.arms()
        others = [a.measure for a in arms.values() if a.name != self.baseline_name]
        base = arms[self.baseline_name].measure
        metric = base if set(others) == {base} else f"{', '.join(others)} against {base}"
        out = [
            Judgement(
                {a.name: a.measure for a in arms.values()},
                {**common, "claim": self.claim, "metric": metric, "expect": self.expect, "min_effect": self.min_effect},
            )
        ]
        for x in self.also:
            kw = {**common, "claim": x.claim, "metric": x.measure, "expect": x.expect, "min_effect": x.min_effect}
            out.append(Judgement(dict.fromkeys(arms, x.measure), kw))
        return out


@dataclass(frozen=True)
class Judgement:
    """One claim to judge: the measure of each arm and `verdicts.compare`'s keyword arguments."""

    measures: dict[str, str]
    kwargs: dict[str, Any]


def _cell(arm: str, seed: int, overrides: dict[str, Any], measure: str, phase: Literal["tune", "main"]) -> Cell:
    ov = {**overrides, "seed": seed}
    return Cell(arm, seed, ov, measure, phase, json.dumps(ov, sort_keys=True))


def runs(cells: Sequence[Cell]) -> dict[str, dict[str, Any]]:
    """The distinct runs behind `cells`: key -> overrides (arms measured differently on the
    same configuration share one run)."""
    return {c.key: c.overrides for c in cells}


# -- the built-in lessons ----------------------------------------------------------------------------
def lessons() -> dict[str, tuple[str, Path]]:
    """Every built-in lesson: name -> (claim, path of its spec), in the lecture's order."""
    out = {}
    for name in LESSON_NAMES:
        path = LESSON_DIR / f"{name}.yaml"
        out[name] = (str(load_lesson(name)["compare"]["claim"]), path)
    return out


def load_lesson(name: str) -> dict[str, Any]:
    """The spec of built-in lesson `name` as a plain mapping (``yaml.safe_load``)."""
    if name not in LESSON_NAMES:
        raise ValueError(f"unknown lesson {name!r}; lessons: {', '.join(LESSON_NAMES)}")
    with open(LESSON_DIR / f"{name}.yaml", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or not isinstance(data.get("compare"), dict):
        raise ValueError(f"lesson {name!r}: its spec must be a mapping with a compare section")
    return data


def parse_compare(data: Any) -> CompareSpec:
    """Validate a ``compare:`` mapping (pydantic's ValidationError names the field)."""
    return CompareSpec.model_validate(data)
