"""Running a study: the driver loop and what it drives.

- `events`: the typed messages from a trial to the driver;
- `worker`: what runs where a trial runs; `remote`: the trial slots and tasks around
  it and the stop board (all a Ray worker imports); `executor` (Protocol, in-process) and `ray_executor`:
  how trials are run;
- `samplers`: the spec's Optuna sampler and pruner; `decisions`: ask, report, tell;
- `lease`: which drivers hold a study (one liveness rule) and the shared-study lock;
- `driver`: the loop; `reconcile`: the one reconciliation of Optuna and MLflow (resume, sync);
- `design`: a comparison's cells as trials (`CellDecisions`); `confirm` (`study.run.confirm.confirm`):
  re-training a tuning study's top trials on fresh seeds;
- `prepare`: every check before anything is written; `launch`: open the stores and drive.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names, imported on first use: a Ray worker that imports `study.run.worker` does not
#: load the driver's side (Optuna, the stores).
_EXPORTS = {
    "Prepared": "study.run.prepare",
    "prepare": "study.run.prepare",
    "RunResult": "study.run.launch",
    "launch": "study.run.launch",
    "local_storage_warning": "study.run.launch",
    "ray_executor": "study.run.launch",
    "run_study": "study.run.launch",
    "spec_from_storage": "study.run.launch",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'study.run' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
