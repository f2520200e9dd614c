"""The stored schema of a study: every name hpstudy writes to Optuna and MLflow, how a trial
ends, and a typed view of one stored trial.

Optuna storage is the source of truth; MLflow is the browsable record of every curve. Both
are written with the names below and nowhere else are these names spelled out.

How a trial ends (`StopReason`): one stop reason, written to the Optuna trial (user attr
``stop_reason``) and to its MLflow run (tag ``stop_reason``); the Optuna state and the MLflow
run status follow from it, so the two stores never disagree.

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

Diverged is FAIL rather than PRUNED: a pruned trial's last intermediate value still ranks it
among the others, and a diverged run has no meaningful value to rank. The trainer's own
stop reasons (`trainers.STOP_REASONS`: completed, early_stopped, diverged, stopped_by_caller)
are the subset a finished training run can report; `StopReason.from_trainer` maps them.

A trial's full configuration is stored once, as JSON (`TrainConfig.to_dict`), in the Optuna
user attr ``config`` when the trial is asked for; `TrialRecord.config` reads it back with
`TrainConfig.from_dict`, so nothing downstream parses MLflow's param strings.

A study of the user's own code (``model:`` or ``trainer:`` in the spec) also stores what
that code was (`CodeRecord`, study user attr ``hpstudy.code``: role, reference, the source
file's absolute path and sha256; earlier versions a resume replaced are kept in
``hpstudy.code_history``), and each trial its own values (user attr ``user_params``: the
model factory's keyword arguments, or every value a trainer function received; a trainer
function's trial has no ``config``). Each trial's worker records the file and sha256 it
loaded (placement keys ``code_path``, ``code_sha256``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from search_spaces.space import BUDGET_ATTR, N_PARAMS_ATTR, SEARCHED_ATTR
from study.names import MAX_TEXT as MAX_TEXT
from study.names import VERDICT_FILE as VERDICT_FILE
from study.names import Tag as Tag
from study.spec import SpecError, StudySpec, parse_spec
from trainers import TrainConfig
from trainers.config import MLP_FIELDS


# -- names -------------------------------------------------------------------------------------
class StudyAttr:
    """Optuna study user attrs."""

    SPEC = "hpstudy.spec"  # the spec the study was launched with (`stored_spec`)
    UID = "hpstudy.uid"  # also the MLflow parent run's tag `Tag.STUDY_UID`
    PARENT_RUN = "hpstudy.mlflow_parent_run_id"
    CODE = "hpstudy.code"  # the user's model or trainer code (`CodeRecord.to_json`)
    CODE_HISTORY = "hpstudy.code_history"  # earlier `CODE`s, each with ``until_trial``
    BEAT = "hpstudy.beat."  # + driver id: the driver's last beat (unix time; 0 = it ended)
    TRACKED = "hpstudy.mlflow_complete_through"  # every trial up to this number has its complete MLflow run
    CONFIRMATIONS = "hpstudy.confirmations"  # names of the studies confirming this one's top trials (`study confirm`)


class TrialAttr:
    """Optuna trial user attrs."""

    STOP_REASON = Tag.STOP_REASON
    ERROR = "error"  # the failure's message (first 4000 characters)
    SEED = "seed"  # the trial's training seed
    CONFIG = "config"  # the full TrainConfig as a JSON object
    USER_PARAMS = "user_params"  # a user model's factory arguments, or a trainer function's params (JSON)
    ATTEMPT = "attempt"  # how many times a worker died running these parameters before
    RETRY_OF = "retry_of"  # the number of the trial this one re-runs
    RETRIED = "retried"  # True: superseded by a re-run, not counted
    RECONCILED = "reconciled"  # True: ended by a resume or sync, not by its own driver
    DRIVER = "driver"  # host:pid of the driver that asked for it (several drivers only)
    PLACEMENT = "placement"  # where it ran: a mapping of `PLACEMENT` keys
    ENQUEUED = "enqueued"  # True: from the spec's `enqueue` list
    PRUNED_STEP = "pruned_step"
    PRUNED_VALUE = "pruned_value"
    BEST_EPOCH = "best_epoch"
    STOPPED_EPOCH = "stopped_epoch"
    N_PARAMS = N_PARAMS_ATTR
    SEARCHED = SEARCHED_ATTR  # the TrainConfig fields the search chose in this trial (a sorted list)
    N_PARAMS_BUDGET = BUDGET_ATTR  # the parameter budget a derived width spent (budget spaces)
    CELL = "cell"  # a comparison's run: the key of its cell (`study.comparison.Cell.key`)
    ARMS = "arms"  # the arms this run serves (several when arms differ only in their measure)
    PHASE = "phase"  # "tune" (a learning-rate tuning run) or "main" (a run the verdict reads)
    MEASURES = "measures"  # {measure: value or None}: every measure of the comparison, taken when it ends
    MEASURE_ERRORS = "measure_errors"  # {measure: why it has no value}, only when some failed
    CONFIRMS = "confirms"  # a confirmation run: the study whose top trial it re-trains
    GAP_AT_BEST = "gap_at_best"  # validation minus training loss at the best epoch (queries filter on it)


#: Keys of a trial's placement (where Ray ran it), recorded as MLflow tags and as the Optuna
#: user attr ``placement``.
PLACEMENT = ("host", "node_id", "gpu_ids", "started_at", "code_path", "code_sha256")


#: Optuna trial user attrs copied to the MLflow run's tags.
TAGGED_ATTRS = (
    TrialAttr.STOP_REASON, TrialAttr.ERROR, TrialAttr.SEED, TrialAttr.ATTEMPT, TrialAttr.RETRY_OF, TrialAttr.RECONCILED,
    TrialAttr.ARMS, TrialAttr.PHASE, TrialAttr.MEASURES, TrialAttr.CONFIRMS,
)  # fmt: skip
#: Optuna trial user attrs that are also summary metrics of the MLflow run.
SUMMARY_ATTRS = (TrialAttr.STOPPED_EPOCH, TrialAttr.BEST_EPOCH, TrialAttr.N_PARAMS)
#: Metrics of the held-out test split (the kept weights, measured once at the end of a trial;
#: MLflow run metrics): shown by queries, never used to rank, select or prune trials.
TEST_METRICS = ("test_loss", "test_acc")
#: The text file of a failed trial's run holding the whole traceback (its tag `error`: the last line).
TRACEBACK_FILE = "traceback.txt"


# -- how a trial ends ----------------------------------------------------------------------------
class StopReason(StrEnum):
    """How a trial ended; its Optuna state and MLflow run status follow (see the module)."""

    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    PRUNED = "pruned"
    DIVERGED = "diverged"
    FAILED = "failed"
    TIMEOUT = "timeout"
    WORKER_DIED = "worker_died"
    INTERRUPTED = "interrupted"

    @property
    def state(self) -> TrialState:
        if self in (StopReason.COMPLETED, StopReason.EARLY_STOPPED):
            return TrialState.COMPLETE
        return TrialState.PRUNED if self is StopReason.PRUNED else TrialState.FAIL

    @property
    def mlflow_status(self) -> str:
        return mlflow_status(self.state)

    @property
    def reruns(self) -> bool:
        """Whether the trial's parameters run again: it never got a fair chance (a worker
        death is re-run up to ``retries`` times; an interruption always)."""
        return self in (StopReason.WORKER_DIED, StopReason.INTERRUPTED)

    @classmethod
    def from_trainer(cls, reason: str) -> StopReason:
        """The study's reason for a training run that ended by itself (`trainers.STOP_REASONS`
        less ``stopped_by_caller``, which the study records as the reason it stopped it)."""
        if reason not in (cls.COMPLETED.value, cls.EARLY_STOPPED.value, cls.DIVERGED.value):
            raise ValueError(f"a finished training run ends completed, early_stopped or diverged, got {reason!r}")
        return cls(reason)


STOP_REASONS = tuple(r.value for r in StopReason)
FINAL_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_MLFLOW_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def mlflow_status(state: TrialState) -> str:
    """The MLflow run status matching a finished Optuna state."""
    return _MLFLOW_STATUS[state]


@dataclass(frozen=True)
class Outcome:
    """The end of one trial: its stop reason, objective values (COMPLETE only), a message for
    failures and extra user attrs (``pruned_step``, ``best_epoch``, ...)."""

    reason: StopReason
    values: list[float] | None = None
    message: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.reason, StopReason):
            try:
                object.__setattr__(self, "reason", StopReason(self.reason))
            except ValueError:
                raise ValueError(f"stop reason must be one of {', '.join(STOP_REASONS)}, got {self.reason!r}") from None
        if self.state == TrialState.COMPLETE and not self.values:
            raise ValueError("a completed trial needs its objective value(s)")

    @property
    def state(self) -> TrialState:
        return self.reason.state

    @property
    def mlflow_status(self) -> str:
        return self.reason.mlflow_status


# -- one stored trial ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRecord:
    """A typed view of one Optuna trial as hpstudy stored it."""

    number: int
    state: TrialState
    values: list[float] | None
    params: dict[str, Any]
    attrs: dict[str, Any]
    intermediate: dict[int, float]
    started: datetime | None
    completed: datetime | None

    @classmethod
    def of(cls, t: FrozenTrial) -> TrialRecord:
        return cls(
            t.number, t.state, list(t.values) if t.values is not None else None, dict(t.params), dict(t.user_attrs),
            dict(t.intermediate_values), t.datetime_start, t.datetime_complete,
        )  # fmt: skip

    @property
    def stop_reason(self) -> StopReason | None:
        raw = self.attrs.get(TrialAttr.STOP_REASON)
        try:
            return StopReason(raw) if raw is not None else None
        except ValueError:
            return None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def counted(self) -> bool:
        """Finished and not superseded by a re-run: what a study's target counts."""
        return self.finished and not self.attrs.get(TrialAttr.RETRIED, False)

    @property
    def config(self) -> TrainConfig | None:
        """The trial's full configuration (None for a trial asked for before it was stored,
        or whose space failed to build one)."""
        raw = self.attrs.get(TrialAttr.CONFIG)
        if not isinstance(raw, dict):
            return None
        return config_from_json(raw)

    @property
    def user_params(self) -> dict[str, Any] | None:
        """A user model's factory arguments or a trainer function's params (None: the MLP)."""
        raw = self.attrs.get(TrialAttr.USER_PARAMS)
        return dict(raw) if isinstance(raw, dict) else None

    def run_params(self) -> dict[str, Any]:
        """What the trial used, as its MLflow run's params (`run_params`); without a stored
        configuration (a trainer function's trial, a space that failed, a driver killed while
        asking) its sampled values and whatever user params were stored."""
        config = self.config
        if config is None:
            return {**self.params, **(self.user_params or {})}
        return run_params(config, self.user_params)

    @property
    def searched(self) -> list[str] | None:
        """The fields the search chose in this trial (None: not recorded, an older study)."""
        v = self.attrs.get(TrialAttr.SEARCHED)
        return [str(x) for x in v] if isinstance(v, list) else None

    @property
    def seed(self) -> int | None:
        v = self.attrs.get(TrialAttr.SEED)
        return int(v) if isinstance(v, int) else None

    @property
    def driver(self) -> str | None:
        v = self.attrs.get(TrialAttr.DRIVER)
        return v if isinstance(v, str) else None

    @property
    def last_epoch(self) -> int:
        return max(self.intermediate) if self.intermediate else 0

    def tags(self) -> dict[str, str]:
        """The MLflow tags of this trial's run that come from Optuna (state, stop reason,
        error, seed, attempt, retry_of, reconciled, placement)."""
        tags = {Tag.STATE: self.state.name}
        tags.update({k: str(self.attrs[k])[:MAX_TEXT] for k in TAGGED_ATTRS if k in self.attrs})
        placement = self.attrs.get(TrialAttr.PLACEMENT)
        if isinstance(placement, dict):
            tags.update({k: str(v) for k, v in placement.items() if k in PLACEMENT})
        return tags

    def summary_metrics(self, metric: str | None) -> dict[str, float]:
        """The run's end-of-trial metrics Optuna knows: stopped/best epoch, parameter count,
        objective value(s), and ``best_<metric>`` (the objective metric at the best epoch)."""
        out: dict[str, float] = {}
        for k in SUMMARY_ATTRS:
            v = self.attrs.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[k] = float(v)
        if self.state == TrialState.COMPLETE and self.values:
            out.update(objective_metrics(self.values))
        best = self.attrs.get(TrialAttr.BEST_EPOCH)
        if metric is not None and best in self.intermediate:
            out[f"best_{metric}"] = float(self.intermediate[best])
        return out


