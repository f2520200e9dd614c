"""A comparison on the study engine: how its cells become trials.

A comparison (a spec with ``compare:``, `study.comparison`) is the second kind of study on
the same driver: the `Driver` asks `CellDecisions` for trials exactly as it asks `Decisions`
for sampled ones, and `CellDecisions` hands out cells instead of samples, in phases:

1. with ``tune_lr``, the tuning runs first (arm x lr x tuning seed ``10000 + i``);
2. once every tuning run has finished, each arm's lr (`CompareSpec.choose_lrs` on the
   tuning runs' stored measures), then the verdict's runs (seed-major);
3. cells with the same key (arms that differ only in their measure) are one run.

What a run is stays in Optuna: each trial carries its cell key, the arms it serves, its phase
and its seed (user attrs ``cell``, ``arms``, ``phase``, ``seed``) and, when it ends, every
measure of the comparison (``measures``: measure -> value, None for no value). A resume and
the verdict read nothing else: a resume skips the cells that finished and re-derives the
chosen lrs from the stored tuning measures; the verdict (`study.query.verdict_report`) needs
no MLflow curve. Nothing is pruned; a diverged run keeps its measures (``epochs_to`` counts it
as the slowest), a failed one has none (the verdict leaves its seed out).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search_spaces import Space
from study.comparison import Cell, CompareSpec
from study.measures import evaluate
from study.record import StudyAttr, TrialAttr, TrialRecord, config_to_json
from study.run.decisions import Asked, Decisions
from study.run.events import Ended
from study.run.lease import Lease
from study.spec import SpecError, StudySpec
from study.stores import optuna_storage
from trainers import Dataset, TrainConfig

#: What a study concludes at its end (a comparison's verdict), from its Optuna record; given
#: to `study.run.launch.run_study` by the caller (the statistics live on the query side).
Conclude = Callable[[optuna.Study, StudySpec], "dict[str, Any] | None"]

TUNE, MAIN = "tune", "main"


@dataclass(frozen=True)
class Run:
    """One training run of a comparison: the cells of `arms` at `seed` share it (same key)."""

    key: str
    arms: tuple[str, ...]
    seed: int
    phase: str
    overrides: dict[str, Any]


def runs_of(cells: Sequence[Cell]) -> list[Run]:
    """The distinct runs behind `cells`, in the cells' order."""
    arms: dict[str, list[str]] = defaultdict(list)
    first: dict[str, Cell] = {}
    for c in cells:
        first.setdefault(c.key, c)
        arms[c.key].append(c.arm)
    return [Run(k, tuple(arms[k]), c.seed, c.phase, c.overrides) for k, c in first.items()]


class Design:
    """A comparison's runs for one dataset shape (``param_budget`` widths depend on it)."""

    def __init__(self, comp: CompareSpec, fixed: dict[str, Any], shape: tuple[int, int]) -> None:
        self.comp = comp
        self.fixed = dict(fixed)
        self.shape = shape
        judged = {m for j in comp.judgements() for m in j.measures.values()}
        if comp.tune_lr is not None:
            judged.add(comp.tune_lr.select)
        #: every measure taken of every run (a few numbers; cheaper than tracking which run needs which)
        self.measures = sorted(judged)
        self.tune = runs_of(comp.tune_cells(self.fixed, shape))
        placeholder = {a: comp.tune_lr.grid[0] for a in comp.arms()} if comp.tune_lr is not None else None
        #: every run of the comparison, tuning included: the spec's ``trials`` (`CompareSpec.n_runs`)
        self.total = len(self.tune) + len(self.main(placeholder))
        if self.total != comp.n_runs:
            raise AssertionError(f"the design makes {self.total} runs, the spec counted {comp.n_runs}")

    def main(self, lrs: dict[str, float] | None) -> list[Run]:
        return runs_of(self.comp.cells(lrs, self.fixed, self.shape))

    def chosen_lrs(self, records: Iterable[TrialRecord]) -> dict[str, float] | None:
        """Each arm's lr from the finished tuning runs (None without ``tune_lr``). A tuning
        run without a value of the ``select`` measure (failed, diverged) counts as worst."""
        if self.comp.tune_lr is None:
            return None
        select = self.comp.tune_lr.select
        values: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            if not r.counted or r.attrs.get(TrialAttr.PHASE) != TUNE:
                continue
            v = (r.attrs.get(TrialAttr.MEASURES) or {}).get(select)
            lr = float((r.attrs.get(TrialAttr.CONFIG) or {}).get("lr", math.nan))
            for arm in r.attrs.get(TrialAttr.ARMS, []):
                values[arm][lr].append(math.nan if v is None else float(v))
        return self.comp.choose_lrs(values)

    def pending(self, records: Sequence[TrialRecord]) -> list[Run]:
        """The runs still to start: the tuning runs not finished nor running; once every
        tuning run has finished, the verdict's runs likewise. Empty while the last tuning
        runs are still running (the verdict's runs wait for the lrs)."""
        done = {r.attrs.get(TrialAttr.CELL) for r in records if r.counted}
        busy = {
            r.attrs.get(TrialAttr.CELL) for r in records if r.state == TrialState.RUNNING and not r.attrs.get(TrialAttr.RETRIED)
        }
        tuning = [r for r in self.tune if r.key not in done]
        if tuning:
            return [r for r in tuning if r.key not in busy]
        return [r for r in self.main(self.chosen_lrs(records)) if r.key not in done and r.key not in busy]

    def measure(
        self, history: dict[int, dict[str, float]], end: Ended, epochs: int
    ) -> tuple[dict[str, float | None], dict[str, str]]:
        """Every measure of the comparison on one finished run: values (None when not finite)
        and, for those that could not be taken, why."""
        rows = [history[e] for e in sorted(history)]
        summary = {
            "best_epoch": end.best_epoch, "stopped_epoch": end.stopped_epoch, "n_params": end.n_params,
            "test_loss": end.test_loss, "test_acc": end.test_acc, "epochs": epochs, "stop_reason": end.reason,
        }  # fmt: skip
        values: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        for m in self.measures:
            try:
                v = evaluate(m, rows, summary)
            except (ValueError, KeyError, IndexError, ZeroDivisionError) as e:
                errors[m] = f"{type(e).__name__}: {e}"[:500]
                v = math.nan
            values[m] = float(v) if math.isfinite(v) else None
        return values, errors


