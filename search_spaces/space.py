"""`Space`: what every search space offers, whether declared in YAML or written in Python.

``space.suggest(trial)`` draws one configuration from an Optuna trial and returns it as a
validated `TrainConfig`; it also records on the trial, as user attributes, the network's
parameter count (``n_params``), the `TrainConfig` fields the search chose in this trial
(``searched``: a sorted list; every other field was fixed by the space, the spec or the
default) and, for a width derived from a parameter budget, the budget
(``n_params_budget``). ``overrides`` (a study spec's ``fixed:``) win over the space: an
overridden field is no longer sampled.

What a space configures is its `target` (`TARGETS`): the built-in MLP (every name is a
`TrainConfig` field), a user's ``model`` (TrainConfig fields configure training; any other
name is a hyperparameter of the user's model factory) or a user's ``trainer`` function (every
name is the user's; nothing is checked against TrainConfig). ``space.draw(trial)`` returns
both parts (`Draw`); for the user's code ``searched`` lists the user's names the search chose
too, and ``n_params`` (the MLP's count) is not recorded.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from search_spaces.budget import count_params
from search_spaces.checks import FIELDS
from search_spaces.errors import SpaceError, did_you_mean
from trainers.config import TrainConfig

#: Trial user attributes a space records (the study's record schema reads them by these names).
N_PARAMS_ATTR = "n_params"
SEARCHED_ATTR = "searched"
BUDGET_ATTR = "n_params_budget"

#: Inputs and classes assumed when `suggest` is not told the dataset's (those of ``digits``).
DEFAULT_N_INPUTS = 64
DEFAULT_N_CLASSES = 10
#: What a space configures (see the module docstring).
TARGETS = ("mlp", "model", "trainer")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


def train_fields(target: str) -> frozenset[str]:
    """The names a space for `target` checks as TrainConfig fields (none for a trainer)."""
    return frozenset() if check_target(target) == "trainer" else FIELDS


@dataclass(frozen=True)
class Draw:
    """One trial's values: `config` (the TrainConfig; None for a trainer function) and
    `params` (a model's own hyperparameters, the factory's keyword arguments; for a trainer
    every sampled and fixed value; empty for the MLP)."""

    config: TrainConfig | None
    params: dict[str, Any] = field(default_factory=dict)


class Space(ABC):
    """A search space: `name`, a one-paragraph `description` of the question it answers,
    and `source` (the file or ``module:function`` it came from, named in every error)."""

    name: str
    description: str
    source: str
    target: str = "mlp"

    def __init__(self) -> None:
        self._with: dict[str, Space] = {}

    @property
    def fields(self) -> frozenset[str]:
        """The names this space treats (and checks) as TrainConfig fields."""
        return train_fields(self.target)

    def suggest(
        self,
        trial: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        n_inputs: int | None = None,
        n_classes: int | None = None,
    ) -> TrainConfig:
        """One `TrainConfig` drawn from `trial`, with `overrides` applied (they win).

        `n_inputs`/`n_classes` describe the dataset (default: digits' 64 and 10); a width
        derived from a parameter budget and the recorded ``n_params`` depend on them. A space
        with parameters of the user's own (a ``model`` or ``trainer`` target) needs `draw`."""
        drawn = self.draw(trial, overrides=overrides, n_inputs=n_inputs, n_classes=n_classes)
        if drawn.config is None or drawn.params:
            raise SpaceError(
                f"{self.source}: this space sets parameters of a user's {self.target} "
                f"({sorted(drawn.params)}); use draw() to get them with the TrainConfig"
            )
        return drawn.config

    def draw(
        self,
        trial: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        n_inputs: int | None = None,
        n_classes: int | None = None,
    ) -> Draw:
        """One trial's values (`Draw`), with `overrides` applied (they win): for the MLP and a
        user's model a validated `TrainConfig` of the TrainConfig fields (plus, for a model,
        the other names as its factory's parameters); for a trainer every value, unchecked."""
        space = self._overridden(overrides) if overrides else self
        n_in = _positive("n_inputs", DEFAULT_N_INPUTS if n_inputs is None else n_inputs)
        n_cls = _positive("n_classes", DEFAULT_N_CLASSES if n_classes is None else n_classes)
        values, searched = space._sample(trial, n_in, n_cls)
        if self.target == "trainer":
            trial.set_user_attr(SEARCHED_ATTR, sorted(searched))
            return Draw(None, dict(values))
        own = {k: v for k, v in values.items() if k not in FIELDS}
        fields = {k: v for k, v in values.items() if k in FIELDS}
        try:
            config = TrainConfig(**fields)
        except (ValueError, TypeError) as e:
            raise SpaceError(
                f"{space.source}: trial {getattr(trial, 'number', '?')}: {fields} is no valid TrainConfig: {e}"
            ) from e
        if self.target == "mlp":
            pieces = config.maxout_pieces if config.activation == "maxout" else 1
            trial.set_user_attr(N_PARAMS_ATTR, count_params(config.widths, n_in, n_cls, pieces))
        trial.set_user_attr(SEARCHED_ATTR, sorted(searched))
        return Draw(config, own)

    def with_fixed(self, overrides: Mapping[str, Any]) -> Space:
        """This space with `overrides` as fixed values (checked now; unknown fields are errors)."""
        overrides = dict(overrides)
        unknown = sorted(set(overrides) - FIELDS) if self.target == "mlp" else []
        if unknown:
            hint = did_you_mean(str(unknown[0]), FIELDS) if len(unknown) == 1 else ""
            raise SpaceError(
                f"{self.source}: override(s) {unknown} are not TrainConfig fields{hint}; allowed: {', '.join(sorted(FIELDS))} "
                "(names of your own need `model:` or `trainer:` in the spec)"
            )
        return self._with_fixed(overrides)

    def _overridden(self, overrides: Mapping[str, Any]) -> Space:
        key = json.dumps(sorted(overrides.items()), default=repr)
        if key not in self._with:
            self._with[key] = self.with_fixed(overrides)
        return self._with[key]

    @abstractmethod
    def _with_fixed(self, overrides: dict[str, Any]) -> Space: ...

    @abstractmethod
    def _sample(self, trial: Any, n_inputs: int, n_classes: int) -> tuple[dict[str, Any], set[str]]:
        """TrainConfig keyword arguments for one trial, and the fields among them that the
        search chose (not fixed)."""

    @abstractmethod
    def describe(self) -> str:
        """A human-readable listing of the space (``study space show NAME``)."""


def _positive(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise SpaceError(f"{name} must be an integer >= 1, got {v!r}")
    return v
