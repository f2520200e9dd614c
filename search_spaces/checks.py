"""Checking single values against what `TrainConfig` allows, before anything is sampled.

A value is checked twice: alone (other fields at permissive values, so ``min_lr = 1e-4``
is judged without the default ``lr``), then together with the space's fixed values, unless
the field it must agree with (its partner, e.g. ``epochs`` for ``warmup_epochs``) is
itself sampled, in which case that combination is only known per trial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from trainers.config import TrainConfig, field_names

FIELDS = frozenset(field_names())
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != "tags"}

#: Fields whose validity depends on another field.
PARTNERS: dict[str, frozenset[str]] = {
    "lr": frozenset({"min_lr", "weight_decay"}),
    "min_lr": frozenset({"lr"}),
    "weight_decay": frozenset({"lr"}),
    "epochs": frozenset({"warmup_epochs"}),
    "warmup_epochs": frozenset({"epochs"}),
    "depth": frozenset({"width"}),
    "width": frozenset({"depth"}),
}


def _permissive(field: str, value: Any) -> dict[str, Any]:
    """`value` for `field`, plus partner values under which only `field` itself can fail."""
    kw: dict[str, Any] = {field: value}
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if field == "min_lr" and num:
        kw["lr"] = abs(value) * 2 + 1.0
    elif field == "warmup_epochs":
        kw["epochs"] = 100_000
    elif field == "weight_decay":
        kw["lr"] = 1e-300
    elif field == "width" and isinstance(value, (list, tuple)):
        kw["depth"] = len(value)
    return kw


def check_value(field: str, value: Any, fixed: Mapping[str, Any] | None = None, sampled: Collection[str] = ()) -> str | None:
    """None when `value` is allowed for `field`, else TrainConfig's message saying why.

    `fixed` are the space's fixed values (None: judge `value` alone), `sampled` the fields
    some parameter sets."""
    try:
        TrainConfig(**_permissive(field, value))
    except (ValueError, TypeError) as e:
        return str(e)
    if fixed is None:
        return None
    sampled = set(sampled)
    if PARTNERS.get(field, frozenset()) & sampled:
        return None
    # fixed values that must agree with some other sampled field are only judged per trial
    context = {k: v for k, v in fixed.items() if k != field and not PARTNERS.get(k, frozenset()) & (sampled - {field})}
    try:
        TrainConfig(**context)
    except (ValueError, TypeError):
        return None  # the fixed values disagree among themselves: reported when each of them is checked
    try:
        TrainConfig(**context, **{field: value})
    except (ValueError, TypeError) as e:
        return f"{e} (with the fixed values {context})"
    return None
