"""Query a study from Python: ``study.load(name)`` returns a `StudyHandle`.

Optuna storage is the source of truth for trials (state, objective values, stop reason,
best and stopped epoch, and the full configuration, stored as JSON when the trial was asked
for); MLflow adds its run id, the test-split metrics and every epoch's record (`curves`). A
handle works while the study is still running; each call reads the stores afresh.

What a trial used: the trials table shows a configuration field only where it has an effect
on that trial (`trainers.TrainConfig.applies`: no ``momentum`` on an Adam trial; the cell is
empty), under the field's name (``lr``, never the space's Optuna name ``lr_adaptive``). Which
fields the search chose, as opposed to fixed, is ``trials().attrs["searched"]`` (per trial:
the Optuna user attr ``searched``). ``test_loss``/``test_acc`` (the test split, with the
weights the trial kept) are shown but never used to rank, select or prune.

    >>> import study
    >>> s = study.load("quickstart")
    >>> s.best_trials(k=3, where="gap_at_best < 0.1")
    >>> s.curves(s.best_trials(k=3))
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import optuna
import pandas as pd

from study.record import TEST_METRICS, StudyAttr, TrialAttr, TrialRecord
from study.spec import SpecError
from study.stores.optuna_storage import load_sibling, load_stored, top_trials, user_attr_values
from study.stores.runs import RunReader, TrialRun
from study.stores.uris import STORAGE_ENV, TRACKING_ENV, StorageError, TrackingError, check_tracking, from_env, unmasked_tracking
from trainers import field_names
from trainers.config import MLP_FIELDS

#: Keys of per-epoch records as logged to MLflow (EpochRecord.metrics(); a user module's
#: per-tensor norms are named after its parameters, ``grad_norm.conv1.weight``).
_CURVE_KEY = re.compile(
    r"^(train_loss|train_acc|val_loss|val_acc|lr|sparsity|dead_units|seconds|batch_loss|grad_norm_\d+|weight_norm_\d+"
    r"|(grad_norm|weight_norm)\.[\w.]+)$"
)
#: A trial run's end-of-trial metrics: never curves (a trainer function's curves are every other key).
_SUMMARY_KEYS = re.compile(r"^(stopped_epoch|best_epoch|gap_at_best|n_params|objective(_\d+)?|best_.*)$")
FIELDS = tuple(field_names())
SCOPES = ("best", "last")
#: Per-trial columns of `StudyHandle.trials` read from Optuna's user attrs.
ATTR_COLUMNS = (
    TrialAttr.BEST_EPOCH, TrialAttr.STOPPED_EPOCH, TrialAttr.N_PARAMS, TrialAttr.N_PARAMS_BUDGET, TrialAttr.SEED,
    TrialAttr.PRUNED_STEP, TrialAttr.PRUNED_VALUE, TrialAttr.ERROR, TrialAttr.RETRY_OF,
)  # fmt: skip
#: Said wherever test metrics are shown.
TEST_NOTE = (
    "test_loss/test_acc: the held-out test split, measured once with the kept weights; never used to rank, select or prune trials"
)


_RUN_ONLY = re.compile(r"\b(run_id|run_status|" + "|".join(TEST_METRICS) + r")\b")


def _needs_runs(where: str, df: pd.DataFrame) -> bool:
    """Whether a `where` filter reads columns only MLflow has for these rows."""
    if _RUN_ONLY.search(where):
        return True
    return "gap_at_best" in where and bool(df.get("gap_at_best", pd.Series(dtype=float)).isna().any())


def _searched_in(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """`StudyHandle.trials`' ``searched`` from the stored attrs alone (no configuration
    rebuilt): the fields recorded as searched in some trial, else those whose stored value
    differs between trials (the seed aside)."""
    recorded: set[str] = set()
    seen: dict[str, set[str]] = {f: set() for f in FIELDS if f != "seed"}
    for t in trials:
        fields = t.user_attrs.get(TrialAttr.SEARCHED)
        if isinstance(fields, list):
            recorded.update(str(f) for f in fields)
        config = t.user_attrs.get(TrialAttr.CONFIG)
        if isinstance(config, dict):
            for f, values in seen.items():
                if len(values) < 2:
                    values.add(repr(config.get(f)))
    if recorded:
        return _field_order(recorded)
    return [f for f, values in seen.items() if len(values) > 1]


def _field_order(names: set[str]) -> list[str]:
    """`names` in `TrainConfig` order, the user's own (a model's or trainer's) after them."""
    return [f for f in FIELDS if f in names] + sorted(names - set(FIELDS))


