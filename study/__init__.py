"""Orchestration: the only package that touches Ray, Optuna storage and MLflow.

``study.load(name)`` returns a handle for querying a finished or running study.
"""

from __future__ import annotations

from typing import Any


def load(name: str, storage: str | None = None, tracking_uri: str | None = None) -> Any:
    """A `study.query.handle.StudyHandle` on study `name` (see that module)."""
    from study.query.handle import load as load_handle

    return load_handle(name, storage, tracking_uri)


__all__ = ["load"]
