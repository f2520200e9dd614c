"""The launch check of the user's own code: bad code is bad input (exit 2, nothing written).

A model factory (``model:``) is loaded, its signature checked against every name of the
user's own that the space or ``fixed:`` can set, and the model built once on the CPU for the
dataset with one draw of the space (one forward pass of a zero batch); an objective that is
a named per-tensor norm (``grad_norm.<parameter>``) must name one of the module's parameters.
A trainer function (``trainer:``) is loaded and runs one dry epoch with one draw: it must
report every objective's metric. Each problem is one `SpecError` (``field model: ...`` /
``field trainer: ...``) naming the file, the function and, for an exception the user's code
raised, its type, message and line.
"""

from __future__ import annotations

import os

from search_spaces import Draw, Space
from study.record import CodeRecord
from study.run.samplers import trial_seed
from study.spec import SpecError, StudySpec
from trainers import Dataset
from trainers.config import MLP_FIELDS, field_names
from trainers.user_code import UserCode, UserCodeError, is_file_ref, load, split_ref

FIELDS = frozenset(field_names())
NAMED_NORMS = ("grad_norm.", "weight_norm.")


def check_code(spec: StudySpec, space: Space, data: Dataset, drawn: Draw) -> CodeRecord:
    """Check the spec's model or trainer code (see the module); returns what it is."""
    if spec.code is None:
        raise ValueError("the spec names no model or trainer")
    role, ref = spec.code
    base = _base(spec, ref, role)
    try:
        code = load(ref, base, role=role)
        if role == "model":
            _check_model(spec, space, data, drawn, code, base)
        else:
            _check_trainer(spec, data, drawn, code, base)
    except UserCodeError as e:
        raise SpecError(f"field {role}: {str(e).removeprefix(role + ' ')}") from None
    return CodeRecord(role, ref, code.path, code.sha256)


def _base(spec: StudySpec, ref: str, role: str) -> str | None:
    """Where a relative file reference resolves: the spec's folder, else the working folder
    when only it has the file (as for the spec's other paths)."""
    target, _ = split_ref(ref, role)
    base = spec.base_dir
    if base is None or not is_file_ref(target) or os.path.isabs(target) or os.path.exists(os.path.join(base, target)):
        return base
    return os.getcwd() if os.path.exists(target) else base


def set_names(space: Space, spec: StudySpec, drawn: Draw) -> set[str]:
    """Every name the space (with the spec's ``fixed:``) can set, as far as it can be known
    before sampling: a YAML space's parameters and fixed values; a Python space's one draw."""
    overridden = space.with_fixed(dict(spec.fixed))
    names = set(getattr(overridden, "fixed", {})) | {p.field for p in getattr(overridden, "params", []) if p.field}
    return names | set(drawn.params)


def _check_model(spec: StudySpec, space: Space, data: Dataset, drawn: Draw, code: UserCode, base: str | None) -> None:
    from trainers.torch_module import check_config
    from trainers.user_model import check_model, check_params, takes_dropout

    names = set_names(space, spec, drawn)
    mlp = sorted(names & set(MLP_FIELDS))
    if mlp:
        raise SpecError(
            f"field space: {mlp} set for a user model, but these TrainConfig fields describe the built-in MLP only; "
            f"a model's architecture is its factory's parameters (model {code.where})"
        )
    if drawn.config is None:  # pragma: no cover - a model space always builds a TrainConfig
        raise SpecError("field space: no TrainConfig drawn for the model")
    try:
        check_config(drawn.config)
    except ValueError as e:
        raise SpecError(f"field space: {e}") from None
    own = sorted(names - FIELDS)
    check_params(code.func, dict.fromkeys(own), code.where, dropout=takes_dropout(code.func))
    info = check_model(code.ref, data.n_features, data.n_classes, drawn.params, base_dir=base, dropout=drawn.config.dropout)
    for i, obj in enumerate(spec.all_objectives):
        if obj.metric.startswith(NAMED_NORMS) and obj.metric.split(".", 1)[1] not in info.param_names:
            field = "objective.metric" if not spec.is_multi_objective else f"objectives.{i}.metric"
            raise SpecError(
                f"field {field}: {obj.metric!r} names no parameter of model {code.where}; its parameters are "
                f"{list(info.param_names)} (e.g. {NAMED_NORMS[0]}{info.param_names[0]})"
            )


def _check_trainer(spec: StudySpec, data: Dataset, drawn: Draw, code: UserCode, base: str | None) -> None:
    from trainers.user_trainer import check_trial

    params = dict(drawn.params)
    params.setdefault("seed", trial_seed(spec.seed, 0))
    metrics = check_trial(code.ref, params, data, objective=spec.all_objectives[0].metric, base_dir=base)
    missing = [o.metric for o in spec.all_objectives if o.metric not in metrics]
    if missing:
        raise SpecError(
            f"field objectives: trainer {code.where}: its first epoch reported no {missing}; it reported {sorted(metrics)}"
        )
