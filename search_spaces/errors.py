"""`SpaceError`: a search space that cannot be loaded or cannot build a `TrainConfig`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SpaceError(ValueError):
    """A bad search space. The message names the file (or function), the parameter and
    what is allowed, e.g. ``spaces/my.yaml: parameter 'lr': log range needs low > 0, got 0``."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'dropout'?)"`` when `name` is a likely misspelling of one of `known`, else ""."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
