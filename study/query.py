"""Query a study from Python: ``study.load(name)`` returns a `StudyHandle`.

Optuna storage is the source of truth for trials (state, objective values, stop reason,
best and stopped epoch); MLflow adds what Optuna does not keep: the full configuration of
every trial (its run's params), its run id, and every epoch's record (`curves`). A handle
works while the study is still running; each call reads the stores afresh.

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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
import pandas as pd

from study.spec import SpecError
from trainers.config import TrainConfig

#: Keys of per-epoch records as logged to MLflow (EpochRecord.metrics()).
_CURVE_KEY = re.compile(
    r"^(train_loss|train_acc|val_loss|val_acc|lr|sparsity|dead_units|seconds|batch_loss|grad_norm_\d+|weight_norm_\d+)$"
)
_FIELDS = {f: TrainConfig.__dataclass_fields__[f] for f in TrainConfig.__dataclass_fields__ if f != "tags"}
SCOPES = ("best", "last")


def _parse_param(name: str, text: str) -> Any:
    """An MLflow param string back to the TrainConfig field's Python value."""
    if text in ("None", ""):
        return None
    default = _FIELDS[name].default
    if name == "width":
        text = text.strip("[]() ")
        parts = [int(p) for p in text.split(",") if p.strip()]
        return parts[0] if len(parts) == 1 and "," not in text else tuple(parts)
    if isinstance(default, bool):
        return text == "True"
    if isinstance(default, int) or name == "patience":
        return int(float(text))
    if isinstance(default, float) or name in ("max_grad_norm", "weight_decay"):
        return float(text)
    return text


