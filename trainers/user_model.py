"""A user's model factory: ``build(n_inputs, n_classes, **params) -> torch.nn.Module``.

`build_model` calls the factory with the trial's model hyperparameters and checks what it
gets back: an ``nn.Module`` with trainable parameters that maps a float32 batch
``[B, n_inputs]`` to logits ``[B, n_classes]``. `check_model` is the same check run once at
launch from a reference (``file.py:build`` or ``package.module:build``).

Dropout: when the factory names a ``dropout`` parameter it receives the config's
``dropout``; otherwise ``p`` of every dropout layer in the module (``nn.Dropout``,
``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout``) is set to it, replacing the
``p`` the module was built with (0, the default, turns them off). ``dropout > 0`` for a
module with neither is an error: the option would do nothing.

Every problem is a `UserCodeError` naming the file, the function and, where it applies,
the parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainers.user_code import UserCodeError, load, raised

#: The factory's two positional parameters; every other name is a model hyperparameter.
POSITIONAL = ("n_inputs", "n_classes")
DROPOUT_LAYERS = (nn.modules.dropout._DropoutNd,)


@dataclass(frozen=True)
class ModelInfo:
    """What the launch check learned: parameter count, parameter names, source hash."""

    where: str
    n_params: int
    param_names: tuple[str, ...]
    sha256: str | None
    takes_dropout: bool
    n_dropout_layers: int


def resolve(model: Callable[..., Any] | str, base_dir: str | None = None) -> tuple[Callable[..., Any], str, str | None]:
    """(factory, how messages name it, source sha256) from a callable or a reference."""
    if isinstance(model, str):
        code = load(model, base_dir, role="model")
        return code.func, code.where, code.sha256
    if not callable(model):
        raise UserCodeError(f"model must be a factory function or FILE.py:build / package.module:build, got {model!r}")
    return model, f"{getattr(model, '__module__', '?')}:{getattr(model, '__qualname__', repr(model))}", None


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return None


def takes_dropout(factory: Callable[..., Any]) -> bool:
    """Whether the factory names a ``dropout`` parameter (``**kwargs`` alone does not count)."""
    sig = _signature(factory)
    if sig is None or "dropout" not in sig.parameters:
        return False
    return sig.parameters["dropout"].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def check_params(factory: Callable[..., Any], params: Mapping[str, Any], where: str, dropout: bool = False) -> None:
    """The factory accepts ``(n_inputs, n_classes, **params)`` (plus ``dropout`` when it takes
    it): every name is one of its parameters (anything when it has ``**kwargs``) and every
    parameter without a default is given."""
    sig = _signature(factory)
    if sig is None:
        return
    ps = list(sig.parameters.values())
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in ps):
        raise UserCodeError(f"model {where}: the factory must take (n_inputs, n_classes, **params), its signature is {sig}")
    counts = positional[:2]
    clash = [p.name for p in counts if p.name in params]
    if clash:
        raise UserCodeError(f"model {where}: {clash} are the input and class counts hpstudy passes, not model parameters")
    named = {p.name: p for p in ps if p not in counts and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in ps)
    unknown = sorted(set(params) - set(named))
    if unknown and not has_kwargs:
        raise UserCodeError(
            f"model {where}: the factory takes no parameter {unknown[0]!r}"
            + (f" (nor {unknown[1:]})" if len(unknown) > 1 else "")
            + f"; its model parameters are {sorted(set(named) - {'dropout'}) or 'none'} (signature {sig})"
        )
    given = set(params) | ({"dropout"} if dropout else set())
    missing = [n for n, p in named.items() if p.default is p.empty and n not in given]
    if missing:
        raise UserCodeError(f"model {where}: the factory needs parameter(s) {missing}, which the trial does not set")


def build_model(
    factory: Callable[..., Any],
    n_inputs: int,
    n_classes: int,
    params: Mapping[str, Any] | None = None,
    *,
    dropout: float = 0.0,
    where: str = "build",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Call the factory, set dropout (see the module), move the module to `device`/`dtype`
    and check one forward pass of a batch of two zero rows (in eval mode, so no state such
    as batch-norm statistics changes)."""
    params = dict(params or {})
    own_dropout = takes_dropout(factory)
    if "dropout" in params:
        raise UserCodeError(
            f"model {where}: 'dropout' is the training option TrainConfig.dropout, not a model parameter; "
            "set it as a training option (the factory receives it when it names a `dropout` parameter)"
        )
    check_params(factory, params, where, dropout=own_dropout)
    kwargs = {**params, "dropout": dropout} if own_dropout else params
    try:
        module = factory(n_inputs, n_classes, **kwargs)
    except Exception as e:
        raise raised(f"model {where}: the factory called with {kwargs}", e, _source(factory)) from e
    if not isinstance(module, nn.Module):
        raise UserCodeError(f"model {where}: the factory returned a {type(module).__name__}, not a torch.nn.Module")
    n_drop = set_dropout(module, dropout) if not own_dropout else 0
    if dropout > 0 and not own_dropout and n_drop == 0:
        raise UserCodeError(
            f"model {where}: dropout={dropout} asked for, but the module has no dropout layer (nn.Dropout, ...) "
            "and the factory takes no `dropout` parameter; add one of them or leave dropout at 0"
        )
    if not any(p.requires_grad for p in module.parameters()):
        raise UserCodeError(f"model {where}: the module has no trainable parameters")
    module.to(device=device, dtype=dtype)
    check_forward(module, n_inputs, n_classes, where, device, dtype)
    return module


