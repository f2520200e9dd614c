"""Parameters of a declarative space: what each YAML entry means and how it is sampled.

Every entry under ``parameters:`` is keyed by its Optuna name and holds exactly one of:

- ``float: [low, high]`` / ``int: [low, high]``, with optional ``log: true`` or ``step: s``
  (``trial.suggest_float`` / ``trial.suggest_int``);
- ``choices: [a, b, ...]`` (``trial.suggest_categorical``);
- ``layers: [low, high]``: one width per hidden layer, Optuna names ``<name>_l0`` ...
  ``<name>_l{depth-1}``, so layer ``i`` is drawn only when ``depth > i``; ``shape: funnel``
  sorts the drawn widths widest first; ``log`` and ``step`` as for ``int``;
- ``budget: N`` (or the name of a parameter giving N): the uniform width whose parameter
  count at the trial's depth is closest to N (see `search_spaces.budget`); derived, so not an
  Optuna parameter. ``tolerance`` (default 0.05) bounds ``|n_params - N| / N``.

Common keys: ``field`` (the `TrainConfig` field set; defaults to the name, so ``lr_adam``
with ``field: lr``; in a space for a user's model or trainer function any other name is a
parameter of the user's own), ``aux: true`` (a helper parameter other parameters can depend on, set
on no field) and ``when: {name: [values]}`` (sampled only if every named parameter is
active and takes one of the values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from search_spaces.errors import SpaceError, did_you_mean

KINDS = ("float", "int", "choices", "layers", "budget")
COMMON_KEYS = frozenset({"field", "when", "aux"})
KIND_KEYS = {
    "float": frozenset({"log", "step"}),
    "int": frozenset({"log", "step"}),
    "choices": frozenset(),
    "layers": frozenset({"log", "step", "shape"}),
    "budget": frozenset({"tolerance"}),
}
SHAPES = ("free", "funnel")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Param:
    """One entry of ``parameters:``. `field` is None for an ``aux`` parameter."""

    name: str
    field: str | None
    when: dict[str, tuple[Any, ...]] = dc_field(default_factory=dict)

    #: Evaluated after the ordinary parameters (needs the trial's depth); nothing may depend on it.
    structural = False

    def values(self) -> list[Any]:
        """Values to check against TrainConfig before anything is sampled."""
        return []

    def optuna_names(self) -> list[str]:
        return [self.name]

    def range_text(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        target = "(aux)" if self.field is None else "" if self.field == self.name else f"-> {self.field}"
        cond = ""
        if self.when:
            cond = "  when " + " and ".join(f"{k} in {{{', '.join(_fmt(v) for v in vs)}}}" for k, vs in self.when.items())
        return f"{self.name} {target}".rstrip().ljust(24) + " " + self.range_text() + cond


@dataclass(frozen=True)
class Range(Param):
    kind: str = "float"
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None

    def values(self) -> list[Any]:
        return [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, v: Any) -> bool:
        return (_is_int(v) if self.kind == "int" else _is_num(v)) and self.low <= v <= self.high

    def range_text(self) -> str:
        extra = " log" if self.log else f" step {_fmt(self.step)}" if self.step else ""
        return f"{self.kind} [{_fmt(self.low)}, {_fmt(self.high)}]{extra}"


@dataclass(frozen=True)
class Choice(Param):
    choices: tuple[Any, ...] = ()

    def values(self) -> list[Any]:
        return list(self.choices)

    def suggest(self, trial: Any) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, v: Any) -> bool:
        return any(v == c and type(v) is type(c) or (_is_num(v) and _is_num(c) and v == c) for c in self.choices)

    def range_text(self) -> str:
        return "choices " + ", ".join(_fmt(c) for c in self.choices)


@dataclass(frozen=True)
class Layers(Param):
    low: int = 1
    high: int = 1
    log: bool = False
    step: int | None = None
    shape: str = "free"
    structural = True

    def values(self) -> list[Any]:
        return [self.low, self.high]

    def optuna_names(self) -> list[str]:
        return [f"{self.name}_l<i>"]

    def suggest(self, trial: Any, depth: int) -> tuple[int, ...]:
        ws = [
            trial.suggest_int(f"{self.name}_l{i}", self.low, self.high, step=self.step or 1, log=self.log) for i in range(depth)
        ]
        return tuple(sorted(ws, reverse=True) if self.shape == "funnel" else ws)

    def range_text(self) -> str:
        extra = " log" if self.log else f" step {self.step}" if self.step else ""
        return f"layers [{self.low}, {self.high}]{extra} per hidden layer ({self.shape}; Optuna names {self.name}_l0, {self.name}_l1, ...)"


@dataclass(frozen=True)
class Budget(Param):
    budget: int | str = 0
    tolerance: float = 0.05
    structural = True

    def optuna_names(self) -> list[str]:
        return []

    def range_text(self) -> str:
        return f"width spending a budget of {_fmt(self.budget)} parameters (within {self.tolerance:.0%})"


def parse_param(name: Any, raw: Any, src: str, fields: frozenset[str], own: bool = False) -> Param:
    """One YAML entry -> a `Param`; SpaceError naming `src`, the parameter and what is allowed.
    With `own`, a field that is not one of `fields` is a parameter of the user's own."""

    def fail(msg: str) -> None:
        raise SpaceError(f"{src}: parameter {name!r}: {msg}")

    if not isinstance(name, str) or not name.isidentifier():
        raise SpaceError(f"{src}: parameter name {name!r} must be an identifier (letters, digits, underscores)")
    if not isinstance(raw, dict):
        fail(f"must be a mapping with one of {', '.join(KINDS)}, got {raw!r}")
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        options = frozenset().union(*KIND_KEYS.values())
        others = [str(k) for k in raw if k not in COMMON_KEYS and k not in KINDS and k not in options]
        hint = did_you_mean(others[0], KINDS) if not kinds and len(others) == 1 else ""
        fail(f"needs exactly one of {', '.join(KINDS)}, got {kinds or sorted(raw)}{hint}")
    kind = kinds[0]
    unknown = sorted(set(raw) - COMMON_KEYS - KIND_KEYS[kind] - {kind})
    if unknown:
        allowed = sorted(COMMON_KEYS | KIND_KEYS[kind] | {kind})
        hint = did_you_mean(str(unknown[0]), allowed) if len(unknown) == 1 else ""
        fail(f"unknown key(s) {unknown}{hint}; allowed with {kind}: {allowed}")
    aux = raw.get("aux", False)
    if not isinstance(aux, bool):
        fail(f"aux must be true or false, got {aux!r}")
    target: str | None = None
    if aux:
        if "field" in raw:
            fail("an aux parameter sets no TrainConfig field; remove `field`")
        if kind in ("layers", "budget"):
            fail(f"{kind} sets the width field and cannot be aux")
    else:
        target = raw.get("field", name)
        if own and not (isinstance(target, str) and target.isidentifier()):
            fail(f"field must be an identifier (a TrainConfig field or a name of your own), got {target!r}")
        if target not in fields and not own:
            what = f"field {target!r}" if "field" in raw else "name"
            fail(
                f"{what} is not a TrainConfig field{did_you_mean(str(target), fields)}; allowed fields: {', '.join(sorted(fields))} "
                "(or `field: <one of them>`, or `aux: true` for a helper parameter)"
            )
    when = _parse_when(raw.get("when", {}), fail)
    common: dict[str, Any] = {"name": name, "field": target, "when": when}
    if kind in ("float", "int"):
        low, high, log, step = _parse_range(raw, kind, fail)
        return Range(**common, kind=kind, low=low, high=high, log=log, step=step)
    if kind == "choices":
        return Choice(**common, choices=_parse_choices(raw["choices"], fail))
    if target != "width":
        fail(f"{kind} sets the width field; its field must be 'width', got {target!r}")
    if kind == "layers":
        low, high, log, step = _parse_range({**raw, "int": raw["layers"]}, "int", fail)
        shape = raw.get("shape", "free")
        if shape not in SHAPES:
            fail(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
        return Layers(**common, low=int(low), high=int(high), log=log, step=None if step is None else int(step), shape=shape)
    budget = raw["budget"]
    if not (_is_int(budget) and budget > 0) and not (isinstance(budget, str) and budget.isidentifier()):
        fail(f"budget must be a positive integer or the name of a parameter giving one, got {budget!r}")
    tol = raw.get("tolerance", 0.05)
    if not _is_num(tol) or not 0 < tol < 1:
        fail(f"tolerance must be a number in (0, 1), got {tol!r}")
    return Budget(**common, budget=budget, tolerance=float(tol))


def _parse_when(raw: Any, fail: Any) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, dict):
        fail(f"when must be a mapping {{parameter: value or [values]}}, got {raw!r}")
    out = {}
    for k, v in raw.items():
        vs = tuple(v) if isinstance(v, list) else (v,)
        if not isinstance(k, str) or not vs:
            fail(f"when: {k!r}: needs a parameter name and at least one value, got {v!r}")
        out[k] = vs
    return out


