"""`FunctionSpace`: the Python escape hatch, ``module:function`` taking an Optuna trial and
returning a dict of `TrainConfig` fields (and, for a user's model or trainer function,
names of the user's own)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
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

    def _sample(self, trial: Any, n_inputs: int, n_classes: int) -> tuple[dict[str, Any], set[str]]:
        """What the function returns, `fixed` winning. A returned field counts as searched
        when the function suggested it under its own name or returned exactly one of the
        trial's suggested values for it (``{"lr": trial.suggest_float("lr_adam", ...)}``)."""
        out = self.fn(trial)
        if not isinstance(out, dict):
            raise SpaceError(f"{self.source}: must return a dict of TrainConfig fields, returned {type(out).__name__}")
        unknown = sorted(set(out) - FIELDS) if self.target == "mlp" else []
        if unknown:
            raise SpaceError(
                f"{self.source}: returned unknown field(s) {unknown}; allowed: {', '.join(sorted(FIELDS))} "
                "(names of your own need `model:` or `trainer:` in the spec)"
            )
        params = dict(getattr(trial, "params", {}))
        searched = {
            k
            for k, v in out.items()
            if k not in self.fixed and (k in params or any(v == p and type(v) is type(p) for p in params.values()))
        }
        return {**out, **self.fixed}, searched

    def describe(self) -> str:
        fixed = "".join(f"\n  {k} = {v!r}" for k, v in sorted(self.fixed.items()))
        return f"{self.name}  (Python function)\n\n{self.description}" + (f"\n\nfixed:{fixed}" if fixed else "")


def load_function(spec: str, base_dir: str | os.PathLike[str] | None = None, target: str = "mlp") -> FunctionSpace:
    """``"package.module:function"`` -> a FunctionSpace (`target` as for `search_spaces.load`).
    A module (or package) in `base_dir` wins over one elsewhere on ``sys.path``; `base_dir` is
    on the path only while importing."""
    module_name, _, attr = spec.partition(":")
    top = module_name.split(".")[0]
    local = base_dir is not None and (
        os.path.isfile(os.path.join(base_dir, top + ".py")) or os.path.isfile(os.path.join(base_dir, top, "__init__.py"))
    )
    try:
        if local:
            assert base_dir is not None
            sys.path.insert(0, os.fspath(base_dir))
            try:
                module = importlib.import_module(module_name)
            finally:
                sys.path.remove(os.fspath(base_dir))
        else:
            module = importlib.import_module(module_name)
    except ImportError as e:
        where = f" (looked in {os.fspath(base_dir)!r}, then on sys.path)" if base_dir is not None else ""
        raise SpaceError(f"{spec}: cannot import module {module_name!r}{where}: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module failed while being imported
        raise SpaceError(f"{spec}: importing module {module_name!r} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpaceError(f"{spec}: module {module_name!r} has no function {attr!r}; allowed: a function taking an Optuna trial")
    return FunctionSpace(fn, spec, target=target)
