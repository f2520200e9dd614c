"""Every check that bad input can fail, before anything is written anywhere.

`prepare` checks the spec's storage URL and tracking URI, loads its search space and
dataset, builds its sampler and pruner, and samples the space in a throwaway in-memory study
(the fixed values must give valid configurations, every enqueued configuration must be one
of the space's, a grid must cover it). The user's own code is checked the same way
(`study.run.usercheck`): a model factory is built once, a trainer function runs one dry
epoch. Only then does `study.run.launch.run_study` create the Optuna study, the MLflow
experiment and start Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from search_spaces import Draw, Space
from study.record import CodeRecord
from study.run.design import check_design
from study.run.samplers import make_pruner, make_sampler
from study.run.usercheck import check_code
from study.spec import SpecError, StudySpec
from study.stores.uris import check_storage, check_tracking, from_env
from trainers import Dataset


@dataclass(frozen=True)
class Prepared:
    """A checked spec with its loaded space and dataset; nothing written yet. `code`: the
    user's model or trainer code as checked (None for the built-in MLP)."""

    spec: StudySpec
    storage_url: str
    space: Space
    data: Dataset
    code: CodeRecord | None = None


def prepare(spec: StudySpec) -> Prepared:
    """Every check that bad input can fail, before anything is created. Raises SpecError."""
    url = _checked(spec, "storage", lambda: check_storage(spec.storage))
    _checked(spec, "tracking_uri", lambda: check_tracking(spec.tracking_uri))
    space = load_space(spec.space, spec.base_dir, spec.target)
    data = spec.dataset.load(spec.base_dir)
    make_sampler(spec)
    make_pruner(spec, space)
    if spec.compare is not None:  # a comparison samples no space: its arms must be valid configurations
        check_design(spec, data, url)
        return Prepared(spec, url, space, data)
    drawn = _dry_run(spec, space, data)
    code = check_code(spec, space, data, drawn) if spec.code is not None else None
    return Prepared(spec, url, space, data, code)


def _checked(spec: StudySpec, field: str, check: Callable[[], str]) -> str:
    """`check()`; its SpecError says so when the field's value came from the environment."""
    try:
        return check()
    except SpecError as e:
        var = spec.env_var(field)
        if var is not None:
            raise from_env(var, e) from None
        raise


def load_space(name: str | dict[str, Any], base_dir: str | None = None, target: str = "mlp") -> Space:
    """The search space `name` (built-in, YAML file or module:function; relative ones looked
    for in `base_dir` first, the spec file's folder; or a mapping written in the spec) for
    `target` (``mlp``, ``model``, ``trainer``); SpecError if bad."""
    import search_spaces

    try:
        if isinstance(name, dict):
            return search_spaces.parse(name, "field space (inline)", target, inline=True)
        return search_spaces.load(name, base_dir, target)
    except search_spaces.SpaceError as e:
        raise SpecError(f"field space: {e}") from None
    except (ImportError, AttributeError, OSError, ValueError) as e:
        raise SpecError(
            f"field space: cannot load {name!r} ({e}); built-in spaces: {', '.join(search_spaces.builtin())}"
        ) from None


def _dry_run(spec: StudySpec, space: Space, data: Dataset) -> Draw:
    """Sample the space in a throwaway in-memory study: `fixed` must give valid configs,
    every enqueued configuration must be one of the space's, the grid must cover it.
    Returns the first valid draw (the user's code is checked with it)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    fixed, n_inputs, n_classes = dict(spec.fixed), data.n_features, data.n_classes
    try:
        space.with_fixed(dict(spec.fixed))
    except ValueError as e:
        raise SpecError(f"field fixed: {e}") from None
    for i, params in enumerate(spec.enqueue):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.enqueue_trial(params)
        trial = study.ask()
        try:
            space.draw(trial, overrides=fixed, n_inputs=n_inputs, n_classes=n_classes)
        except ValueError as e:
            raise SpecError(f"field enqueue[{i}]: {e}") from None
        unused = sorted(set(params) - set(trial.params))
        if unused:
            raise SpecError(
                f"field enqueue[{i}]: parameter(s) {unused} are not drawn by space {spec.space!r} for this configuration (it drew {sorted(trial.params)})"
            )
    sampler = make_sampler(spec) if spec.sampler.name == "grid" else optuna.samplers.RandomSampler(seed=spec.seed)
    study = optuna.create_study(sampler=sampler, directions=spec.directions)
    errors = []
    for _ in range(5):
        try:
            return space.draw(study.ask(), overrides=fixed, n_inputs=n_inputs, n_classes=n_classes)
        except ValueError as e:
            errors.append(str(e))
            if spec.sampler.name == "grid":
                raise SpecError(f"field sampler.grid: {e}") from None
    raise SpecError(f"field fixed: space {spec.space!r} with fixed {spec.fixed} gives no valid configuration: {errors[0]}")
