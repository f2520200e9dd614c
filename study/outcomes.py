"""How a trial ended: one stop reason, and from it the Optuna state and the MLflow status.

The same stop reason is written to the Optuna trial (user attr ``stop_reason``) and to its
MLflow run (tag ``stop_reason``); the MLflow status is a function of the Optuna state
(COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED), so the two never disagree.

=============  ============  ===========  ==========================================
stop reason    Optuna state  MLflow       notes
=============  ============  ===========  ==========================================
completed      COMPLETE      FINISHED     every epoch ran
early_stopped  COMPLETE      FINISHED     the trainer's patience ran out
pruned         PRUNED        KILLED       user attrs pruned_step, pruned_value
diverged       FAIL          FAILED       NaN/inf loss: never told to Optuna as a value
failed         FAIL          FAILED       user attr error: the exception message
timeout        FAIL          FAILED       past the spec's per-trial timeout
worker_died    FAIL          FAILED       re-enqueued (up to ``retries``)
interrupted    FAIL          FAILED       Ctrl-C or a killed driver; re-enqueued
=============  ============  ===========  ==========================================

Diverged is FAIL rather than PRUNED: a pruned trial's last intermediate value still ranks
it among the others, and a diverged run has no meaningful value to rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

STATE = {
    "completed": TrialState.COMPLETE,
    "early_stopped": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "diverged": TrialState.FAIL,
    "failed": TrialState.FAIL,
    "timeout": TrialState.FAIL,
    "worker_died": TrialState.FAIL,
    "interrupted": TrialState.FAIL,
}
STOP_REASONS = tuple(STATE)
MLFLOW_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
#: Reasons whose parameters are run again: the trial never got a fair chance.
RETRIED = ("worker_died", "interrupted")


@dataclass
class Outcome:
    """The end of one trial: its stop reason, objective values (COMPLETE only), a message
    for failures and extra user attrs (``pruned_step``, ``best_epoch``, ...)."""

    reason: str
    values: list[float] | None = None
    message: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reason not in STATE:
            raise ValueError(f"stop reason must be one of {', '.join(STOP_REASONS)}, got {self.reason!r}")
        if self.state == TrialState.COMPLETE and not self.values:
            raise ValueError("a completed trial needs its objective value(s)")

    @property
    def state(self) -> TrialState:
        return STATE[self.reason]

    @property
    def mlflow_status(self) -> str:
        return MLFLOW_STATUS[self.state]


def mlflow_status(state: TrialState) -> str:
    """The MLflow run status matching a finished Optuna state."""
    return MLFLOW_STATUS[state]
