"""Confirmation re-runs: are a tuning study's winners still winners on fresh seeds?

A tuning study scores each configuration once, on one seed, and picks the best of many: the
winner's score is biased up by the selection and by its seed's luck. `confirm` re-trains the
top K completed configurations (their stored config JSON; the study's dataset, backend and
any model/trainer) on N fresh seeds, as a comparison on the same engine (Ray, concurrency,
resume, MLflow): a study named ``NAME.confirm-topK-seedsN`` whose arms are the trials
(``trial-12``, ...), never pruned, measured by the study's objective (``best:METRIC`` or
``final:METRIC`` after its scope). Its MLflow parent run is nested under the tuning study's
parent run, in the same experiment, and every confirmation run is tagged ``confirms``.

Its conclusion is a ranking (`study.query.verdicts.rank`, through
``conclude=study.query.verdict_report.conclude``): the arms by mean over the seeds, and
whether the best is distinguishable from the runner-up (paired by seed, Holm over the
others); "inconclusive" when it is not. A search can call `confirm` at its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from study.record import StudyAttr, TrialRecord
from study.run.design import Conclude
from study.run.driver import Listener
from study.run.launch import ExecutorFactory, RunResult, ray_executor, run_study
from study.run.prepare import prepare
from study.spec import SpecError, parse_spec
from study.stores import optuna_storage
from study.stores.uris import mask, unmasked_tracking, with_env_defaults

#: Fields of the tuning study's spec a confirmation does not take over: it searches nothing.
_SEARCH_FIELDS = (
    "name",
    "space",
    "fixed",
    "sampler",
    "pruner",
    "trials",
    "enqueue",
    "objectives",
    "compare",
    "confirm",
    "storage",
)


def confirmation_name(name: str, top: int, seeds: int) -> str:
    return f"{name}.confirm-top{top}-seeds{seeds}"


def confirmation_spec(
    name: str, storage: str | None = None, *, top: int = 3, seeds: int = 5, confirm_name: str | None = None
) -> dict[str, Any]:
    """The spec (a plain mapping) of the confirmation of tuning study `name`: its `top` best
    completed trials as the arms, `seeds` fresh seeds each. SpecError if the study is no
    single-objective tuning study with at least two completed trials."""
    return _confirmation(name, storage, top=top, seeds=seeds, confirm_name=confirm_name)[0]


def _confirmation(
    name: str, storage: str | None, *, top: int, seeds: int, confirm_name: str | None
) -> tuple[dict[str, Any], optuna.Study]:
    """`confirmation_spec` and the tuning study it was read from (open, to record the
    confirmation on it without reading the storage again)."""
    if top < 2:
        raise SpecError(f"--top must be at least 2 (the winner and a runner-up), got {top}")
    if seeds < 2:
        raise SpecError(f"--seeds must be at least 2 (an interval over seeds needs two), got {seeds}")
    study, spec, url = optuna_storage.load_stored(name, storage)
    if spec.compare is not None:
        raise SpecError(f"study {name!r} is a comparison: confirm re-trains the top trials of a tuning study")
    if spec.code is not None:  # its arms would be TrainConfigs: the model's or trainer's own values would be lost
        raise SpecError(
            f"study {name!r} runs your own {spec.code[0]} ({spec.code[1]}): confirm re-trains TrainConfig arms on the "
            "built-in MLP and cannot carry its own parameters yet"
        )
    if spec.is_multi_objective:
        raise SpecError(f"study {name!r} has {len(spec.all_objectives)} objectives: confirm ranks by one")
    objective = spec.objective
    done = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    done = [r for r in done if r.config is not None and r.values]
    if len(done) < 2:
        raise SpecError(f"study {name!r} has {len(done)} completed trial(s) with a stored configuration; confirm needs 2")
    sign = -1.0 if objective.resolved_direction == "maximize" else 1.0
    best = sorted(done, key=lambda r: (sign * r.values[0], r.number))[:top]  # type: ignore[index]
    levels = {}
    for r in best:
        assert r.config is not None
        levels[f"trial-{r.number}"] = {k: v for k, v in r.config.to_dict().items() if k != "seed"}
    metric = objective.metric
    measure = metric if metric == "n_params" else f"{'best' if objective.scope == 'best' else 'final'}:{metric}"
    record = spec.model_dump(mode="json")
    data = {k: v for k, v in record.items() if k not in _SEARCH_FIELDS}
    data["tracking_uri"] = unmasked_tracking(spec.tracking_uri)
    winner = f"trial-{best[0].number}"
    data.update(
        name=confirm_name or confirmation_name(name, len(best), seeds),
        storage=url,
        fixed={},
        compare={
            "claim": f"{winner}, the best of {name}, stays best on fresh seeds",
            "levels": levels,
            "baseline": winner,
            "measure": measure,
            "expect": "higher" if objective.resolved_direction == "minimize" else "lower",
            "seeds": seeds,
            "confirms": {"study": name, "goal": objective.resolved_direction},
        },
    )
    return data, study


def remember(study: optuna.Study, confirmation: str) -> None:
    """Record on tuning study `study` that study `confirmation` confirms it (study user attr
    `StudyAttr.CONFIRMATIONS`): `study best` finds it without listing the storage's studies."""
    known = study.user_attrs.get(StudyAttr.CONFIRMATIONS) or []
    if confirmation not in known:
        study.set_user_attr(StudyAttr.CONFIRMATIONS, [*known, confirmation])


def confirm(
    name: str,
    *,
    top: int = 3,
    seeds: int = 5,
    storage: str | None = None,
    tracking_uri: str | None = None,
    confirm_name: str | None = None,
    concurrency: int | None = None,
    address: str | None = None,
    executor: ExecutorFactory | None = None,
    listener: Listener | None = None,
    conclude: Conclude | None = None,
    say: Callable[[str], None] = print,
) -> RunResult:
    """Re-train the top `top` trials of tuning study `name` on `seeds` fresh seeds (see the
    module); resumable (a second call with the same arguments finishes what is left, or only
    concludes). ``conclude=study.query.verdict_report.conclude`` ranks them and records the
    ranking on the confirmation's MLflow parent run (`RunResult.verdict`)."""
    data, tuned = _confirmation(name, storage, top=top, seeds=seeds, confirm_name=confirm_name)
    if tracking_uri is not None:
        data["tracking_uri"] = tracking_uri
    spec = parse_spec(data, source=f"confirmation of {name!r}")
    spec = with_env_defaults(spec, spec.storage, tracking_uri).with_overrides(concurrency=concurrency)
    prep = prepare(spec)
    remember(tuned, spec.name)
    say(
        f"confirming the top {len(spec.compare.arms()) if spec.compare else 0} trials of {name} over {seeds} seeds "
        f"as study {spec.name} ({spec.trials} runs; MLflow {mask(spec.tracking_uri)})"
    )
    return run_study(prep, executor=executor or ray_executor(address), listener=listener, say=say, conclude=conclude)
