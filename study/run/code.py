"""The user's code on the workers: what a worker loads (`WorkerCode`) and how it gets there.

A trial never receives a built model or a loaded function, only a reference, which the
worker loads where it runs. On this machine (a local Ray, the in-process executor) the
reference is the file's absolute path, or the module with the spec's folder to import it
from. On a cluster (``study launch --address``, ``study submit``) a worker node may never
have seen the file, so the code travels with each task in Ray's runtime environment
(`runtime_env`):

- a file (``model: nets/cnn.py:build``): its folder is the task's ``working_dir``; Ray copies
  it to the node and starts the worker in that copy, so the reference becomes the file's
  name (``cnn.py:build``), and the file can import its neighbours as it does locally;
- a module of the spec's folder (``model: nets.cnn:build``): its top-level package (or
  file) goes in ``py_modules``, which Ray puts on the worker's ``sys.path``;
- an installed package travels with nothing: the cluster's Python must have it.

Ray merges a task's runtime environment with the job's: ``env_vars`` are merged, other
fields replaced, so the job's thread settings stay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from study.record import CodeRecord, StudyAttr
from study.spec import StudySpec
from trainers.user_code import is_file_ref, split_ref

#: Left out of a shipped folder (besides what its .gitignore leaves out).
EXCLUDES = [".venv", ".git", "mlruns", "mlflow.db", "mlflow.db-*", ".hpstudy", "__pycache__", ".pytest_cache",
            ".mypy_cache", ".ruff_cache", "*.egg-info", "*-report.html", "*.journal"]  # fmt: skip


@dataclass(frozen=True)
class WorkerCode:
    """What a worker loads: `role` (``model`` or ``trainer``), the reference as the worker
    resolves it (`ref`, against its working folder), the folder to import a module from
    (`base_dir`, None: the worker's own path), and for a trainer function the objective's
    metric and direction (to check each epoch and find the best)."""

    role: str
    ref: str
    base_dir: str | None = None
    objective: str = "val_loss"
    direction: str = "minimize"


def worker_code(code: CodeRecord, spec: StudySpec, *, ship: bool) -> tuple[WorkerCode, dict[str, Any] | None]:
    """The reference workers load and, with `ship` (workers on other machines), the runtime
    environment that carries the code there (None: nothing to carry)."""
    target, func = split_ref(code.ref, code.role)
    extra = {"objective": spec.all_objectives[0].metric, "direction": spec.directions[0]}
    if is_file_ref(target):
        if code.path is None:  # pragma: no cover - a file reference always has its path
            raise ValueError(f"{code.role} {code.ref}: no file path recorded")
        if ship:
            env = {"working_dir": os.path.dirname(code.path), "excludes": EXCLUDES}
            return WorkerCode(code.role, f"{os.path.basename(code.path)}:{func}", None, **extra), env
        return WorkerCode(code.role, f"{code.path}:{func}", None, **extra), None
    shipped = _module_root(target, code.path, spec.base_dir) if ship else None
    if shipped is not None:
        return WorkerCode(code.role, code.ref, None, **extra), {"py_modules": [shipped], "excludes": EXCLUDES}
    return WorkerCode(code.role, code.ref, spec.base_dir, **extra), None


def _module_root(target: str, path: str | None, base_dir: str | None) -> str | None:
    """The top-level package folder (or module file) of `target` when it lies in the spec's
    folder, else None (an installed package)."""
    if path is None or base_dir is None:
        return None
    top = target.split(".", 1)[0]
    for root in (os.path.join(base_dir, top), os.path.join(base_dir, top + ".py")):
        root = os.path.abspath(root)
        here = os.path.abspath(path)
        if os.path.exists(root) and (here == root or here.startswith(root + os.sep)):
            return root
    return None


def remember_code(study: Any, code: CodeRecord | None, say: Any) -> None:
    """Store the study's code (study user attr ``hpstudy.code``) or, for a study that has
    one, compare: a changed file is a warning with both sha256 (`say`), the stored record
    moves to ``hpstudy.code_history`` (with the first trial number that did not run it) and
    the new one takes its place. A study launched without user code that now has some (or
    the other way round) is refused by the spec comparison before this."""
    if code is None:
        return
    attrs = study.user_attrs
    stored = CodeRecord.from_json(attrs.get(StudyAttr.CODE))
    if stored is None:
        study.set_user_attr(StudyAttr.CODE, code.to_json())
        return
    warning = stored.changed(code)
    if warning is None:
        return
    say(warning)
    history = list(attrs.get(StudyAttr.CODE_HISTORY) or [])
    history.append({**stored.to_json(), "until_trial": len(study.get_trials(deepcopy=False))})
    study.set_user_attr(StudyAttr.CODE_HISTORY, history)
    study.set_user_attr(StudyAttr.CODE, code.to_json())
