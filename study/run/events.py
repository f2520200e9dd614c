"""The messages from a running trial to the driver: small frozen dataclasses, matched by type.

A worker yields `Started` once, `Epoch` after every epoch, then `Ended` (training finished by
itself: completed, early stopped or diverged) or `Failed` (the trainer raised: the trial
failed, the worker lives on). An executor adds `Died` when the process running a trial is
gone. After an executor's ``cancel(number)`` no further event of that trial arrives.

Times are wall-clock (``time.time()``), taken where the trial runs: `Epoch.at` is when the
epoch finished, so MLflow shows each point when it happened, not when the driver's writer got
to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Started:
    """The trial runs. `info`: ``pid``, ``host``, for the user's code ``code_path`` and
    ``code_sha256`` (the file the worker loads), and from Ray ``node_id``, ``gpu_ids`` and
    ``started_at`` (the wall-clock time the task began)."""

    number: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Epoch:
    """One epoch's record (`trainers.EpochRecord.metrics`: a flat dict of floats) and `at`,
    the wall-clock time it finished (stamped when the event is made, where the epoch ran)."""

    number: int
    epoch: int
    metrics: dict[str, float]
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Ended:
    """Training ended by itself. `reason` is the trainer's (completed, early_stopped,
    diverged); `best_epoch` the epoch whose weights were kept; `test_loss`/`test_acc` on the
    test split, when there is one (never used to choose). `weights`: the kept weights as the
    bytes of the file `weights_file` (``weights.npz``, or ``state_dict.pt`` from torch), sent
    for a run that did not diverge so that the driver can keep the best trial's."""

    number: int
    reason: str
    best_epoch: int
    stopped_epoch: int
    n_params: int
    final: dict[str, float] = field(default_factory=dict)
    test_loss: float | None = None
    test_acc: float | None = None
    weights: bytes | None = None
    weights_file: str = ""


@dataclass(frozen=True)
class Failed:
    """The trainer raised; `message` is ``Type: message`` (a traceback's last line) and
    `traceback` the whole traceback, when the worker has it."""

    number: int
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Died:
    """The process (or node) running the trial is gone."""

    number: int
    message: str


Event = Started | Epoch | Ended | Failed | Died
