"""What a study looks like in its storage: counts by state and stop reason, the best trials,
the running ones and their epoch. Read-only; used by `study status` and after a launch."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from study.record import TrialAttr, TrialRecord


def best_trials(study: optuna.Study, k: int = 5) -> list[FrozenTrial]:
    """The `k` best completed trials (the Pareto front for several objectives)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(study.directions) > 1:
        return list(study.best_trials)[:k]
    sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
    return sorted(done, key=lambda t: sign * float(t.value))[:k]  # type: ignore[arg-type]


def summarize(study: optuna.Study, target: int | None = None) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    running = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            epoch = max(t.intermediate_values) if t.intermediate_values else 0
            running.append({"number": t.number, "epoch": epoch, "value": t.intermediate_values.get(epoch)})
    return {
        "name": study.study_name,
        "states": dict(Counter(t.state.name for t in trials)),
        "stop_reasons": dict(Counter(t.user_attrs.get(TrialAttr.STOP_REASON, "-") for t in trials if t.state.is_finished())),
        "finished": sum(TrialRecord.of(t).counted for t in trials),
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
            params = " ".join(f"{k}={_short(v)}" for k, v in t.params.items())
            lines.append(f"    #{t.number:<4} {values:>10}  {t.user_attrs.get(TrialAttr.STOP_REASON, ''):<13} {params}")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
