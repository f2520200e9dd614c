"""Managing the studies of a storage: ``study list`` and ``study delete NAME``.

study list [--storage URL]
study delete NAME [--yes] [--storage URL] [--tracking-uri URI]

`delete` removes the study from both stores (see `study.stores.delete`): first its MLflow
runs and experiment, then the Optuna study. It asks first (``--yes`` skips the question);
a name that is not in the storage, or a study a live driver is running, deletes nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from study.spec import SpecError
from study.stores.uris import STORAGE_ENV, mask


def add_commands(sub: Any) -> None:
    listing = sub.add_parser("list", help="the studies in a storage: trials by state, best value, when started")
    listing.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    listing.set_defaults(func=list_command)
    delete = sub.add_parser("delete", help="delete a study from Optuna storage and MLflow (asks first)")
    delete.add_argument("name", help="the study to delete (its name as `study list` shows it)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--storage", help=f"Optuna storage URL (default: env {STORAGE_ENV}, else .hpstudy/optuna.journal)")
    delete.add_argument(
        "--tracking-uri", dest="tracking_uri", help="MLflow tracking URI (default: the one the study was launched with)"
    )
    delete.set_defaults(func=delete_command)


def list_command(args: argparse.Namespace) -> int:
    from study.query.status import list_studies
    from study.stores.uris import check_storage

    url = check_storage(args.storage, must_exist=True)
    studies = list_studies(url)
    if not studies:
        print(f"no studies in {mask(url)}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"studies in {mask(url)}", title_justify="left")
    for c, justify in (
        ("name", "left"),
        ("trials by state", "left"),
        ("objective", "left"),
        ("best", "right"),
        ("started", "left"),
    ):
        table.add_column(c, justify=justify)  # type: ignore[arg-type]
    for s in studies:
        states = ", ".join(f"{n} {k.lower()}" for k, n in sorted(s["states"].items())) or "none"
        best = "" if s["best"] is None else f"{s['best']:.4g}"
        started = s["started"].strftime("%Y-%m-%d %H:%M") if s["started"] is not None else ""
        table.add_row(s["name"], states, s["metric"], best, started)
    Console().print(table)
    return 0


def delete_command(args: argparse.Namespace) -> int:
    from study.record import StudyAttr
    from study.run.lease import live_drivers
    from study.stores.delete import delete_mlflow, delete_optuna, find_mlflow
    from study.stores.optuna_storage import load_stored
    from study.stores.uris import check_tracking, unmasked_tracking

    study, spec, url = load_stored(args.name, args.storage)  # SpecError naming the study when it is not there
    others = live_drivers(study.user_attrs)
    if others:
        raise SpecError(f"study {args.name!r} is being run by {others[0]}; stop it first (nothing deleted)")
    tracking = args.tracking_uri or unmasked_tracking(spec.tracking_uri)
    check_tracking(tracking)
    uid = str(study.user_attrs.get(StudyAttr.UID, ""))
    confirms = spec.compare.confirms if spec.compare is not None else None
    experiment = confirms.study if confirms is not None else args.name  # a confirmation is nested in its study's
    part = find_mlflow(tracking, args.name, uid, study.user_attrs.get(StudyAttr.PARENT_RUN), experiment)
    n_trials = len(study.get_trials(deepcopy=False))
    if part.experiment_id is None:
        mlflow_text = f"nothing in MLflow ({mask(tracking)}: no experiment {experiment!r})"
    elif part.whole_experiment:
        mlflow_text = f"MLflow experiment {experiment!r} and its {len(part.run_ids)} run(s) in {mask(tracking)}"
    else:
        mlflow_text = (
            f"{len(part.run_ids)} run(s) of MLflow experiment {experiment!r} in {mask(tracking)} "
            "(the experiment holds other runs too, and stays)"
        )
    print(f"This deletes study {args.name!r}: {n_trials} trial(s) in Optuna storage {mask(url)}, and {mlflow_text}.")
    if not args.yes and not _confirm(f"Delete study {args.name!r}? Type the study's name to confirm: ", args.name):
        print("nothing deleted", file=sys.stderr)
        return 1
    delete_mlflow(tracking, part, args.name, uid)
    delete_optuna(url, args.name)
    print(
        f"deleted study {args.name!r}" + ("" if part.experiment_id is None else "; MLflow keeps deleted runs until `mlflow gc`")
    )
    return 0


def _confirm(question: str, name: str) -> bool:
    try:
        answer = input(question)
    except EOFError:  # no terminal and no --yes
        return False
    return answer.strip() == name