class StudyHandle:
    """A study in Optuna storage and its MLflow experiment, for querying."""

    def __init__(self, name: str, storage: str | None = None, tracking_uri: str | None = None) -> None:
        from study import engine
        from study import storage as storage_mod
        from study.env import STORAGE_ENV, TRACKING_ENV

        storage = storage or os.environ.get(STORAGE_ENV) or None
        self.name = name
        self.spec = engine.spec_from_storage(name, storage)
        self.storage_url = storage_mod.check(storage, must_exist=True)
        self.optuna = optuna.load_study(study_name=name, storage=storage_mod.open_storage(self.storage_url))
        uri = tracking_uri or self.spec.tracking_uri
        env_uri = os.environ.get(TRACKING_ENV)
        if "***" in uri and env_uri and storage_mod.mask(env_uri) == uri:
            uri = env_uri  # the stored URI had its password masked; the environment has it
        if "***" in uri:
            raise SpecError(f"the stored tracking URI {uri!r} had a password: pass tracking_uri= (or --tracking-uri) again")
        from study import tracking

        tracking.check(uri)
        if uri.startswith("sqlite:///") and not os.path.isfile(uri.removeprefix("sqlite:///")):
            raise SpecError(
                f"tracking_uri {uri!r}: no such MLflow database here (a relative path is relative to the folder the "
                "study was launched from; run from there or pass --tracking-uri)"
            )
        self.tracking_uri = uri
        self.objectives = [o.metric for o in self.spec.all_objectives]
        self.directions = self.spec.directions
        self.parent_run_id = self.optuna.user_attrs.get(engine.PARENT_ATTR)
        self._client: Any = None

    # -- MLflow ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            from study.tracking import _quiet

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            _quiet()
        return self._client

    def runs(self) -> dict[int, Any]:
        """The study's MLflow child runs by trial number (the newest when a number repeats)."""
        if not self.parent_run_id:
            return {}
        from study.tracking import child_runs

        exp = self.client.get_experiment_by_name(self.name)
        if exp is None:
            return {}
        out: dict[int, Any] = {}
        for run in child_runs(self.client, exp.experiment_id, self.parent_run_id):
            n = run.data.tags.get("trial_number", "")
            if n.isdigit() and (int(n) not in out or run.info.start_time > out[int(n)].info.start_time):
                out[int(n)] = run
        return out

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
        # searched fields: those that differ between trials (the per-trial seed aside)
        df.attrs["hyperparameters"] = [f for f in _FIELDS if f != "seed" and f in df and df[f].dropna().astype(str).nunique() > 1]
        return df

    def _value_columns(self) -> list[str]:
        return ["value"] if len(self.objectives) == 1 else [f"value_{i}" for i in range(len(self.objectives))]

    def _row(self, t: optuna.trial.FrozenTrial, run: Any) -> dict[str, Any]:
        ua = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "stop_reason": ua.get("stop_reason")}
        cols = self._value_columns()
        values = t.values if t.values is not None else [math.nan] * len(cols)
        row.update(dict(zip(cols, values, strict=True)))
        for k in ("best_epoch", "stopped_epoch", "n_params", "seed", "pruned_step", "pruned_value", "error", "retry_of"):
            row[k] = ua.get(k)
        row["gap_at_best"] = math.nan
        row["run_id"] = None
        if run is not None:
            row["run_id"] = run.info.run_id
            row["run_status"] = run.info.status
            m = run.data.metrics
            if "gap_at_best" in m:
                row["gap_at_best"] = m["gap_at_best"]
            for f, text in run.data.params.items():
                if f in _FIELDS:
                    row[f] = _parse_param(f, text)
        for p, v in t.params.items():  # without MLflow, at least the sampled values
            row.setdefault(f"param_{p}", v)
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
        df = self.trials(states=["COMPLETE"])
        metric = self.objectives[0]
        if len(self.objectives) == 1 and scope != self.spec.objective.scope and not df.empty and metric != "n_params":
            curves = self.curves(df["number"].tolist(), keys=[metric]).reindex(columns=["trial", "epoch", metric])
            epoch = "stopped_epoch" if scope == "last" else "best_epoch"
            at = df[["number", epoch]].merge(curves, left_on=["number", epoch], right_on=["trial", "epoch"], how="left")
            df = df.assign(value=at[metric].to_numpy())
        if where:
            try:
                df = df.query(where)
            except Exception as e:  # pandas raises many kinds for a bad expression
                raise ValueError(f"where {where!r}: {e}; columns: {', '.join(map(str, df.columns))}") from None
        df = self._sort(df)
        return df.head(k).reset_index(drop=True)

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
        jobs = []
        for n in numbers:
            run = runs[n]
            for key in run.data.metrics:
                if _CURVE_KEY.match(key) and (keys is None or key in keys):
                    jobs.append((n, run.info.run_id, key))
        with ThreadPoolExecutor(max_workers=8) as pool:
            histories = list(pool.map(lambda j: (j[0], j[2], self.client.get_metric_history(j[1], j[2])), jobs))
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        for n, key, hist in histories:
            for m in hist:
                rows.setdefault((n, m.step), {"trial": n, "epoch": m.step})[key] = m.value
        df = pd.DataFrame(list(rows.values()))
        if df.empty:
            return pd.DataFrame(columns=["trial", "epoch"])
        return df.sort_values(["trial", "epoch"]).reset_index(drop=True)

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
            fn = None if len(self.objectives) == 1 else (lambda t: t.values[0])
            values = {t.number: t.values[0] for t in done}
        else:
            df = self.trials(states=["COMPLETE"])
            if target not in df:
                raise ValueError(
                    f"target must be 'objective' or a trials column, got {target!r}; columns: {', '.join(df.columns)}"
                )
            values = {
                int(n): float(v)
                for n, v in zip(df["number"], df[target], strict=True)
                if v is not None and math.isfinite(float(v))
            }
            fn = lambda t: values[t.number]  # noqa: E731
        done = [t for t in done if t.number in values]
        if len(done) < 2 or len({v for v in values.values()}) < 2:
            return {}
        # a study-only view on the chosen trials, so filtered-out trials do not count
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        view = optuna.create_study(directions=self.optuna.directions)
        view.add_trials(done)
        ev = evaluators[evaluator]()
        try:
            return dict(optuna.importance.get_param_importances(view, evaluator=ev, target=fn))
        except (RuntimeError, ValueError):
            return {}  # e.g. no parameter shared by every trial

    # -- analysis (study.analysis on this study's curves) -----------------------------------
    def _monitor(self) -> str:
        return "val_acc" if self.objectives[0] == "val_acc" else "val_loss"

    def overfitting(self, min_run: int = 3) -> pd.DataFrame:
        """Per trial: best and stopped epoch, overfitting onset (the epoch after which
        validation loss keeps rising while training loss keeps falling), generalization gap
        at the best and the last epoch; see `study.analysis.summarize`."""
        from study import analysis

        return analysis.summarize(self.curves(), monitor=self._monitor(), min_run=min_run)

    def replay_early_stopping(self, patiences: Iterable[int] = (1, 2, 3, 5, 10), min_delta: float = 0.0) -> pd.DataFrame:
        """Every trial's recorded curve replayed under other patiences, without retraining
        (`study.analysis.replay_early_stopping`); column ``exact`` says whether the trial ran
        to its end without early stopping, so that its replay is exact."""
        from study import analysis

        trials = self.trials(with_runs=False)
        curves = self.curves()
        reasons = dict(zip(trials["number"], trials["stop_reason"], strict=True))
        exact = {t: reasons.get(t) in analysis.EXACT_STOP_REASONS for t in curves["trial"].unique()}
        return analysis.replay_early_stopping(curves, patiences, min_delta=min_delta, monitor=self._monitor(), replayable=exact)

    def pruning_audit(self) -> pd.DataFrame:
        """Each pruned trial's value at the step it was stopped against the completed
        trials' values at that step (`study.analysis.pruning_audit`)."""
        from study import analysis

        trials = self.trials(with_runs=False)
        pruned = trials[trials["state"] == "PRUNED"]
        metric = self.objectives[0]
        curves = self.curves(keys=[metric])
        marks = {int(r["number"]): (int(r["pruned_step"]), float(r["pruned_value"])) for _, r in pruned.iterrows()}
        done = [int(n) for n in trials.loc[trials["state"] == "COMPLETE", "number"] if int(n) in set(curves["trial"])]
        return analysis.pruning_audit(curves, marks, metric=metric, direction=self.directions[0], completed=done)

    # -- report -----------------------------------------------------------------------------
    def report(self, output: str | None = None, top: int = 5) -> Any:
        """Write the HTML report (default ``<name>-report.html``) and log it, with its PNG
        figures, as artifacts of the study's parent run in MLflow (folder ``report``)."""
        from study.report import build_report

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
        )
        if self.parent_run_id:
            self.client.log_artifact(self.parent_run_id, str(rep.html_path), artifact_path="report")
            for fig in rep.figures:
                self.client.log_artifact(self.parent_run_id, str(fig), artifact_path="report/figures")
        return rep


def load(name: str, storage: str | None = None, tracking_uri: str | None = None) -> StudyHandle:
    """A handle on study `name` in Optuna `storage` (default: env ``HPSTUDY_STORAGE``, else
    the working folder's ``.hpstudy/optuna.journal``) and its MLflow store (default: the one
    it was launched with; ``MLFLOW_TRACKING_URI`` supplies a password that was masked)."""
    return StudyHandle(name, storage, tracking_uri)
