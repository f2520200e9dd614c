"""Loading a user's function from ``path/to/file.py:function`` or ``package.module:function``.

A file path resolves relative to `base_dir` (a spec's folder; default: the working folder);
its folder goes on ``sys.path`` so that it can import its neighbours, as ``python file.py``
would allow. A dotted module is imported as usual, with `base_dir` tried on ``sys.path``
when the plain import does not find it. The result carries the sha256 of the source file,
so a resumed study can tell that the code changed.

Every problem is one `UserCodeError` (a ValueError) naming the file and function and, for
an exception raised by the user's code, its type, message and the line in the user's file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

FORMS = "FILE.py:function or package.module:function"


class UserCodeError(ValueError):
    """Bad user code (model factory or trainer function): the message names the file and
    function, what went wrong and, for the user's own exception, its type, message and line."""


@dataclass(frozen=True)
class UserCode:
    """A loaded user function: `ref` as written, the `func` itself, the source `path` (None
    when the module has no file) and its `sha256`."""

    ref: str
    func: Callable[..., Any]
    path: str | None
    sha256: str | None

    @property
    def where(self) -> str:
        """``file.py:function`` for messages."""
        return describe(self.ref, self.path)


def describe(ref: str, path: str | None = None) -> str:
    """How a message names the user's function: the reference, and the file it came from
    when that differs."""
    if path is None or path.endswith(ref.rsplit(":", 1)[0]):
        return ref
    return f"{ref} ({path})"


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def user_line(exc: BaseException, path: str | None = None) -> str:
    """``file.py, line N`` of the deepest frame of `exc`'s traceback in the user's file
    `path` (else the deepest frame outside hpstudy's own code; for a SyntaxError, its line)."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f"{exc.filename or path}, line {exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if path is not None:
        mine = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
        if mine:
            return f"{mine[-1].filename}, line {mine[-1].lineno}"
    here = os.path.dirname(os.path.abspath(__file__))
    theirs = [f for f in frames if not os.path.abspath(f.filename).startswith(here)]
    pick = theirs or list(frames)
    return f"{pick[-1].filename}, line {pick[-1].lineno}" if pick else "no traceback"


def raised(what: str, exc: BaseException, path: str | None = None) -> UserCodeError:
    """A `UserCodeError` for an exception the user's code raised: ``WHAT raised TYPE: MESSAGE
    (FILE, line N)``; the original stays attached as ``__cause__``."""
    if isinstance(exc, SyntaxError):
        text = f"{what} has a syntax error: {exc.msg} ({user_line(exc, path)})"
    else:
        text = f"{what} raised {type(exc).__name__}: {exc} ({user_line(exc, path)})"
    err = UserCodeError(text)
    err.__cause__ = exc
    return err


def split_ref(ref: Any, role: str = "model") -> tuple[str, str]:
    """``("path/to/file.py" or "package.module", "function")`` from a reference."""
    if not isinstance(ref, str) or ref.count(":") < 1:
        raise UserCodeError(f"{role} must be {FORMS}, got {ref!r}")
    target, func = ref.rsplit(":", 1)
    if not target or not func.isidentifier():
        raise UserCodeError(f"{role} must be {FORMS} (the function a Python identifier), got {ref!r}")
    return target, func


def is_file_ref(target: str) -> bool:
    """Whether the module part of a reference names a file (``.py`` or a path) rather than a module."""
    return target.endswith(".py") or "/" in target or os.sep in target


def load(ref: str, base_dir: str | None = None, role: str = "model") -> UserCode:
    """Import the function `ref` names (see the module). `role` (``model``/``trainer``) only
    words the messages."""
    target, name = split_ref(ref, role)
    path: str | None
    if is_file_ref(target):
        path = os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(target)))
        if not os.path.isfile(path):
            where = f" (resolved against {base_dir})" if base_dir and not os.path.isabs(target) else ""
            raise UserCodeError(f"{role} {ref}: file {path} does not exist{where}")
        if not path.endswith(".py"):
            raise UserCodeError(f"{role} {ref}: {path} is not a Python file (.py)")
        module = _exec_file(path, ref, role)
    else:
        module = _import_module(target, ref, base_dir, role)
        path = getattr(module, "__file__", None)
    where = describe(ref, path)
    if not hasattr(module, name):
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise UserCodeError(f"{role} {where}: no function {name!r} in it; callables defined there: {defined}")
    func = getattr(module, name)
    if not callable(func):
        raise UserCodeError(f"{role} {where}: {name!r} is a {type(func).__name__}, not a function")
    sha = file_sha256(path) if path and os.path.isfile(path) else None
    return UserCode(ref, func, path, sha)


def _exec_file(path: str, ref: str, role: str) -> ModuleType:
    """Execute the file as a fresh module (re-read on every load), registered under a name
    of its own so that it shadows no installed module and pickle can find its classes."""
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    mod_name = f"_hpstudy_user.{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise UserCodeError(f"{role} {ref}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules.setdefault("_hpstudy_user", ModuleType("_hpstudy_user"))
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # a script's sys.exit() at import is bad code too
        sys.modules.pop(mod_name, None)
        raise raised(f"{role} {ref}: importing {path}", e, path) from e
    return module


def _import_module(target: str, ref: str, base_dir: str | None, role: str) -> ModuleType:
    """``importlib.import_module``; when the module is not found, `base_dir` is put on
    ``sys.path`` and the import tried again."""
    for attempt in range(2):
        try:
            return importlib.import_module(target)
        except ModuleNotFoundError as e:
            missing_is_target = e.name is not None and (target == e.name or target.startswith(e.name + "."))
            if attempt == 0 and missing_is_target and base_dir and os.path.abspath(base_dir) not in sys.path:
                sys.path.insert(0, os.path.abspath(base_dir))
                importlib.invalidate_caches()
                continue
            if missing_is_target:
                searched = f" (searched sys.path and {base_dir})" if base_dir else ""
                raise UserCodeError(f"{role} {ref}: no module named {target!r}{searched}") from None
            raise raised(f"{role} {ref}: importing {target}", e) from e
        except Exception as e:
            raise raised(f"{role} {ref}: importing {target}", e) from e
    raise AssertionError("unreachable")  # pragma: no cover