class CellDecisions(Decisions):
    """`Decisions` for a comparison: `ask` hands out the design's pending runs (see the
    module); reporting, telling and re-enqueueing a run whose worker died are `Decisions`'s."""

    def __init__(self, study: optuna.Study, spec: StudySpec, space: Space, n_inputs: int, n_classes: int, lease: Lease) -> None:
        if spec.compare is None:
            raise ValueError(f"study {spec.name!r} has no compare section: it is not a comparison")
        super().__init__(study, spec, space, n_inputs, n_classes, lease)
        self.design = Design(spec.compare, spec.fixed, (n_inputs, n_classes))

    @property
    def target(self) -> int:
        return self.design.total

    def ask(self) -> Asked | None:
        """The next pending run as a new trial; None when every run has finished or is
        running, or the verdict's runs wait for the last tuning runs."""
        with self.lease.counting():
            records = [TrialRecord.of(t) for t in self.study.get_trials(deepcopy=False)]
            self.counted = sum(r.counted for r in records)
            pending = self.design.pending(records)
            if not pending:
                return None
            trial = self.study.ask()
        attrs = trial.user_attrs  # what enqueue_trial gave a re-run: attempt, retry_of
        attempt, retry_of = int(attrs.get(TrialAttr.ATTEMPT, 0)), attrs.get(TrialAttr.RETRY_OF)
        run = pending[0]
        if retry_of is not None:  # a re-run takes over its cell when that cell is still to do
            before = next((r.attrs.get(TrialAttr.CELL) for r in records if r.number == retry_of), None)
            run = next((p for p in pending if p.key == before), run)
        own = {TrialAttr.SEED: run.seed, TrialAttr.CELL: run.key, TrialAttr.ARMS: list(run.arms), TrialAttr.PHASE: run.phase}
        if self.lease.shared:
            own[TrialAttr.DRIVER] = self.lease.driver
        for k, v in own.items():
            trial.set_user_attr(k, v)
        try:
            config = TrainConfig.from_dict({**self.design.fixed, **run.overrides})
        except (TypeError, ValueError) as e:  # `prepare` checked every arm; a failure here fails this run only
            return Asked(trial, None, f"{type(e).__name__}: {e}", run.seed, attempt, retry_of)
        trial.set_user_attr(TrialAttr.CONFIG, config_to_json(config))
        return Asked(trial, config, "", run.seed, attempt, retry_of)

    def ended(self, asked: Asked, history: dict[int, dict[str, float]], end: Ended) -> dict[str, Any]:
        """Every measure of the comparison on this run (user attrs, and tags of its MLflow run)."""
        epochs = asked.config.epochs if asked.config is not None else len(history)
        values, errors = self.design.measure(history, end, epochs)
        mine = asked.trial.user_attrs
        out: dict[str, Any] = {
            TrialAttr.MEASURES: values,
            TrialAttr.ARMS: mine.get(TrialAttr.ARMS),
            TrialAttr.PHASE: mine.get(TrialAttr.PHASE),
        }
        if errors:
            out[TrialAttr.MEASURE_ERRORS] = errors
        if self.design.comp.confirms is not None:
            out[TrialAttr.CONFIRMS] = self.design.comp.confirms.study
        return out


def decisions_for(study: optuna.Study, spec: StudySpec, space: Space, data: Dataset, lease: Lease) -> Decisions:
    """The study's decisions: cells for a comparison, samples of the space otherwise."""
    cls = CellDecisions if spec.compare is not None else Decisions
    return cls(study, spec, space, data.n_features, data.n_classes, lease)


def check_design(spec: StudySpec, data: Dataset, storage_url: str) -> None:
    """Before anything is written: every arm (at every lr of the grid, with its budget's
    width) is a valid TrainConfig under ``fixed``, and a confirmed study exists. SpecError."""
    comp = spec.compare
    if comp is None:
        return
    try:
        comp.check(spec.fixed, (data.n_features, data.n_classes))
        Design(comp, spec.fixed, (data.n_features, data.n_classes))
    except ValueError as e:
        raise SpecError(f"field compare: {e}") from None
    if comp.confirms is not None:
        names = optuna_storage.study_names(storage_url)
        if comp.confirms.study not in names:
            raise SpecError(
                f"field compare.confirms.study: no study {comp.confirms.study!r} in this storage (studies: {names or 'none'})"
            )


def nest_under(spec: StudySpec, storage_url: str) -> str | None:
    """The MLflow run a study's parent run is nested under: for a confirmation, the parent
    run of the study it confirms (so its runs show under that study); else None."""
    comp = spec.compare
    if comp is None or comp.confirms is None:
        return None
    study = optuna.load_study(study_name=comp.confirms.study, storage=optuna_storage.open_storage(storage_url))
    parent = study.user_attrs.get(StudyAttr.PARENT_RUN)
    return parent if isinstance(parent, str) and parent else None
