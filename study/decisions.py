"""The Optuna side of a study: samplers and pruners from the spec, seeds, objective values,
and `Decisions`, which asks for trials, reports epochs, tells outcomes and re-enqueues.

Only the driver thread calls it; it is the only code that writes to Optuna storage during
a study.

Trial seed: ``SeedSequence([study_seed, trial_number]).generate_state(1)[0]``, recorded as
the user attr ``seed`` (and used as ``TrainConfig.seed`` unless the spec fixes one).

Counting: a study is done when ``trials`` trials are *finished*: in a final state
(COMPLETE, PRUNED or FAIL) and not re-run. A trial whose worker died (up to ``retries``
times) or that was interrupted is marked ``retried`` and its parameters are enqueued; the
new trial carries ``retry_of`` (the earlier trial's number) and counts instead.

Several drivers on one study (``shared``: a database server as storage): each trial records
the driver that asked for it (user attr ``driver``, ``host:pid``), and each driver beats
(study user attr ``hpstudy.beat.<driver>``, a timestamp, every `BEAT_SECONDS`). Before a
new trial is asked for, the finished and running trials of *all* drivers are counted, under
a database lock (PostgreSQL advisory lock, MySQL ``GET_LOCK``) held from the count to the
ask, so two drivers never both take the last slot: the study ends with exactly ``trials``
counted trials. A resuming driver re-runs only the RUNNING trials of drivers that are gone
(same host and process dead, or no beat for `STALE_SECONDS`).
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from study.outcomes import Outcome
from study.spec import SpecError, StudySpec

FINAL = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
BEAT_ATTR = "hpstudy.beat."
BEAT_SECONDS = 10.0
STALE_SECONDS = 60.0


def driver_id() -> str:
    """This process as a driver: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def driver_gone(driver: str, beats: dict[str, Any], now: float | None = None) -> bool:
    """Whether the driver ``host:pid`` has stopped: on this host, its process is gone;
    elsewhere, its last beat is older than `STALE_SECONDS` (or it never beat)."""
    host, _, pid = driver.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        else:
            return not beats.get(driver)  # alive unless it said it ended (beat 0)
    beat = beats.get(driver)
    return not isinstance(beat, (int, float)) or (now or time.time()) - beat > STALE_SECONDS


def trial_seed(study_seed: int, number: int) -> int:
    """A trial's training seed, a pure function of the study seed and the trial number."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0])


def make_sampler(spec: StudySpec, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler. Its seed mixes in how many trials exist, so a resumed study does
    not replay the random draws of its first run."""
    with warnings.catch_warnings():  # TPE's `group`, PatientPruner: "experimental" notices
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(spec, n_existing)


def _sampler(spec: StudySpec, n_existing: int) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    base = s.seed if s.seed is not None else spec.seed
    seed = base if n_existing == 0 else trial_seed(base, 1_000_000 + n_existing)
    startup: dict[str, Any] = {} if s.n_startup_trials is None else {"n_startup_trials": s.n_startup_trials}
    if s.name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=s.multivariate, group=s.multivariate, constant_liar=s.constant_liar, **startup
        )
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "gp":
        _needs("gp", "torch", "the torch extra: pip install 'hpstudy[torch]'")
        _needs("gp", "scipy", "scipy")
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if s.name == "cmaes":
        _needs("cmaes", "cmaes", "the cmaes package")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **startup)
    if s.name == "nsga2":
        pop: dict[str, Any] = {} if s.population_size is None else {"population_size": s.population_size}
        return optuna.samplers.NSGAIISampler(seed=seed, **pop)
    assert s.grid is not None
    return optuna.samplers.GridSampler(s.grid, seed=seed)


