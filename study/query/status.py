"""What a study looks like in its storage: counts by state and stop reason, the best trials,
the running ones and their epoch. Read-only; used by `study status` and after a launch.

A best trial is shown by the settings the search chose for it, under their `TrainConfig`
names and only where they had an effect (as `study best` shows them), never by the space's
Optuna parameter names."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from study.record import TrialAttr, TrialRecord
from study.stores.optuna_storage import counts, top_trials, trials_in


def best_trials(study: optuna.Study, k: int = 5) -> list[FrozenTrial]:
    """The `k` best completed trials, ties by number (the Pareto front for several objectives)."""
    if len(study.directions) > 1:
        return list(study.best_trials)[:k]
    return top_trials(study, k)


def summarize(study: optuna.Study, target: int | None = None) -> dict[str, Any]:
    """Counts, running trials and the best five: on hpstudy's database storage without
    reading every trial (`study.stores.optuna_storage.counts`)."""
    running = []
    for t in trials_in(study, (TrialState.RUNNING,)):
        epoch = max(t.intermediate_values) if t.intermediate_values else 0
        running.append({"number": t.number, "epoch": epoch, "value": t.intermediate_values.get(epoch)})
    c = counts(study)
    return {
        "name": study.study_name,
        "states": c.states,
        "stop_reasons": c.stop_reasons,
        "finished": c.counted,
        "target": target,
        "running": running,
        "best": best_trials(study),
    }


def render(s: dict[str, Any], metric: str) -> str:
    lines = [f"study {s['name']}: {s['finished']} finished" + (f" of {s['target']}" if s["target"] else "")]
    lines.append("  states: " + ", ".join(f"{k} {v}" for k, v in sorted(s["states"].items())))
    lines.append("  stop reasons: " + (", ".join(f"{k} {v}" for k, v in sorted(s["stop_reasons"].items())) or "-"))
    if s["running"]:
        lines.append("  running: " + ", ".join(f"trial {r['number']} (epoch {r['epoch']})" for r in s["running"]))
    if s["best"]:
        lines.append(f"  best trials ({metric}):")
        for t in s["best"]:
            values = ", ".join(f"{v:.4g}" for v in t.values)
            params = " ".join(f"{k}={_short(v)}" for k, v in settings(t).items())
            lines.append(f"    #{t.number:<4} {values:>10}  {t.user_attrs.get(TrialAttr.STOP_REASON, ''):<13} {params}")
    return "\n".join(lines)


def settings(t: FrozenTrial) -> dict[str, Any]:
    """The settings the search chose for trial `t` that had an effect, by field name; the raw
    Optuna parameters for a trial stored without its configuration."""
    r = TrialRecord.of(t)
    config = r.config
    if config is None:
        return dict(t.params)
    searched = r.searched
    used = config.used()
    if searched is None:  # stored before `searched` was recorded: the fields named like a parameter
        searched = [k for k in used if k in t.params]
    return {k: used[k] for k in searched if k in used}


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def list_studies(url: str) -> list[dict[str, Any]]:
    """Every study in the Optuna storage at `url` (resolved, existing): name, trial counts by
    state, the objective metric(s) and best value (the first objective's best; None for a
    study without a completed trial), and when its first trial started. Oldest first."""
    from study.record import StudyAttr, stored_spec
    from study.stores.optuna_storage import open_storage

    storage = open_storage(url)
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        record = stored_spec(study.user_attrs) or {}
        objectives = record.get("objectives") or [record.get("objective") or {}]
        metrics = [o.get("metric", "?") if isinstance(o, dict) else str(o) for o in objectives]
        best = best_trials(study, 1)
        starts = [t.datetime_start for t in trials if t.datetime_start is not None]
        out.append(
            {
                "name": summary.study_name,
                "states": dict(Counter(t.state.name for t in trials)),
                "metric": ", ".join(metrics) if StudyAttr.SPEC in study.user_attrs else "(not an hpstudy study)",
                "best": float(best[0].values[0]) if best else None,
                "started": min(starts) if starts else summary.datetime_start,
            }
        )
    return sorted(out, key=lambda s: (s["started"] is None, s["started"] or 0, s["name"]))