class StudyHandle:
    """A study in Optuna storage and its MLflow experiment, for querying."""

    def __init__(self, name: str, storage: str | None = None, tracking_uri: str | None = None) -> None:
        env = os.environ.get(STORAGE_ENV) or None
        self.name = name
        try:
            self.optuna, self.spec, self.storage_url = load_stored(name, storage or env)
        except StorageError as e:
            raise from_env(STORAGE_ENV, e) if storage is None and env else e from None
        stored = tracking_uri or self.spec.tracking_uri
        uri = unmasked_tracking(stored)
        try:
            check_tracking(uri)
        except TrackingError as e:  # unmasked_tracking took the URI (with its password) from the environment
            raise from_env(TRACKING_ENV, e) if uri != stored else e from None
        if uri.startswith("sqlite:///") and not os.path.isfile(uri.removeprefix("sqlite:///")):
            raise SpecError(
                f"tracking_uri {uri!r}: no such MLflow database here (a relative path is relative to the folder the "
                "study was launched from; run from there or pass --tracking-uri)"
            )
        self.tracking_uri = uri
        self.objectives = [o.metric for o in self.spec.all_objectives]
        self.directions = self.spec.directions
        self.parent_run_id = self.optuna.user_attrs.get(StudyAttr.PARENT_RUN)
        self.reader = RunReader(uri)

    # -- MLflow ---------------------------------------------------------------------------
    def runs(self, numbers: Iterable[int] | None = None) -> dict[int, TrialRun]:
        """The study's MLflow trial runs by trial number (the newest when a number repeats):
        all, or those of trials `numbers` (a few small searches instead of every page)."""
        return self.reader.trial_runs(self.experiment, self.parent_run_id, numbers)

    @property
    def experiment(self) -> str:
        """The MLflow experiment: the study's own, or for a confirmation the confirmed
        study's (its parent run is nested there)."""
        comp = self.spec.compare
        return comp.confirms.study if comp is not None and comp.confirms is not None else self.name

    # -- trials ---------------------------------------------------------------------------
    def trials(self, states: Iterable[str] | None = None, *, with_runs: bool = True) -> pd.DataFrame:
        """One row per trial: number, objective value(s), state, stop reason, every
        configuration field, best and stopped epoch, generalization gap at the best epoch,
        parameter count, MLflow run id. Completed trials best first, then the others by number."""
        wanted = {s.upper() for s in states} if states else None
        runs = self.runs() if with_runs else {}
        rows = []
        for t in self.optuna.get_trials(deepcopy=False):
            if wanted and t.state.name not in wanted:
                continue
            rows.append(self._row(t, runs.get(t.number)))
        df = pd.DataFrame(rows)
        if df.empty:
            df = pd.DataFrame(columns=["number", "state", "stop_reason", *self._value_columns()])
        df = self._sort(df)
        df.attrs["objectives"] = self.objectives
        df.attrs["directions"] = self.directions
        df.attrs["searched"] = df.attrs["hyperparameters"] = self._searched(df)
        df.attrs["test_metrics"] = [c for c in TEST_METRICS if c in df and df[c].notna().any()]
        df.attrs["notes"] = [TEST_NOTE] if df.attrs["test_metrics"] else []
        return df

    def _searched(self, df: pd.DataFrame) -> list[str]:
        """The fields the search chose in some trial, in `TrainConfig` order, as recorded per
        trial (user attr ``searched``); for a study launched before that was recorded, the
        fields that differ between trials (the per-trial seed aside)."""
        column = df["searched"] if "searched" in df else pd.Series(dtype=object)
        recorded = {f for fs in column.dropna() for f in fs}
        if column.notna().any():
            return _field_order(recorded)
        return [f for f in FIELDS if f != "seed" and f in df and df[f].dropna().astype(str).nunique() > 1]

    def _value_columns(self) -> list[str]:
        return ["value"] if len(self.objectives) == 1 else [f"value_{i}" for i in range(len(self.objectives))]

    def _row(self, t: optuna.trial.FrozenTrial, run: TrialRun | None) -> dict[str, Any]:
        r = TrialRecord.of(t)
        row: dict[str, Any] = {"number": r.number, "state": r.state.name, "stop_reason": r.attrs.get(TrialAttr.STOP_REASON)}
        cols = self._value_columns()
        values = r.values if r.values is not None else [math.nan] * len(cols)
        row.update(dict(zip(cols, values, strict=True)))
        for k in ATTR_COLUMNS:
            row[k] = r.attrs.get(k)
        gap = r.attrs.get(TrialAttr.GAP_AT_BEST)  # in Optuna since issue 15; else from the run
        row["gap_at_best"] = float(gap) if isinstance(gap, (int, float)) else math.nan
        row.update(dict.fromkeys(TEST_METRICS, math.nan))
        row = self._row_runs(row, run)
        config, own = r.config, r.user_params
        if config is not None:  # the configuration as stored when the trial was asked for, less what had no effect
            shown = {k: (v if config.applies(k) else None) for k, v in config.to_dict().items()}
            if own is not None:  # a user's model: the MLP's architecture fields do not apply to it
                shown = {k: v for k, v in shown.items() if k not in MLP_FIELDS}
            row.update(shown)
        if own is not None:  # the user's own values (a model's factory arguments, or a trainer's params)
            row.update(own)
        row["searched"] = r.searched
        for p, v in r.params.items():  # the sampled values, under Optuna's names
            row.setdefault(f"param_{p}", v)
        return row

    @staticmethod
    def _row_runs(row: dict[str, Any], run: TrialRun | None) -> dict[str, Any]:
        """A row's MLflow columns: run id and status, the test metrics, and gap_at_best when
        Optuna lacks it."""
        row["run_id"] = None
        if run is not None:
            row["run_id"] = run.run_id
            row["run_status"] = run.status
            for k in TEST_METRICS:
                if k in run.metrics:
                    row[k] = run.metrics[k]
            gap = row.get("gap_at_best")
            if "gap_at_best" in run.metrics and (gap is None or math.isnan(gap)):
                row["gap_at_best"] = run.metrics["gap_at_best"]
        return row

    def _sort(self, df: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
        """Completed trials best first by `column` (default: the first objective), then the
        others (pruned, failed, running) by number."""
        column = column or self._value_columns()[0]
        if column not in df or df.empty:
            return df.reset_index(drop=True)
        asc = self.directions[0] == "minimize"
        done = df["state"] == "COMPLETE"
        return pd.concat([df[done].sort_values(column, ascending=asc), df[~done].sort_values("number")]).reset_index(drop=True)

    def best_trials(self, k: int = 5, where: str | None = None, scope: str = "best") -> pd.DataFrame:
        """The `k` best completed trials by the (first) objective, after the `where` filter
        (a `DataFrame.query` expression on the `trials` columns). ``scope="last"`` ranks by
        the objective metric at each trial's last epoch instead of its best (read from the
        curves when the study was scored the other way)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if len(self.objectives) > 1 and scope != "best":
            raise ValueError(
                f"scope={scope!r} needs a single-objective study; {self.name!r} has {len(self.objectives)} objectives"
            )
        metric = self.objectives[0]
        if where is None and (len(self.objectives) > 1 or scope == self.spec.objective.scope or metric == "n_params"):
            return self._top(k)
        # Optuna has what ranks and filters; MLflow is read for the k trials shown (a where on
        # run_id, run_status or a gap_at_best that Optuna lacks reads every run)
        df = self.trials(states=["COMPLETE"], with_runs=False)
        runs_read = where is not None and _needs_runs(where, df)
        if runs_read:
            df = self.trials(states=["COMPLETE"])
        attrs = dict(df.attrs)
        if len(self.objectives) == 1 and scope != self.spec.objective.scope and not df.empty and metric != "n_params":
            curves = self.curves(df["number"].tolist(), keys=[metric]).reindex(columns=["trial", "epoch", metric])
            epoch = "stopped_epoch" if scope == "last" else "best_epoch"
            at = df[["number", epoch]].merge(curves, left_on=["number", epoch], right_on=["trial", "epoch"], how="left")
            df = df.assign(value=at[metric].to_numpy())
        if where:
            empty = [c for c in TEST_METRICS if re.search(rf"\b{c}\b", where) and not (c in df and df[c].notna().any())]
            if empty and not df.empty:
                raise ValueError(
                    f"where {where!r}: no trial of {self.name!r} has {empty[0]} (its dataset has no test split: "
                    "set dataset.test, e.g. test: 0.2, to measure one)"
                )
            try:
                df = df.query(where)
            except Exception as e:  # pandas raises many kinds for a bad expression
                raise ValueError(f"where {where!r}: {e}; columns: {', '.join(map(str, df.columns))}") from None
        df = self._sort(df).head(k).reset_index(drop=True)
        df.attrs.update(attrs)  # objectives, directions, test metrics
        if not runs_read:
            return self._with_runs(df)
        df.attrs["searched"] = df.attrs["hyperparameters"] = self._searched_all()
        return df

    def _top(self, k: int) -> pd.DataFrame:
        """`best_trials` without a filter: ranked in Optuna (in the database, for hpstudy's
        database storage), rows built for the `k` shown only."""
        top = top_trials(self.optuna, k)
        df = pd.DataFrame([self._row(t, None) for t in top])
        if df.empty:
            df = pd.DataFrame(columns=["number", "state", "stop_reason", *self._value_columns()])
        df.attrs.update(objectives=self.objectives, directions=self.directions)
        return self._with_runs(df)

    def _with_runs(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` (a few rows of `trials(with_runs=False)`) with its trials' MLflow columns, and
        the attrs `trials` gives, ``searched`` over the whole study."""
        runs = self.runs(df["number"].tolist()) if not df.empty else {}
        rows = [self._row_runs(row, runs.get(int(row["number"]))) for row in df.to_dict("records")]
        out = pd.DataFrame(rows, columns=list(dict.fromkeys([*df.columns, "run_id", "run_status"]))) if rows else df
        out.attrs.update(df.attrs)
        out.attrs["searched"] = out.attrs["hyperparameters"] = self._searched_all()
        out.attrs["test_metrics"] = [c for c in TEST_METRICS if c in out and out[c].notna().any()]
        out.attrs["notes"] = [TEST_NOTE] if out.attrs["test_metrics"] else []
        return out

    def _searched_all(self) -> list[str]:
        """`_searched_in` over every trial: the recorded ``searched`` lists' distinct values
        when some trial has one (no trial read whole on hpstudy's database storage)."""
        recorded = [v for v in user_attr_values(self.optuna, TrialAttr.SEARCHED) if isinstance(v, list)]
        if recorded:
            return _field_order({str(f) for fields in recorded for f in fields})
        return _searched_in(self.optuna.get_trials(deepcopy=False))

    def pareto_front(self) -> pd.DataFrame:
        """The non-dominated completed trials of a multi-objective study."""
        if len(self.objectives) < 2:
            raise ValueError(f"study {self.name!r} has one objective ({self.objectives[0]}); a Pareto front needs two or more")
        numbers = {t.number for t in self.optuna.best_trials}
        df = self.trials(states=["COMPLETE"])
        return df[df["number"].isin(numbers)].reset_index(drop=True)

    # -- curves ---------------------------------------------------------------------------
    def curves(self, trials: Any = None, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Long frame: one row per (trial, epoch), a column per record field, from MLflow.
        `trials` is None (all), trial numbers, or a frame with a ``number`` column."""
        if isinstance(trials, pd.DataFrame):
            trials = trials["number"].tolist()
        runs = self.runs()
        numbers = sorted(runs) if trials is None else [int(n) for n in trials if int(n) in runs]
        jobs = [
            (n, runs[n].run_id, key)
            for n in numbers
            for key in runs[n].metrics
            if self._curve_key(key) and (keys is None or key in keys)
        ]
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        for n, key, hist in self.reader.histories(jobs):
            for step, value in hist:
                rows.setdefault((n, step), {"trial": n, "epoch": step})[key] = value
        df = pd.DataFrame(list(rows.values()))
        if df.empty:
            return pd.DataFrame(columns=["trial", "epoch"])
        return df.sort_values(["trial", "epoch"]).reset_index(drop=True)

    def _curve_key(self, key: str) -> bool:
        if self.spec.target == "trainer":  # a trainer function reports metrics of its own
            return not _SUMMARY_KEYS.match(key)
        return bool(_CURVE_KEY.match(key))

    # -- importance -----------------------------------------------------------------------
    def importance(self, target: str = "objective", evaluator: str = "fanova") -> dict[str, float]:
        """Hyperparameter importance (Optuna's evaluators: ``fanova``, ``ped_anova`` or
        ``mean_decrease_impurity``) for the objective or a per-trial column such as
        ``gap_at_best``, ``best_epoch`` or ``stopped_epoch``. Empty when fewer than two
        completed trials carry the target."""
        from optuna.importance import (
            FanovaImportanceEvaluator,
            MeanDecreaseImpurityImportanceEvaluator,
            PedAnovaImportanceEvaluator,
        )

        evaluators: dict[str, Callable[[], Any]] = {
            "fanova": lambda: FanovaImportanceEvaluator(seed=0),
            "mean_decrease_impurity": lambda: MeanDecreaseImpurityImportanceEvaluator(seed=0),
            "ped_anova": PedAnovaImportanceEvaluator,
        }
        if evaluator not in evaluators:
            raise ValueError(f"evaluator must be one of {', '.join(evaluators)}, got {evaluator!r}")
        done = [t for t in self.optuna.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.params]
        if target == "objective":
            values = {t.number: float(t.values[0]) for t in done}
            direction = self.directions[0]
        else:
            df = self.trials(states=["COMPLETE"])
            if target not in df:
                raise ValueError(
                    f"target must be 'objective' or a trials column, got {target!r}; columns: {', '.join(map(str, df.columns))}"
                )
            values = {}
            for n, v in zip(df["number"], df[target], strict=True):
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    continue
                if math.isfinite(x):
                    values[int(n)] = x
            direction = "maximize" if target.endswith("_acc") else "minimize"
        done = [t for t in done if t.number in values]
        if len(done) < 2 or len(set(values.values())) < 2:
            return {}
        # A study-only view holding, for each chosen trial, its parameters and the target as its
        # one value: the view numbers its trials afresh, so nothing is looked up by number there.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        view = optuna.create_study(direction=direction)
        view.add_trials(
            [optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=values[t.number]) for t in done]
        )
        ev = evaluators[evaluator]()
        try:
            return dict(optuna.importance.get_param_importances(view, evaluator=ev))
        except (RuntimeError, ValueError):
            return {}  # e.g. no parameter shared by every trial

    # -- analysis (study.query.curves, replay, audit on this study's curves) -----------------------------------
    def _monitor(self) -> str:
        return "val_acc" if self.objectives[0] == "val_acc" else "val_loss"

    def overfitting(self, min_run: int = 3) -> pd.DataFrame:
        """Per trial: best and stopped epoch, overfitting onset (the epoch after which
        validation loss keeps rising while training loss keeps falling), generalization gap
        at the best and the last epoch; see `study.query.curves.summarize`."""
        from study.query.curves import summarize

        return summarize(self.curves(), monitor=self._monitor(), min_run=min_run)

    def replay_early_stopping(self, patiences: Iterable[int] = (1, 2, 3, 5, 10), min_delta: float = 0.0) -> pd.DataFrame:
        """Every trial's recorded curve replayed under other patiences, without retraining
        (`study.query.replay.replay_early_stopping`); column ``exact`` says whether the trial ran
        to its end without early stopping, so that its replay is exact."""
        from study.query import replay

        trials = self.trials(with_runs=False)
        curves = self.curves()
        reasons = dict(zip(trials["number"], trials["stop_reason"], strict=True))
        exact = {t: reasons.get(t) in replay.EXACT_STOP_REASONS for t in curves["trial"].unique()}
        return replay.replay_early_stopping(curves, patiences, min_delta=min_delta, monitor=self._monitor(), replayable=exact)

    def pruning_audit(self) -> pd.DataFrame:
        """Each pruned trial's value at the step it was stopped against the completed
        trials' values at that step (`study.query.audit.pruning_audit`)."""
        from study.query.audit import pruning_audit

        trials = self.trials(with_runs=False)
        pruned = trials[trials["state"] == "PRUNED"]
        metric = self.objectives[0]
        curves = self.curves(keys=[metric])
        marks = {int(r["number"]): (int(r["pruned_step"]), float(r["pruned_value"])) for _, r in pruned.iterrows()}
        done = [int(n) for n in trials.loc[trials["state"] == "COMPLETE", "number"] if int(n) in set(curves["trial"])]
        return pruning_audit(curves, marks, metric=metric, direction=self.directions[0], completed=done)

    # -- how the winner was chosen -----------------------------------------------------------
    def selection(self) -> dict[str, Any]:
        """How this search's winner is chosen, as `study best` states it: ``rule`` (the
        objective, its scope and one training seed per trial), ``winner`` and ``value`` (the
        top completed trial), and ``confirmations``: for each study that re-trained the top
        trials on fresh seeds (`study confirm`, or the spec's ``confirm:``), its name, seeds,
        best trial by mean, whether the search's winner stayed first, and the outcome."""
        obj = self.spec.all_objectives[0]
        direction = self.directions[0]
        if len(self.objectives) > 1:
            rule = f"the Pareto front of {', '.join(self.objectives)} (one training seed per trial)"
        elif obj.scope == "best":
            rule = (
                f"{direction} {obj.metric} at each trial's best epoch (the weights early stopping keeps), "
                "one training seed per trial"
            )
        else:
            rule = f"{direction} {obj.metric} at each trial's last epoch, one training seed per trial"
        top = None
        if len(self.objectives) == 1:
            top = next(iter(top_trials(self.optuna, 1)), None)
        confirmations = []
        for name in self.optuna.user_attrs.get(StudyAttr.CONFIRMATIONS) or []:
            from study.query.verdict_report import judge  # SciPy's statistics: only for a confirmed study

            try:  # its verdict from its Optuna record, read through the storage already open
                other, spec = load_sibling(self.optuna, name, self.storage_url)
                v = judge([TrialRecord.of(t) for t in other.get_trials(deepcopy=False)], spec)
            except (SpecError, ValueError) as e:  # deleted, or not finished: no ranking yet
                confirmations.append({"study": name, "error": str(e)})
                continue
            best = v["ranking"][0]
            confirmations.append(
                {
                    "study": name,
                    "seeds": len(v["seeds"]),
                    "best": best["name"],
                    "mean": best.get("mean"),
                    "sd": best.get("sd"),
                    "winner_stays_first": v["best"] == v["tuning_best"],
                    "outcome": v["outcome"],
                    "text": v["text"],
                }
            )
        return {
            "rule": rule,
            "winner": top.number if top is not None else None,
            "value": top.values[0] if top is not None else None,
            "confirmations": confirmations,
        }

    # -- a comparison's verdict --------------------------------------------------------------
    def verdict(self) -> dict[str, Any]:
        """A comparison's verdict, from its Optuna record (`study.query.verdict_report.judge`):
        ``claim``, ``metric``, ``effect``, ``ci_low``, ``ci_high``, ``seeds``, ``outcome``, the
        sentence ``text``, every level and secondary claim; for a confirmation, the ranking.
        ValueError for a tuning study."""
        from study.query.verdict_report import judge

        return judge([TrialRecord.of(t) for t in self.optuna.get_trials(deepcopy=False)], self.spec)

    def _verdict_sections(self, curves: pd.DataFrame) -> list[tuple[Any, Any]]:
        comp = self.spec.compare
        if comp is None:
            return []
        from study.query.verdict_report import arm_values, seeds_by_arm
        from study.query.verdict_section import sections

        records = [TrialRecord.of(t) for t in self.optuna.get_trials(deepcopy=False)]
        v = self.verdict()
        arms = comp.arms()
        values = arm_values(records, comp, {a.name: a.measure for a in arms.values()})
        return sections(v, values, seeds_by_arm(records, comp), curves, comp)

    # -- report -----------------------------------------------------------------------------
    def report(self, output: str | None = None, top: int = 5) -> Any:
        """Write the HTML report (default ``<name>-report.html``) and log it, with its PNG
        figures, as artifacts of the study's parent run in MLflow (folder ``report``)."""
        from study.query.report import build_report

        trials = self.trials()
        curves = self.curves()
        importance = self.importance() if len(self.objectives) == 1 else {}
        monitor = "val_acc" if self.objectives[0] == "val_acc" else "val_loss"
        value = self._value_columns()[0]
        if value != "value":  # the report ranks by the first objective
            trials = trials.rename(columns={value: "value"})
        rep = build_report(
            self.name,
            trials,
            curves,
            output or f"{self.name}-report.html",
            objective=self.objectives[0],
            monitor=monitor,
            importance=importance,
            top=top,
            lead=self._verdict_sections(curves),
        )
        if self.parent_run_id:
            files = [(str(rep.html_path), "report"), *((str(fig), "report/figures") for fig in rep.figures)]
            self.reader.log_artifacts(self.parent_run_id, files)
        return rep


def load(name: str, storage: str | None = None, tracking_uri: str | None = None) -> StudyHandle:
    """A handle on study `name` in Optuna `storage` (default: env ``HPSTUDY_STORAGE``, else
    the working folder's ``.hpstudy/optuna.journal``) and its MLflow store (default: the one
    it was launched with; ``MLFLOW_TRACKING_URI`` supplies a password that was masked)."""
    return StudyHandle(name, storage, tracking_uri)