def set_dropout(module: nn.Module, p: float) -> int:
    """Set ``p`` of every dropout layer in `module`; returns how many there are."""
    layers = [m for m in module.modules() if isinstance(m, DROPOUT_LAYERS)]
    for m in layers:
        m.p = float(p)
    return len(layers)


def check_forward(
    module: nn.Module,
    n_inputs: int,
    n_classes: int,
    where: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> None:
    """One forward pass of ``zeros(2, n_inputs)`` in eval mode: a tensor ``[2, n_classes]``."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, n_inputs, device=device, dtype=dtype))
    except Exception as e:
        raise raised(
            f"model {where}: the module's forward pass on a [2, {n_inputs}] float batch", e, _source(type(module))
        ) from e
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise UserCodeError(
            f"model {where}: the module's forward returned a {type(out).__name__}; it must return a logits tensor [batch, {n_classes}]"
        )
    if tuple(out.shape) != (2, n_classes):
        raise UserCodeError(
            f"model {where}: the module maps a [2, {n_inputs}] batch to shape {list(out.shape)}; "
            f"it must return logits of shape [batch, n_classes] = [2, {n_classes}]"
        )


def check_model(
    model: Callable[..., Any] | str,
    n_inputs: int,
    n_classes: int,
    params: Mapping[str, Any] | None = None,
    *,
    base_dir: str | None = None,
    dropout: float = 0.0,
) -> ModelInfo:
    """The launch check: load the factory, build the model once for (n_inputs, n_classes,
    params) on the CPU and run one forward pass. Raises `UserCodeError`; returns what it saw."""
    factory, where, sha = resolve(model, base_dir)
    with torch.random.fork_rng(devices=[]):  # the user's initialisation must not move the caller's RNG
        module = build_model(factory, n_inputs, n_classes, params, dropout=dropout, where=where)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    return ModelInfo(
        where=where,
        n_params=sum(p.numel() for _, p in named),
        param_names=tuple(n for n, _ in named),
        sha256=sha,
        takes_dropout=takes_dropout(factory),
        n_dropout_layers=sum(isinstance(m, DROPOUT_LAYERS) for m in module.modules()),
    )


def _source(obj: Any) -> str | None:
    """The file defining `obj`, to point at the user's line in a traceback."""
    try:
        return inspect.getsourcefile(obj)
    except TypeError:
        return None