def _needs(sampler: str, module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise SpecError(f"field sampler: the {sampler} sampler needs {what}, which is not installed")


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner; NopPruner for multi-objective studies (Optuna cannot prune them)."""
    if not spec.pruning:
        return optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _pruner(spec.pruner, trial_epochs(spec))


def trial_epochs(spec: StudySpec) -> int | None:
    """The epochs every trial runs: the spec's ``fixed``, else the space's fixed value, else
    TrainConfig's default when the space leaves epochs alone; None when the space samples
    them or is a Python function (then the halving pruners fall back to Optuna's "auto")."""
    if "epochs" in spec.fixed:  # a bad value is reported by prepare()'s dry run
        e = spec.fixed["epochs"]
        return e if isinstance(e, int) and not isinstance(e, bool) and e >= 1 else None
    import search_spaces
    from search_spaces.declarative import DeclarativeSpace
    from trainers import TrainConfig

    try:
        space = search_spaces.load(spec.space)
    except Exception:  # noqa: BLE001 - a bad space is reported by prepare(), not here
        return None
    if not isinstance(space, DeclarativeSpace) or any(p.field == "epochs" for p in space.params):
        return None
    epochs = space.fixed.get("epochs", TrainConfig.epochs)
    return int(epochs) if isinstance(epochs, int) else None


def halving_min_resource(epochs: int, reduction_factor: int) -> int:
    """``max(1, epochs // reduction_factor**3)``: at most four rungs below ``epochs``."""
    return max(1, epochs // reduction_factor**3)


def _pruner(p: Any, epochs: int | None = None) -> optuna.pruners.BasePruner:
    if p is None or p.name == "none":
        return optuna.pruners.NopPruner()
    if p.name in ("median", "percentile"):
        return optuna.pruners.PercentilePruner(
            p.percentile, n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps, interval_steps=p.interval_steps
        )
    if p.name in ("successive_halving", "hyperband"):
        derived = halving_min_resource(epochs, p.reduction_factor) if epochs else None
        low = p.min_resource if p.min_resource != "auto" else derived
        if p.name == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(low or "auto", p.reduction_factor, p.min_early_stopping_rate)
        high = p.max_resource if p.max_resource != "auto" else (epochs or "auto")
        return optuna.pruners.HyperbandPruner(low or 1, high, p.reduction_factor)
    return optuna.pruners.PatientPruner(_pruner(p.wrapped, epochs) if p.wrapped else None, p.patience, p.min_delta)


def objective_values(
    spec: StudySpec, history: dict[int, dict[str, float]], summary: dict[str, Any]
) -> tuple[list[float] | None, str]:
    """The objective value(s) of a finished run, or None and why not.

    ``scope: best`` reads the metric at the trainer's best epoch (the weights early stopping
    keeps); ``scope: last`` at the last epoch that ran."""
    values = []
    for obj in spec.all_objectives:
        if obj.metric == "n_params":
            v = summary.get("n_params")
        else:
            epoch = summary.get("best_epoch") if obj.scope == "best" else summary.get("stopped_epoch")
            if not epoch or epoch not in history:
                return None, f"no epoch to score {obj.metric} at (scope {obj.scope})"
            v = history[epoch].get(obj.metric)
            if v is None:
                return None, f"metric {obj.metric!r} is not recorded by this network (has {sorted(history[epoch])})"
        if v is None or not math.isfinite(v):
            return None, f"{obj.metric} is {v}"
        values.append(float(v))
    return values, ""


def is_counted(t: FrozenTrial) -> bool:
    """Finished and not superseded by a re-run."""
    return t.state in FINAL and not t.user_attrs.get("retried", False)


class Decisions:
    """Ask, report, tell: every Optuna write of a running study."""

    def __init__(
        self,
        study: optuna.Study,
        spec: StudySpec,
        space: Any,
        n_inputs: int,
        n_classes: int,
        *,
        shared_url: str | None = None,
    ) -> None:
        self.study = study
        self.spec = spec
        self.space = space
        self.n_inputs = n_inputs
        self.n_classes = n_classes
        self.counted = sum(is_counted(t) for t in study.get_trials(deepcopy=False))
        self.driver = driver_id()
        self.shared = shared_url is not None
        self._lock = _StudyLock(shared_url, spec.name) if shared_url is not None else None
        self._beat_at = 0.0
        if self.shared:
            self.beat()

    @property
    def target(self) -> int:
        return self.spec.trials

    def ask(self) -> tuple[optuna.Trial, Any, str] | None:
        """A new trial and its `TrainConfig` (None and the error that prevented one), or None
        when the study needs no more trials (several drivers: counting all of them)."""
        if self._lock is None:
            trial = self.study.ask()
        else:
            with self._lock.held():
                trials = self.study.get_trials(deepcopy=False)
                self.counted = sum(is_counted(t) for t in trials)
                running = sum(t.state == TrialState.RUNNING and not t.user_attrs.get("retried") for t in trials)
                if self.counted + running >= self.target:
                    return None
                trial = self.study.ask()
        if self.shared:
            trial.set_user_attr("driver", self.driver)
        seed = trial_seed(self.spec.seed, trial.number)
        trial.set_user_attr("seed", seed)
        try:
            config = self.space.suggest(trial, overrides=dict(self.spec.fixed), n_inputs=self.n_inputs, n_classes=self.n_classes)
            if "seed" not in self.spec.fixed:
                config = config.replace(seed=seed)
        except Exception as e:  # noqa: BLE001 - a bad sample fails this trial, not the study
            return trial, None, f"{type(e).__name__}: {e}"
        return trial, config, ""

    def note(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """Record facts about a running trial (where it runs) as user attrs."""
        for k, v in attrs.items():
            trial.set_user_attr(k, v)

    def report(self, trial: optuna.Trial, epoch: int, value: float | None) -> bool:
        """Report one epoch's objective value; True when the pruner says stop."""
        if self.spec.is_multi_objective or value is None or not math.isfinite(value):
            return False
        trial.report(value, epoch)
        return self.spec.pruning and trial.should_prune()

    def finish(self, trial: optuna.Trial, outcome: Outcome) -> bool:
        """Record `outcome` (user attrs, then tell). Returns True if the trial counts as
        finished, False if its parameters were enqueued to run again."""
        attempt = int(trial.user_attrs.get("attempt", 0))
        retry = outcome.reason == "interrupted" or (outcome.reason == "worker_died" and attempt < self.spec.retries)
        attrs = {"stop_reason": outcome.reason, **outcome.attrs}
        if outcome.message:
            attrs["error"] = outcome.message[:4000]
        if retry:
            attrs["retried"] = True
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        self.study.tell(trial, outcome.values if outcome.state == TrialState.COMPLETE else None, state=outcome.state)
        if retry:
            self.enqueue_retry(trial.number, trial.params, attempt + (outcome.reason == "worker_died"))
            return False
        self.counted += 1
        return True

    def enqueue_retry(self, number: int, params: dict[str, Any], attempt: int) -> None:
        self.study.enqueue_trial(params, user_attrs={"retry_of": number, "attempt": attempt}, skip_if_exists=False)

    # -- several drivers -----------------------------------------------------------------
    def beats(self) -> dict[str, Any]:
        attrs = self.study._storage.get_study_user_attrs(self.study._study_id)
        return {k.removeprefix(BEAT_ATTR): v for k, v in attrs.items() if k.startswith(BEAT_ATTR)}

    def beat(self, ended: bool = False) -> None:
        """Say this driver is alive (every `BEAT_SECONDS` at most), or that it ended."""
        now = time.time()
        if self.shared and (ended or now - self._beat_at >= BEAT_SECONDS):
            self.study.set_user_attr(BEAT_ATTR + self.driver, 0 if ended else now)
            self._beat_at = now

    def orphaned(self, t: FrozenTrial, beats: dict[str, Any]) -> bool:
        """Whether no live driver owns trial `t` (always, with one driver per study)."""
        owner = t.user_attrs.get("driver")
        return not self.shared or owner is None or owner == self.driver or driver_gone(owner, beats)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()

    def reconcile(self) -> list[FrozenTrial]:
        """Trials a killed driver left RUNNING become FAIL/interrupted and are enqueued again
        (with several drivers: only those of drivers that are gone). Returns them (as they were)."""
        beats = self.beats() if self.shared else {}
        left = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if self.orphaned(t, beats)]
        storage = self.study._storage
        for t in left:
            for k, v in {
                "stop_reason": "interrupted",
                "error": "the driver stopped while this trial ran",
                "retried": True,
                "reconciled": True,
            }.items():
                storage.set_trial_user_attr(t._trial_id, k, v)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            self.enqueue_retry(t.number, t.params, int(t.user_attrs.get("attempt", 0)))
        return left


class _StudyLock:
    """A lock on one study shared by every driver using the same database: a PostgreSQL
    session advisory lock, or MySQL's ``GET_LOCK``, on a connection of its own."""

    def __init__(self, url: str, name: str) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.conn = self.engine.connect()
        self.mysql = self.engine.dialect.name in ("mysql", "mariadb")
        digest = hashlib.sha256(f"hpstudy:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self.name = f"hpstudy:{digest.hex()[:40]}"

    @contextmanager
    def held(self) -> Iterator[None]:
        from sqlalchemy import text

        if self.mysql:
            self.conn.execute(text("SELECT GET_LOCK(:n, 60)"), {"n": self.name})
        else:
            self.conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        self.conn.commit()
        try:
            yield
        finally:
            if self.mysql:
                self.conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": self.name})
            else:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()
