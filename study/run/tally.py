"""The study's figures as the display and the MLflow parent run show them, from the study
(Optuna), not from this driver's memory: after a resume, or with several drivers, they count
every trial of the study.

`Tally` reads the study's trials once, then adds each trial this driver ends (no scan per
trial). With a shared study (several drivers on one database) it reads them again at most
every `refresh_seconds`, so the other drivers' trials show up too.

What counts: trials that are finished and not re-run (`TrialRecord.counted`), by stop reason;
the best value is the first objective of the best COMPLETE trial (none for several objectives).
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from study.record import Outcome, StopReason, TrialRecord
from study.spec import StudySpec

#: A shared study's trials are read again at most this often (seconds).
REFRESH_SECONDS = 15.0
_SUCCEEDED = (StopReason.COMPLETED.value, StopReason.EARLY_STOPPED.value)


class Tally:
    """Counted trials by stop reason and the best so far, over the whole study."""

    def __init__(self, study: optuna.Study, spec: StudySpec, *, shared: bool = False, refresh_seconds: float = REFRESH_SECONDS):
        self.study = study
        self.spec = spec
        self.shared = shared
        self.refresh_seconds = refresh_seconds
        self.maximize = spec.directions[0] == "maximize"
        self.counts: dict[str, int] = {}
        self.best: tuple[int, float] | None = None
        self.finished = 0
        self._read_at = 0.0
        self.load()

    def load(self) -> None:
        """Read every trial of the study (once at the start, then only to refresh)."""
        counts: dict[str, int] = {}
        best: tuple[int, float] | None = None
        finished = 0
        for t in self.study.get_trials(deepcopy=False):
            r = TrialRecord.of(t)
            if not r.counted:
                continue
            finished += 1
            reason = r.stop_reason.value if r.stop_reason is not None else r.state.name.lower()
            counts[reason] = counts.get(reason, 0) + 1
            if r.state == TrialState.COMPLETE and r.values and self._better(r.values[0], best):
                best = (r.number, r.values[0])
        self.counts, self.best, self.finished = counts, best, finished
        self._read_at = time.monotonic()

    def maybe_refresh(self) -> None:
        """With several drivers on the study: read it again every `refresh_seconds`."""
        if self.shared and time.monotonic() - self._read_at >= self.refresh_seconds:
            self.load()

    def _better(self, value: float, than: tuple[int, float] | None) -> bool:
        if self.spec.is_multi_objective:
            return False
        if than is None:
            return True
        return value > than[1] if self.maximize else value < than[1]

    def improves(self, outcome: Outcome) -> bool:
        """Whether `outcome` (not yet added) would be the study's new best."""
        return outcome.state == TrialState.COMPLETE and bool(outcome.values) and self._better(outcome.values[0], self.best)  # type: ignore[index]

    def add(self, number: int, outcome: Outcome, counted: bool) -> None:
        """A trial this driver ended; `counted`: False when its parameters run again."""
        if not counted:
            return
        if self.improves(outcome):
            self.best = (number, outcome.values[0])  # type: ignore[index]
        self.finished += 1
        self.counts[outcome.reason.value] = self.counts.get(outcome.reason.value, 0) + 1

    @property
    def succeeded(self) -> int:
        """Counted trials that completed (or stopped early): they have a value."""
        return sum(self.counts.get(k, 0) for k in _SUCCEEDED)

    @property
    def pruned(self) -> int:
        return self.counts.get(StopReason.PRUNED.value, 0)

    @property
    def failed(self) -> int:
        return self.finished - self.succeeded - self.pruned

    def metrics(self) -> dict[str, float]:
        """The parent run's progress metrics: finished, completed, pruned, failed, best_value."""
        out = {
            "finished": float(self.finished),
            "completed": float(self.succeeded),
            "pruned": float(self.pruned),
            "failed": float(self.failed),
        }
        if self.best is not None:
            out["best_value"] = self.best[1]
        return out
