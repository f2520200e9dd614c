"""The Optuna side of a running study: ask for a trial and build its configuration, report
epochs (and hear the pruner), tell outcomes, re-enqueue what deserves another run.

Only the driver thread calls it; it is the only code that writes trials to Optuna storage
during a study.

Trial seed: ``SeedSequence([study_seed, trial_number]).generate_state(1)[0]``, recorded as the
user attr ``seed`` (and used as ``TrainConfig.seed`` unless the spec fixes one; a trainer
function gets it as ``params["seed"]`` unless the space or spec sets ``seed``). The whole
configuration is recorded as the user attr ``config`` (JSON) when the trial is asked for, and
for the user's own code its values as ``user_params`` (a model factory's keyword arguments, or
everything a trainer function receives).

Counting: a study is done when ``trials`` trials are *finished*: in a final state (COMPLETE,
PRUNED or FAIL) and not re-run. A trial whose worker died (up to ``retries`` times) or that
was interrupted is marked ``retried`` and its parameters are enqueued; the new trial carries
``retry_of`` (the earlier trial's number) and counts instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import Space
from study.record import Outcome, StopReason, TrialAttr, TrialRecord, config_to_json, params_to_json
from study.run.events import Ended
from study.run.lease import Lease
from study.run.samplers import trial_seed
from study.spec import StudySpec
from study.stores import optuna_storage
from trainers import TrainConfig


@dataclass(frozen=True)
class Asked:
    """A new trial: its Optuna handle and configuration, or the error that prevented one.
    `params`: None for the built-in MLP; the user model's factory arguments; or, for a
    trainer function (`config` None), every value it receives."""

    trial: optuna.Trial
    config: TrainConfig | None
    error: str
    seed: int
    attempt: int
    retry_of: int | None
    params: dict[str, Any] | None = field(default=None)

    @property
    def epochs(self) -> int | None:
        """How many epochs the trial runs at most, if known (the display's progress)."""
        if self.config is not None:
            return self.config.epochs
        v = (self.params or {}).get("epochs")
        return v if isinstance(v, int) and not isinstance(v, bool) else None


def objective_values(spec: StudySpec, history: dict[int, dict[str, float]], end: Ended) -> tuple[list[float] | None, str]:
    """The objective value(s) of a finished run, or None and why not.

    ``scope: best`` reads the metric at the trainer's best epoch (the weights early stopping
    keeps); ``scope: last`` at the last epoch that ran."""
    values = []
    for obj in spec.all_objectives:
        if obj.metric == "n_params":
            v: float | None = end.n_params
        else:
            epoch = end.best_epoch if obj.scope == "best" else end.stopped_epoch
            if not epoch or epoch not in history:
                return None, f"no epoch to score {obj.metric} at (scope {obj.scope})"
            v = history[epoch].get(obj.metric)
            if v is None:
                return None, f"metric {obj.metric!r} is not recorded by this network (has {sorted(history[epoch])})"
        if v is None or not math.isfinite(v):
            return None, f"{obj.metric} is {v}"
        values.append(float(v))
    return values, ""


def enqueue_retry(study: optuna.Study, number: int, params: dict[str, Any], attempt: int) -> None:
    """Run trial `number`'s parameters again as a new trial."""
    study.enqueue_trial(params, user_attrs={TrialAttr.RETRY_OF: number, TrialAttr.ATTEMPT: attempt}, skip_if_exists=False)


class Decisions:
    """Ask, report, tell: every Optuna write of a running study."""

    def __init__(self, study: optuna.Study, spec: StudySpec, space: Space, n_inputs: int, n_classes: int, lease: Lease) -> None:
        self.study = study
        self.spec = spec
        self.space = space
        self.n_inputs = n_inputs
        self.n_classes = n_classes
        self.lease = lease
        self.counted = sum(TrialRecord.of(t).counted for t in study.get_trials(deepcopy=False))
        self._final: set[int] = set()  # a shared study's finished trials seen by `_count_shared`
        self._final_counted = 0  # how many of them count

    @property
    def target(self) -> int:
        return self.spec.trials

    def ask(self) -> Asked | None:
        """A new trial and its `TrainConfig`, or None when the study needs no more trials
        (several drivers: counting all of them)."""
        with self.lease.counting():
            if self.lease.shared:
                counted, running = self._count_shared()
                self.counted = counted
                if counted + running >= self.target:
                    return None
            trial = self.study.ask()
        attrs = trial.user_attrs  # what enqueue_trial gave a re-run: attempt, retry_of
        seed = trial_seed(self.spec.seed, trial.number)
        attempt, retry_of = int(attrs.get(TrialAttr.ATTEMPT, 0)), attrs.get(TrialAttr.RETRY_OF)
        mine: dict[str, Any] = {TrialAttr.SEED: seed}
        if self.lease.shared:
            mine[TrialAttr.DRIVER] = self.lease.driver
        try:
            drawn = self.space.draw(trial, overrides=dict(self.spec.fixed), n_inputs=self.n_inputs, n_classes=self.n_classes)
            config, params = drawn.config, dict(drawn.params)
            if config is not None and "seed" not in self.spec.fixed:
                config = config.replace(seed=seed)
            if config is None:
                params.setdefault("seed", seed)
        except Exception as e:  # noqa: BLE001 - a bad sample fails this trial, not the study
            optuna_storage.set_user_attrs(trial, mine)
            return Asked(trial, None, f"{type(e).__name__}: {e}", seed, attempt, retry_of)
        own = None if self.spec.target == "mlp" else params
        if own is not None:  # before the config: a stored config without user params is the built-in MLP's
            mine[TrialAttr.USER_PARAMS] = params_to_json(own)
        if config is not None:
            mine[TrialAttr.CONFIG] = config_to_json(config)
        optuna_storage.set_user_attrs(trial, mine)  # one storage write (in this order where it cannot be one)
        return Asked(trial, config, "", seed, attempt, retry_of, own)

    def _count_shared(self) -> tuple[int, int]:
        """(counted, running) over every driver's trials of a shared study. A finished trial
        never changes, so each is judged once and remembered: the work of an ask grows with
        the trials not yet finished, not with the whole study."""
        running = 0
        for t in self.study.get_trials(deepcopy=False):
            if t.number in self._final:
                continue
            if t.state.is_finished():
                self._final.add(t.number)
                self._final_counted += not t.user_attrs.get(TrialAttr.RETRIED, False)
            elif t.state == TrialState.RUNNING and not t.user_attrs.get(TrialAttr.RETRIED):
                running += 1
        return self._final_counted, running

    def note(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """Record facts about a running trial (where it runs) as user attrs."""
        for k, v in attrs.items():
            trial.set_user_attr(k, v)

    def report(self, trial: optuna.Trial, epoch: int, value: float | None, last: bool = False) -> bool:
        """Report one epoch's objective value; True when the pruner says stop. The pruner is
        not asked after a trial's `last` epoch: stopping it there saves nothing, and a trial
        that trained every epoch is a completed trial (with its test metrics), not a pruned
        one, even where a rung or the median pruner's comparison falls on that epoch."""
        if self.spec.is_multi_objective or value is None or not math.isfinite(value):
            return False
        trial.report(value, epoch)
        return self.spec.pruning and not last and trial.should_prune()

    def ended(self, asked: Asked, history: dict[int, dict[str, float]], end: Ended) -> dict[str, Any]:
        """Extra user attrs of a trial whose training ended by itself, from its whole history
        (a comparison's measures: `study.run.design.CellDecisions`); none for a search."""
        return {}

    def finish(self, asked: Asked, outcome: Outcome) -> bool:
        """Record `outcome` (user attrs, then tell). Returns True if the trial counts as
        finished, False if its parameters were enqueued to run again."""
        trial = asked.trial
        retry = outcome.reason is StopReason.INTERRUPTED or (
            outcome.reason is StopReason.WORKER_DIED and asked.attempt < self.spec.retries
        )
        attrs = {TrialAttr.STOP_REASON: outcome.reason.value, **outcome.attrs}
        if outcome.message:
            attrs[TrialAttr.ERROR] = outcome.message[:4000]
        if retry:
            attrs[TrialAttr.RETRIED] = True
        optuna_storage.set_user_attrs(trial, attrs)  # one storage write
        optuna_storage.tell(self.study, trial, outcome.values if outcome.state == TrialState.COMPLETE else None, outcome.state)
        if retry:
            enqueue_retry(self.study, trial.number, trial.params, asked.attempt + (outcome.reason is StopReason.WORKER_DIED))
            return False
        self.counted += 1
        return True
