"""`FunctionSpace`: the Python escape hatch, ``module:function`` taking an Optuna trial and
returning a dict of `TrainConfig` fields (and, for a user's model or trainer function,
names of the user's own)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from search_spaces.checks import FIELDS, check_value
from search_spaces.errors import SpaceError
from search_spaces.space import Space, check_target


class FunctionSpace(Space):
    """Calls ``fn(trial)`` per trial; `fixed` (from overrides) win over what it returns."""

    def __init__(
        self, fn: Callable[[Any], dict[str, Any]], source: str, fixed: dict[str, Any] | None = None, target: str = "mlp"
    ) -> None:
        super().__init__()
        self.fn = fn
        self.source = source
        self.target = check_target(target)
        self.name = source
        doc = inspect.getdoc(fn) or ""
        self.description = " ".join(doc.split("\n\n")[0].split()) or f"Python search space {source}."
        self.fixed = dict(fixed or {})
        for k, v in self.fixed.items():
            if k not in self.fields:
                continue  # the user's own name
            problem = check_value(k, v)
            if problem:
                raise SpaceError(f"{source}: fixed value {k}={v!r} is not allowed: {problem}")

    def _with_fixed(self, overrides: dict[str, Any]) -> FunctionSpace:
        return FunctionSpace(self.fn, self.source, {**self.fixed, **overrides}, self.target)

    def _sample(self, trial: Any, n_inputs: int, n_classes: int) -> dict[str, Any]:
        out = self.fn(trial)
        if not isinstance(out, dict):
            raise SpaceError(f"{self.source}: must return a dict of TrainConfig fields, returned {type(out).__name__}")
        unknown = sorted(set(out) - FIELDS) if self.target == "mlp" else []
        if unknown:
            raise SpaceError(
                f"{self.source}: returned unknown field(s) {unknown}; allowed: {', '.join(sorted(FIELDS))} "
                "(names of your own need `model:` or `trainer:` in the spec)"
            )
        return {**out, **self.fixed}

    def describe(self) -> str:
        fixed = "".join(f"\n  {k} = {v!r}" for k, v in sorted(self.fixed.items()))
        return f"{self.name}  (Python function)\n\n{self.description}" + (f"\n\nfixed:{fixed}" if fixed else "")


def load_function(spec: str, target: str = "mlp") -> FunctionSpace:
    """``"package.module:function"`` -> a FunctionSpace (`target` as for `search_spaces.load`)."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SpaceError(f"{spec}: cannot import module {module_name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpaceError(f"{spec}: module {module_name!r} has no function {attr!r}; allowed: a function taking an Optuna trial")
    return FunctionSpace(fn, spec, target=target)
