"""Where a study's storage and tracking URI come from when the command line does not say.

First found wins: the flag (or ``launch()``'s keyword), the spec (for a resume: the stored
spec), the environment (``HPSTUDY_STORAGE``, ``MLFLOW_TRACKING_URI``), the default. Passing
credentials by environment keeps passwords off command lines, which `ps` shows to every
user; the spec itself never needs to hold one.
"""

from __future__ import annotations

import os

from study.spec import StudySpec
from study.storage import mask

STORAGE_ENV = "HPSTUDY_STORAGE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"


def with_env_defaults(spec: StudySpec, storage_flag: str | None, tracking_flag: str | None) -> StudySpec:
    """`spec` with the environment's storage and tracking URI where neither the flag nor the
    spec gives one. A stored spec whose tracking URI was masked (it had a password) takes
    ``MLFLOW_TRACKING_URI`` when that is the same URI with its password."""
    changes: dict[str, str] = {}
    env_storage = os.environ.get(STORAGE_ENV)
    if storage_flag is None and spec.storage is None and env_storage:
        changes["storage"] = env_storage
    env_tracking = os.environ.get(TRACKING_ENV)
    if tracking_flag is None and env_tracking:
        given = "tracking_uri" in spec.model_fields_set
        if not given or ("***" in spec.tracking_uri and mask(env_tracking) == spec.tracking_uri):
            changes["tracking_uri"] = env_tracking
    return spec.with_overrides(**changes) if changes else spec
