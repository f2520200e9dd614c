"""`DeclarativeSpace`: a space read from YAML, validated in full when it is built.

Sampling order: ordinary parameters (ranges, choices) in an order where every parameter
comes after those its ``when`` names; then the structural ones (``layers``, ``budget``), which
need the trial's depth, activation and maxout pieces. A parameter whose condition fails is
never suggested, so it appears in ``trial.params`` exactly when its condition holds.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any, NoReturn

from search_spaces.budget import count_params, width_for_budget
from search_spaces.checks import DEFAULTS, FIELDS, check_value
from search_spaces.errors import SpaceError, did_you_mean
from search_spaces.params import Budget, Choice, Layers, Param, Range
from search_spaces.space import BUDGET_ATTR, Space, check_target

_MISSING = object()


class DeclarativeSpace(Space):
    """`fixed` values plus `params`; `aliases` maps names of parameters removed by an
    override to their field, so conditions on them read the overriding value. `target`
    (`search_spaces.space.TARGETS`): with ``model`` or ``trainer``, names that are not
    TrainConfig fields are the user's own, passed on unchecked."""

    def __init__(
        self,
        name: str,
        description: str,
        fixed: Mapping[str, Any],
        params: list[Param],
        source: str,
        aliases: Mapping[str, str] | None = None,
        target: str = "mlp",
    ) -> None:
        super().__init__()
        self.name, self.description, self.source = name, description, source
        self.target = check_target(target)
        self.fixed = dict(fixed)
        self.params = list(params)
        self.aliases = dict(aliases or {})
        self._by_name = {p.name: p for p in self.params}
        self._validate()
        self._order = self._ordinary_order() + [p for p in self.params if p.structural]

    # -- validation -------------------------------------------------------------------------
    def _fail(self, msg: str, param: str | None = None) -> NoReturn:
        where = f"{self.source}: parameter {param!r}" if param else self.source
        raise SpaceError(f"{where}: {msg}")

    def _validate(self) -> None:
        checked = self.fields  # the user's own names are passed on unchecked
        sampled = {p.field for p in self.params if p.field in checked}
        fixed = {k: v for k, v in self.fixed.items() if k in checked}
        for alone in (True, False):  # each value alone first, then with the others
            for k, v in self.fixed.items():
                if k not in FIELDS and self.target == "mlp":
                    self._fail(
                        f"fixed value {k!r} is not a TrainConfig field{did_you_mean(str(k), FIELDS)}; allowed: {', '.join(sorted(FIELDS))} "
                        "(names of your own need `model:` or `trainer:` in the spec)"
                    )
                if k not in checked:
                    continue
                problem = check_value(k, v) if alone else check_value(k, v, fixed, sampled)
                if problem:
                    self._fail(f"fixed value {k}={v!r} is not allowed: {problem}")
        names = set(self._by_name)
        for p in self.params:
            clash = sorted(
                n for n in names if isinstance(p, Layers) and n.startswith(p.name + "_l") and n[len(p.name) + 2 :].isdigit()
            )
            if clash:
                self._fail(f"its per-layer Optuna names {p.name}_l<i> clash with parameter(s) {clash}", p.name)
            if p.field in self.fixed:
                self._fail(f"sets field {p.field!r}, which is also under `fixed:`; allowed: one of the two", p.name)
            if p.field in checked and not isinstance(p, Budget):
                field = "width" if isinstance(p, Layers) else p.field
                for v in p.values():
                    problem = check_value(field, v, fixed, sampled)
                    if problem:
                        self._fail(f"value {v!r} is not allowed for {field}: {problem}", p.name)
            self._check_when(p)
        for p in self.params:
            if isinstance(p, Budget):
                self._check_budget(p)
        self._check_exclusive()

    def _check_when(self, p: Param) -> None:
        for name, values in p.when.items():
            ref = self._by_name.get(name)
            if ref is None:
                if name in self.fixed or name in self.aliases:
                    continue
                self._fail(
                    f"condition on {name!r}, which is not a parameter of this space{did_you_mean(name, [*self._by_name, *self.fixed])}; "
                    f"allowed: one of the parameters {sorted(self._by_name)} or fixed values {sorted(self.fixed)}",
                    p.name,
                )
            if ref.structural:
                self._fail(f"condition on {name!r}, a {type(ref).__name__.lower()} width, which nothing may depend on", p.name)
            if isinstance(ref, (Choice, Range)):
                bad = [v for v in values if not ref.contains(v)]
                if bad:
                    self._fail(f"condition value(s) {bad} for {name!r} can never hold; allowed: {ref.range_text()}", p.name)

    def _check_budget(self, p: Budget) -> None:
        if isinstance(p.budget, str) and p.budget not in self.aliases and p.budget not in self.fixed:
            ref = self._by_name.get(p.budget)
            if ref is None or ref.structural:
                self._fail(
                    f"budget {p.budget!r} is not a parameter of this space; allowed: a positive integer or one of {sorted(self._by_name)}",
                    p.name,
                )
            bad = [v for v in ref.values() if not (isinstance(v, int) and not isinstance(v, bool) and v > 0)]
            if bad or not isinstance(ref, (Choice, Range)) or (isinstance(ref, Range) and ref.kind != "int"):
                self._fail(f"budget parameter {p.budget!r} must give positive integers, has {ref.range_text()}", p.name)
        depths = (
            [self.fixed["depth"]] if "depth" in self.fixed else [v for q in self.params if q.field == "depth" for v in q.values()]
        )
        if not depths:
            depths = [DEFAULTS["depth"]]
        if any(isinstance(d, int) and d < 1 for d in depths):
            self._fail(f"a parameter budget needs depth >= 1, but depth can be {min(depths)}", p.name)

    def _check_exclusive(self) -> None:
        """Two parameters setting one field need conditions on a common name with disjoint values."""
        for i, p in enumerate(self.params):
            for q in self.params[i + 1 :]:
                if p.field is None or p.field != q.field:
                    continue
                if not any(k in q.when and not set(p.when[k]) & set(q.when[k]) for k in p.when):
                    self._fail(
                        f"it and {q.name!r} both set field {p.field!r} and can be active in the same trial; "
                        "allowed: conditions on a common parameter with disjoint values",
                        p.name,
                    )

    def _ordinary_order(self) -> list[Param]:
        """Ordinary parameters, each after the ones it depends on; SpaceError on a cycle."""
        order: list[Param] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(p: Param, path: list[str]) -> None:
            if state.get(p.name) == 2:
                return
            if state.get(p.name) == 1:
                cycle = path[path.index(p.name) :] + [p.name]
                self._fail(f"conditions form a cycle {' -> '.join(cycle)}; allowed: no parameter depending on itself", p.name)
            state[p.name] = 1
            for dep in self._deps(p):
                visit(self._by_name[dep], [*path, p.name])
            state[p.name] = 2
            order.append(p)

        for p in self.params:
            if not p.structural:
                visit(p, [])
        for p in self.params:  # structural parameters' own conditions may still be cyclic through ordinary ones
            if p.structural:
                for dep in self._deps(p):
                    visit(self._by_name[dep], [p.name])
        return order

    def _deps(self, p: Param) -> list[str]:
        deps = list(p.when)
        if isinstance(p, Budget) and isinstance(p.budget, str):
            deps.append(p.budget)
        return [d for d in deps if d in self._by_name]

    # -- sampling ---------------------------------------------------------------------------
    def _lookup(self, name: str, values: dict[str, Any]) -> Any:
        if name in self._by_name:
            return values.get(name, _MISSING)
        return self.fixed.get(self.aliases.get(name, name), _MISSING)

    def _active(self, p: Param, values: dict[str, Any]) -> bool:
        for name, allowed in p.when.items():
            v = self._lookup(name, values)
            if v is _MISSING or not any(v == a and isinstance(v, bool) == isinstance(a, bool) for a in allowed):
                return False
        return True

    def _sample(self, trial: Any, n_inputs: int, n_classes: int) -> tuple[dict[str, Any], set[str]]:
        values: dict[str, Any] = {}
        fields = dict(self.fixed)
        for p in self._order:
            if not self._active(p, values):
                continue
            if isinstance(p, (Range, Choice)):
                v = p.suggest(trial)
            elif isinstance(p, Layers):
                v = p.suggest(trial, fields.get("depth", DEFAULTS["depth"]))
            else:
                assert isinstance(p, Budget)
                v = self._budget_width(p, trial, fields, values, n_inputs, n_classes)
            values[p.name] = v
            if p.field:
                fields[p.field] = v
        searched = {p.field for p in self.params if p.field and p.name in values}
        return fields, searched

    def _budget_width(self, p: Budget, trial: Any, fields: dict, values: dict, n_inputs: int, n_classes: int) -> int:
        budget = p.budget if isinstance(p.budget, int) else self._lookup(p.budget, values)
        if budget is _MISSING:
            self._fail(
                f"its budget parameter {p.budget!r} is not active in this trial; allowed: a condition that implies it", p.name
            )
        depth = fields.get("depth", DEFAULTS["depth"])
        pieces = (
            fields.get("maxout_pieces", DEFAULTS["maxout_pieces"])
            if fields.get("activation", DEFAULTS["activation"]) == "maxout"
            else 1
        )
        if depth < 1:
            self._fail(f"a parameter budget needs depth >= 1, got depth {depth}", p.name)
        width = width_for_budget(budget, depth, n_inputs, n_classes, pieces)
        n = count_params([width] * depth, n_inputs, n_classes, pieces)
        if abs(n - budget) > p.tolerance * budget:
            self._fail(
                f"no width gives {budget} parameters within {p.tolerance:.0%} at depth {depth} "
                f"({n_inputs} inputs, {n_classes} classes, {pieces} piece(s)); closest: width {width} with {n}",
                p.name,
            )
        trial.set_user_attr(BUDGET_ATTR, budget)
        return width

    # -- overrides and listing ----------------------------------------------------------------
    def _with_fixed(self, overrides: dict[str, Any]) -> DeclarativeSpace:
        removed = [p for p in self.params if p.field in overrides]
        aliases = {**self.aliases, **{p.name: p.field for p in removed if p.field and p.name != p.field}}
        kept = [p for p in self.params if p not in removed]
        source = f"{self.source} (with fixed overrides {overrides})"
        return DeclarativeSpace(self.name, self.description, {**self.fixed, **overrides}, kept, source, aliases, self.target)

    def describe(self) -> str:
        lines = [f"{self.name}  ({self.source})", ""]
        lines += textwrap.wrap(self.description, 88, break_on_hyphens=False) + ["", "fixed:"]
        lines += [f"  {k} = {v!r}" for k, v in sorted(self.fixed.items())] or ["  (none)"]
        lines += ["", "parameters:"]
        lines += [f"  {p.describe()}" for p in self.params] or ["  (none)"]
        return "\n".join(lines)
