"""`SpaceError`: a search space that cannot be loaded or cannot build a `TrainConfig`."""

from __future__ import annotations


class SpaceError(ValueError):
    """A bad search space. The message names the file (or function), the parameter and
    what is allowed, e.g. ``spaces/my.yaml: parameter 'lr': log range needs low > 0, got 0``."""
