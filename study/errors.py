"""`SpecError`, the error of bad input, in a module of its own: the MLflow writer process and
the stores raise and catch it without importing the spec's models (pydantic, the trainers,
the search spaces: about a fifth of a second of CPU per process)."""

from __future__ import annotations


class SpecError(ValueError):
    """A bad spec: the message names the file and field, the value and what is allowed."""
