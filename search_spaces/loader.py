"""Finding and reading spaces: built-in names, YAML files, ``module:function``.

A relative YAML path or ``module:function`` is looked for in `base_dir` first (the folder of
the spec naming the space), then where Python and the working folder would find it. YAML is
read by `search_spaces.yamlfile` (safe, bounded; ``1e-3`` is a number).
"""

from __future__ import annotations

import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from search_spaces.checks import FIELDS
from search_spaces.declarative import DeclarativeSpace
from search_spaces.errors import SpaceError, did_you_mean
from search_spaces.function import load_function
from search_spaces.params import parse_param
from search_spaces.space import Space, check_target
from search_spaces.yamlfile import YamlFileError, read_yaml

TOP_KEYS = ("name", "description", "fixed", "parameters")
_FUNCTION = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _builtin_dir() -> Path:
    return Path(str(resources.files("search_spaces")))


def builtin() -> dict[str, str]:
    """Built-in space names -> the description of the question each answers."""
    return dict(_builtin())


@cache
def _builtin() -> dict[str, str]:
    out = {}
    for path in sorted(_builtin_dir().glob("*.yaml")):
        raw = _read(path)
        description = raw.get("description", "") if isinstance(raw, dict) else ""
        out[path.stem] = " ".join(str(description).split())
    return out


def load(name_or_path: str | Path, base_dir: str | os.PathLike[str] | None = None, target: str = "mlp") -> Space:
    """A built-in name (``optimizers``), a YAML file path, or ``module:function``; relative
    paths and modules are looked for in `base_dir` first (see the module). `target`: what the
    space configures (``mlp``, ``model``, ``trainer``; see `search_spaces.space`)."""
    text = str(name_or_path)
    path = Path(text)
    if base_dir is not None and not path.is_absolute() and (Path(base_dir) / path).is_file():
        path = Path(base_dir) / path
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            where = f" (looked in {os.fspath(base_dir)!r} and the working folder)" if base_dir is not None else ""
            raise SpaceError(f"{text}: no such file{where}")
        return parse(_read(path), str(path), target)
    if _FUNCTION.fullmatch(text):
        return load_function(text, base_dir, target)
    if text in _builtin():
        return parse(_read(_builtin_dir() / f"{text}.yaml"), f"{text}.yaml (built-in)", target)
    raise SpaceError(
        f"unknown search space {text!r}{did_you_mean(text, _builtin())}; allowed: a built-in name ({', '.join(_builtin())}), "
        "a path to a YAML file, or module:function"
    )


def _read(path: Path) -> Any:
    try:
        return read_yaml(path, "space")
    except YamlFileError as e:
        raise SpaceError(str(e)) from None


def parse(raw: Any, source: str, target: str = "mlp", *, inline: bool = False) -> DeclarativeSpace:
    """A loaded YAML document -> a validated space; SpaceError naming `source` otherwise.
    `target` as for `load`; `inline` (a space written inside a study spec): ``name`` and
    ``description`` may be left out."""
    check_target(target)
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: must be a mapping with keys {', '.join(TOP_KEYS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(TOP_KEYS), key=str)
    if unknown:
        hint = did_you_mean(str(unknown[0]), TOP_KEYS) if len(unknown) == 1 else ""
        raise SpaceError(f"{source}: unknown key(s) {unknown}{hint}; allowed: {', '.join(TOP_KEYS)}")
    if inline:
        raw = {"name": "inline", "description": "The search space written in the study's spec.", **raw}
    name, description = raw.get("name"), raw.get("description")
    if not isinstance(name, str) or not re.fullmatch(r"[\w-]+", name):
        raise SpaceError(f"{source}: name must be a word (letters, digits, _ or -), got {name!r}")
    if not isinstance(description, str) or not description.strip():
        raise SpaceError(f"{source}: description must be a non-empty paragraph saying what question the space answers")
    fixed = raw.get("fixed") or {}
    params = raw.get("parameters") or {}
    for key, value in (("fixed", fixed), ("parameters", params)):
        if not isinstance(value, dict):
            raise SpaceError(f"{source}: {key} must be a mapping, got {value!r}")
    own = target != "mlp"
    fields = frozenset() if target == "trainer" else FIELDS
    parsed = [parse_param(k, v, source, fields, own) for k, v in params.items()]
    return DeclarativeSpace(name, " ".join(description.split()), fixed, parsed, source, target=target)