def objective_metrics(values: list[float]) -> dict[str, float]:
    """The MLflow metric names of a trial's objective value(s)."""
    return {"objective" if i == 0 else f"objective_{i}": float(v) for i, v in enumerate(values)}


def config_from_json(raw: dict[str, Any]) -> TrainConfig:
    """A stored configuration back to a `TrainConfig` (JSON lists back to tuples)."""
    d = dict(raw)
    if isinstance(d.get("width"), list):
        d["width"] = tuple(d["width"])
    return TrainConfig.from_dict(d)


def config_to_json(config: TrainConfig) -> dict[str, Any]:
    """A configuration as the JSON object stored in Optuna."""
    return json.loads(json.dumps(config.to_dict()))


def params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """A user's values as JSON for Optuna (a value JSON cannot hold becomes its repr)."""
    return json.loads(json.dumps(params, default=repr))


def run_params(config: TrainConfig | None, user_params: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's MLflow params: its TrainConfig (for a user's model without the MLP's
    architecture fields, which it does not use) and the user's own values."""
    if config is None:
        return dict(user_params or {})
    out = config.to_dict()
    if user_params is not None:  # a user model: its architecture is the factory's parameters
        for f in MLP_FIELDS:
            out.pop(f, None)
        out.update(user_params)
    return out