def _parse_range(raw: dict, kind: str, fail: Any) -> tuple[Any, Any, bool, Any]:
    bounds = raw[kind]
    check = _is_int if kind == "int" else _is_num
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(check(b) for b in bounds):
        fail(f"{kind} must be [low, high] with two {'integers' if kind == 'int' else 'finite numbers'}, got {bounds!r}")
    low, high = bounds if kind == "int" else (float(bounds[0]), float(bounds[1]))
    if low == high:
        fail(f"empty range [{_fmt(low)}, {_fmt(high)}]; allowed: low < high (use `fixed:` for a single value)")
    if low > high:
        fail(f"inverted range [{_fmt(low)}, {_fmt(high)}]; allowed: low < high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        fail(f"log must be true or false, got {log!r}")
    if log and low <= 0:
        fail(f"log range [{_fmt(low)}, {_fmt(high)}] includes 0 or negatives; allowed on a log scale: 0 < low < high")
    step = raw.get("step")
    if step is not None:
        if log:
            fail("step and log cannot be combined; allowed: one of them")
        if not check(step) or step <= 0:
            fail(f"step must be a {'positive integer' if kind == 'int' else 'positive number'}, got {step!r}")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            fail(
                f"step {_fmt(step)} does not divide the range [{_fmt(low)}, {_fmt(high)}]; allowed: (high - low) a multiple of step"
            )
    return low, high, log, step


def _parse_choices(raw: Any, fail: Any) -> tuple[Any, ...]:
    if not isinstance(raw, list) or not raw:
        fail(f"choices must be a non-empty list, got {raw!r}")
    for c in raw:
        if not (c is None or isinstance(c, (bool, int, float, str))):
            fail(
                f"choice {c!r} is not allowed: choices must be null, true/false, numbers or strings (per-layer widths: `layers: [low, high]`)"
            )
    if len({(type(c), c) for c in raw}) != len(raw):
        fail(f"choices {raw!r} repeat a value; allowed: distinct values")
    return tuple(raw)
