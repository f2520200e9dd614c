"""The user's code on the workers: what a worker loads (`WorkerCode`) and how it gets there.

A trial never receives a built model or a loaded function, only a reference, which the
worker loads where it runs (`mode`):

- ``local`` (a Ray this driver started on this machine, the in-process executor, or a Ray
  the calling process had already joined): the file's absolute path, or the module with the
  spec's folder to import it from; the workers see this machine's files.
- ``ship`` (``study launch --address``: workers on other machines, which may never have seen
  the file): the code travels in the job's runtime environment, given to ``ray.init``
  (Ray uploads local folders at the job level only): a file's folder as ``working_dir``
  (Ray copies it to every node and starts the job's workers in that copy, so the reference
  becomes the file's name and the file can import its neighbours as it does locally), or a
  module of the spec's folder by its top-level package (or file) in ``py_modules``, which Ray
  puts on the workers' ``sys.path``. An installed package travels with nothing.
- ``job`` (the driver of ``study submit``, a Ray Job): the job's ``working_dir`` is the
  spec's folder (see `study.cli.jobs`), so the workers already run in a copy of it; the
  reference is the file's path relative to that folder. Code outside it did not travel.
"""

from __future__ import annotations

import os
from typing import Any

from study.record import CodeRecord, StudyAttr
from study.run.worker import WorkerCode
from study.spec import StudySpec
from trainers.user_code import is_file_ref, split_ref

#: Set in a submitted job's environment (the spec's text): the driver runs as a Ray Job.
SUBMITTED_ENV = "HPSTUDY_SUBMITTED_SPEC"
MODES = ("local", "ship", "job")
#: Left out of a shipped folder (besides what its .gitignore leaves out).
EXCLUDES = [".venv", ".git", "mlruns", "mlflow.db", "mlflow.db-*", ".hpstudy", "__pycache__", ".pytest_cache",
            ".mypy_cache", ".ruff_cache", "*.egg-info", "*-report.html", "*.journal"]  # fmt: skip


def code_mode(address: str | None) -> str:
    """How the code reaches the workers (see the module): ``job`` inside a submitted job,
    ``ship`` for a cluster address, ``local`` otherwise."""
    if os.environ.get(SUBMITTED_ENV):
        return "job"
    return "ship" if address not in (None, "", "local") else "local"


def worker_code(code: CodeRecord, spec: StudySpec, mode: str = "local") -> tuple[WorkerCode, dict[str, Any] | None]:
    """The reference workers load in `mode` and, for ``ship``, the runtime environment that
    carries the code (None: nothing to carry). ValueError for code a job did not carry."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    target, func = split_ref(code.ref, code.role)
    extra = {"objective": spec.all_objectives[0].metric, "direction": spec.directions[0]}
    if mode == "job":
        return _in_job(code, target, func, extra), None
    if is_file_ref(target):
        if code.path is None:  # pragma: no cover - a file reference always has its path
            raise ValueError(f"{code.role} {code.ref}: no file path recorded")
        if mode == "ship":
            env = {"working_dir": os.path.dirname(code.path), "excludes": EXCLUDES}
            return WorkerCode(code.role, f"{os.path.basename(code.path)}:{func}", None, **extra), env
        return WorkerCode(code.role, f"{code.path}:{func}", None, **extra), None
    shipped = _module_root(target, code.path, spec.base_dir) if mode == "ship" else None
    if shipped is not None:
        return WorkerCode(code.role, code.ref, None, **extra), {"py_modules": [shipped], "excludes": EXCLUDES}
    return WorkerCode(code.role, code.ref, spec.base_dir, **extra), None


def _in_job(code: CodeRecord, target: str, func: str, extra: dict[str, str]) -> WorkerCode:
    """The reference relative to the job's working folder (this process's), which every
    worker of the job runs in a copy of."""
    here = os.getcwd()
    if code.path is None or not is_file_ref(target):  # a module: importable from the working folder, or installed
        return WorkerCode(code.role, code.ref, None, **extra)
    rel = os.path.relpath(code.path, here)
    if rel.startswith(os.pardir):
        raise ValueError(
            f"{code.role} {code.ref}: {code.path} is outside the job's working folder {here} (the spec's folder, "
            "which is what travels with a submitted study); move it next to the spec"
        )
    return WorkerCode(code.role, f"{rel}:{func}", None, **extra)


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