@dataclass(frozen=True)
class CodeRecord:
    """The user's code a study runs: `role` (``model`` or ``trainer``), `ref` as the spec
    wrote it, the source file's absolute `path` and its `sha256` (None for a module without a file)."""

    role: str
    ref: str
    path: str | None
    sha256: str | None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "ref": self.ref, "path": self.path, "sha256": self.sha256}

    @classmethod
    def from_json(cls, raw: Any) -> CodeRecord | None:
        if not isinstance(raw, dict) or "role" not in raw or "ref" not in raw:
            return None
        return cls(str(raw["role"]), str(raw["ref"]), raw.get("path"), raw.get("sha256"))

    def changed(self, now: CodeRecord) -> str | None:
        """A warning when `now` (the code a resume found) differs from this (the stored), else None."""
        if (self.role, self.ref, self.sha256) == (now.role, now.ref, now.sha256):
            return None
        if (self.role, self.ref) != (now.role, now.ref):
            return f"warning: the study's {self.role} was {self.ref} ({self.path}); it is now {now.role} {now.ref} ({now.path})"
        return (
            f"warning: {self.role} {self.ref} ({now.path}) changed since the study last ran it: "
            f"sha256 {self.sha256} before, {now.sha256} now; the trials from here on run the new code"
        )


# -- the stored spec -----------------------------------------------------------------------------
#: The key of the stored spec record holding the spec file's folder (`StudySpec.base_dir`),
#: so that a resume resolves relative space and dataset paths as the launch did.
SPEC_DIR = "spec_dir"
#: Fields that may differ between a launch and the study already stored under its name.
RUN_FIELDS = ("trials", "concurrency", "storage", "tracking_uri", "time_budget", "confirm", SPEC_DIR)


def stored_spec(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The spec record in a study's user attrs (None: not launched by hpstudy)."""
    raw = attrs.get(StudyAttr.SPEC)
    return json.loads(raw) if isinstance(raw, str) else raw


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The fields in which two spec records differ, less those a relaunch may change."""
    return sorted(k for k in set(old) | set(new) if k not in RUN_FIELDS and old.get(k) != new.get(k))


def spec_from_record(name: str, record: dict[str, Any] | None, storage: str | None, where: str) -> StudySpec:
    """The `StudySpec` a stored study was launched with; `storage` is where it was found."""
    if not record:
        raise SpecError(f"study {name!r} in {where!r} was not launched by hpstudy (no spec recorded)")
    data = dict(record)
    data["storage"] = storage
    base_dir = data.pop(SPEC_DIR, None)
    if data.get("objectives"):  # the record dumps the unused default `objective` too
        data.pop("objective", None)
    spec = parse_spec(data, source=f"stored spec of {name!r}")
    return spec.with_context(base_dir=base_dir) if isinstance(base_dir, str) else spec
