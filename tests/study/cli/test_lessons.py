"""Comparisons, lessons and confirmations end to end, as a user runs them: the `study` command
in a subprocess on the session's real local Ray, real MLflow (SQLite) and a real Optuna
journal; small sizes (a few seeds, a few epochs: seconds per study)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import study
from study.cli import main
from study.comparison import lessons
from study.lessons import LESSON_NAMES
from study.record import Tag, TrialAttr

pytestmark = pytest.mark.integration

#: A comparison with a large effect at a small size: dropout shrinks the gap on noisy labels
#: (the dropout lesson at 3 seeds and 8 epochs), each arm at its own lr of a 2-point grid.
COMPARISON = {
    "name": "cmp",
    "dataset": {"name": "gaussian_mixture", "args": {"label_noise": 0.3}},
    "fixed": {"depth": 2, "width": 256, "optimizer": "adam", "batch_size": 32, "epochs": 8},
    "concurrency": 2,
    "compare": {
        "claim": "Dropout reduces the gap between validation and training loss",
        "factor": {"dropout": [0.0, 0.5]},
        "baseline": 0.0,
        "measure": "gap",
        "expect": "lower",
        "seeds": 3,
        "tune_lr": {"grid": [1.0e-3, 3.0e-3], "seeds": 1, "select": "min:val_loss"},
        "also": [{"claim": "Dropout lowers the final validation loss", "measure": "final:val_loss", "expect": "lower"}],
    },
}


def run(cli: str, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cli, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def tracking(workdir: Path) -> str:
    """An absolute URI: MLflow caches its store by URI, so a relative one would point every
    test of this process at the first test's folder."""
    return f"sqlite:///{workdir / 'mlflow.db'}"


def journal(workdir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(workdir / ".hpstudy" / "optuna.journal")))


def parent_and_children(client: MlflowClient, experiment: str, parent_name: str) -> tuple[Any, list[Any]]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.info.run_name == parent_name and "trial_number" not in r.data.tags]
    return parent, [r for r in runs if r.data.tags.get(Tag.PARENT) == parent.info.run_id and "trial_number" in r.data.tags]


def test_a_comparison_runs_on_the_engine_and_ends_with_its_verdict(workdir: Path, study_cli: str, ray_address: str) -> None:
    (workdir / "cmp.yaml").write_text(yaml.safe_dump({**COMPARISON, "tracking_uri": tracking(workdir)}))
    out = run(study_cli, "launch", "cmp.yaml", "--address", ray_address, "--quiet", cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]

    # the verdict from the record alone (Optuna), as study.load returns it
    v = study.load("cmp").verdict()
    assert {"claim", "metric", "effect", "ci_low", "ci_high", "seeds", "outcome"} <= set(v)
    assert v["claim"] == COMPARISON["compare"]["claim"] and v["metric"] == "gap" and v["seeds"] == [0, 1, 2]
    assert v["outcome"] == "supported" and v["ci_high"] < 0 and v["method"] == "paired t-interval"
    assert set(v["lrs"]) == {"dropout=0.0", "dropout=0.5"} and set(v["lrs"].values()) <= {1e-3, 3e-3}
    assert f"verdict of cmp: [SUPPORTED] {v['text']}" in out.stdout  # stated in the CLI at the end of the run
    assert v["also"][0]["claim"] in out.stdout

    # the engine: every run once, never pruned, tuning before the verdict's runs at the chosen lrs
    trials = optuna.load_study(study_name="cmp", storage=journal(workdir)).get_trials()
    assert len(trials) == 2 * 2 * 1 + 2 * 3 and all(t.state == TrialState.COMPLETE for t in trials)
    tune = [t for t in trials if t.user_attrs[TrialAttr.PHASE] == "tune"]
    main_runs = [t for t in trials if t.user_attrs[TrialAttr.PHASE] == "main"]
    assert max(t.number for t in tune) < min(t.number for t in main_runs)
    for t in main_runs:
        (arm,) = t.user_attrs[TrialAttr.ARMS]
        assert t.user_attrs[TrialAttr.CONFIG]["lr"] == v["lrs"][arm] and "gap" in t.user_attrs[TrialAttr.MEASURES]

    # MLflow: the verdict on the parent run, every run nested under it with its measures
    client = MlflowClient(tracking(workdir))
    parent, children = parent_and_children(client, "cmp", "cmp")
    tags = parent.data.tags
    assert tags[Tag.VERDICT] == "supported" and tags[Tag.NOTE] == v["text"]
    for key in ("effect", "ci_low", "ci_high"):
        assert float(tags[key]) == pytest.approx(v[key], rel=1e-5)
    path = client.download_artifacts(parent.info.run_id, "verdict.json", str(workdir))
    stored = json.loads(Path(path).read_text())
    assert stored["text"] == v["text"] and stored["seeds"] == [0, 1, 2] and stored["levels"][0]["level"] == "dropout=0.5"
    assert len(children) == len(trials) and all("measures" in r.data.tags for r in children)

    # the report opens with the verdict, the effect plot and each arm's curves, above the usual plots
    rep = run(study_cli, "report", "cmp", cwd=workdir)
    assert rep.returncode == 0, rep.stderr[-2000:]
    page = (workdir / "cmp-report.html").read_text()
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles[:3] == ["Verdict", "Curves of each arm", "Best trials"]
    assert page.index(v["text"].split(":")[0]) < page.index("<h2>Curves of each arm</h2>")
    figures = workdir / "cmp-report_figures"
    assert (figures / "effect.png").stat().st_size > 5000 and (figures / "arm_curves.png").stat().st_size > 5000


def test_study_lesson_runs_a_lesson_and_resumes_to_its_verdict(workdir: Path, study_cli: str, ray_address: str) -> None:
    args = [
        "lesson",
        "l1_sparsity",
        "--seeds",
        "3",
        "--name",
        "l1",
        "--address",
        ray_address,
        "--quiet",
        "--tracking-uri",
        tracking(workdir),
    ]
    first = run(study_cli, *args, cwd=workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "l1: [SUPPORTED] L1 leaves a larger fraction of near-zero weights than L2 at equal strength" in first.stdout
    v = study.load("l1").verdict()
    assert v["outcome"] == "supported" and v["effect"] > 0.1 and v["seeds"] == [0, 1, 2]  # the lecture's direction
    n = len(optuna.load_study(study_name="l1", storage=journal(workdir)).trials)
    assert n == 6
    again = run(study_cli, *args, cwd=workdir)  # finished: nothing is trained again, the verdict is stated again
    assert again.returncode == 0, again.stderr[-3000:]
    assert v["text"] in again.stdout and len(optuna.load_study(study_name="l1", storage=journal(workdir)).trials) == n
    other = run(study_cli, "lesson", "l1_sparsity", "--seeds", "4", "--name", "l1", "--address", ray_address, cwd=workdir)
    assert other.returncode == 2 and "already exists with a different" in other.stderr


def test_study_lessons_lists_every_lesson_with_its_claim(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lessons"]) == 0
    out = capsys.readouterr().out
    for name, (claim, _) in lessons().items():
        assert re.search(rf"^{name}\s+{re.escape(claim)} \(", out, re.M)
    assert len(LESSON_NAMES) == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lesson", "dropuot"], "unknown lesson 'dropuot'; lessons: deeper, cross_entropy"),
        (["lesson", "dropout", "--seeds", "1"], "--seeds must be at least 2"),
        (["lesson", "dropout", "--dataset", "{name: [x"], "--dataset"),
        (["lesson", "dropout", "--dataset", "imagenet"], "field dataset"),
        (["confirm", "no-such-study"], "launch a study first"),
        (["confirm", "x", "--top", "1"], "--top must be at least 2"),
    ],
)
def test_bad_lesson_and_confirm_input_exits_2_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = sorted(p.name for p in workdir.iterdir())
    assert main([*args, "--storage", f"journal:{workdir / 'j.journal'}"]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in workdir.iterdir()) == before


def test_a_comparison_spec_that_prunes_is_refused(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "p.yaml").write_text(yaml.safe_dump({**COMPARISON, "pruner": "median"}))
    assert main(["launch", "p.yaml"]) == 2
    assert "a comparison never prunes" in capsys.readouterr().err and not (workdir / ".hpstudy").exists()


def test_study_confirm_reruns_the_top_trials_as_nested_runs_and_ranks_them(
    workdir: Path, study_cli: str, ray_address: str, tiny_spec: Any
) -> None:
    spec = tiny_spec(trials=5, storage=None)
    (workdir / "tune.yaml").write_text(yaml.safe_dump(spec))
    tuned = run(study_cli, "launch", "tune.yaml", "--address", ray_address, "--quiet", cwd=workdir)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    before = run(study_cli, "best", "tiny-study", cwd=workdir)
    assert "not confirmed on fresh seeds: `study confirm tiny-study`" in before.stdout
    out = run(study_cli, "confirm", "tiny-study", "--top", "3", "--seeds", "3", "--address", ray_address, "--quiet", cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    name = "tiny-study.confirm-top3-seeds3"
    v = study.load(name).verdict()
    ranking = v["ranking"]
    assert [r["n"] for r in ranking] == [3, 3, 3] and v["seeds"] == [0, 1, 2]
    means = [r["mean"] for r in ranking]
    assert means == sorted(means)  # val_loss: lowest first
    sentence = "distinguishable from the runner-up" if v["distinguishable"] else "not distinguishable from the runner-up"
    assert sentence in out.stdout and v["text"] in out.stdout
    for i, r in enumerate(ranking, 1):  # the ranked table: mean and sd of the objective over the seeds
        assert re.search(rf"^\s+{i}\s+{r['name']}\s+{r['mean']:.4g}\s+{r['sd']:.3g}\s+3\b", out.stdout, re.M)
    base = optuna.load_study(study_name="tiny-study", storage=journal(workdir))
    top3 = sorted((t for t in base.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)[:3]
    assert {r["name"] for r in ranking} == {f"trial-{t.number}" for t in top3} and v["tuning_best"] == f"trial-{top3[0].number}"
    conf = optuna.load_study(study_name=name, storage=journal(workdir))
    for t in conf.trials:  # each re-run is its tuning trial's configuration at a fresh seed
        (arm,) = t.user_attrs[TrialAttr.ARMS]
        tuned_config = next(x for x in top3 if f"trial-{x.number}" == arm).user_attrs[TrialAttr.CONFIG]
        assert {**t.user_attrs[TrialAttr.CONFIG], "seed": 0} == {**tuned_config, "seed": 0}
    # MLflow: nested under the tuning study's parent run, in its experiment; the study's own runs untouched
    client = MlflowClient(tracking(workdir))
    study_parent, study_children = parent_and_children(client, "tiny-study", "tiny-study")
    conf_parent, conf_children = parent_and_children(client, "tiny-study", name)
    assert conf_parent.data.tags[Tag.PARENT] == study_parent.info.run_id and len(study_children) == 5
    assert len(conf_children) == 9 and all(r.data.tags["confirms"] == "tiny-study" for r in conf_children)
    assert conf_parent.data.tags[Tag.VERDICT] == v["outcome"]
    assert client.get_run(study_parent.info.run_id).data.tags[f"{Tag.CONFIRMATION}.{name}"].startswith(v["outcome"])
    assert [e.name for e in client.search_experiments() if e.name.startswith("tiny")] == ["tiny-study"]
    assert len(study.load("tiny-study").runs()) == 5 and len(study.load(name).runs()) == 9
    sel = study.load("tiny-study").selection()  # `study best` says how the winner was chosen, and its confirmation
    assert sel["winner"] == top3[0].number and sel["value"] == top3[0].value and "minimize val_loss" in sel["rule"]
    (c,) = sel["confirmations"]
    assert (c["study"], c["seeds"], c["best"], c["outcome"]) == (name, 3, ranking[0]["name"], v["outcome"])
    assert c["winner_stays_first"] == (ranking[0]["name"] == f"trial-{top3[0].number}")
    after = run(study_cli, "best", "tiny-study", cwd=workdir)
    assert f"winner: trial {top3[0].number}, ranked by minimize val_loss" in after.stdout
    assert f"confirmation {name} (3 fresh seeds): " in after.stdout and "not confirmed" not in after.stdout
    rep = run(study_cli, "report", name, cwd=workdir)  # the ranking first, with each re-run trial's curves
    assert rep.returncode == 0, rep.stderr[-2000:]
    titles = re.findall(r"<h2>([^<]*)</h2>", (workdir / f"{name}-report.html").read_text())
    assert titles[:2] == ["Confirmation: the top trials on fresh seeds", "Curves of each arm"]
    assert (workdir / f"{name}-report_figures" / "arm_curves.png").exists()


def test_a_spec_with_confirm_re_trains_the_winners_when_the_search_ends(
    workdir: Path, study_cli: str, ray_address: str, tiny_spec: Any
) -> None:
    spec = {**tiny_spec(trials=4, storage=None), "confirm": {"top": 2, "seeds": 2}}
    (workdir / "tune.yaml").write_text(yaml.safe_dump(spec))
    out = run(study_cli, "launch", "tune.yaml", "--address", ray_address, "--quiet", cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    name = "tiny-study.confirm-top2-seeds2"
    v = study.load(name).verdict()
    assert v["seeds"] == [0, 1] and [r["n"] for r in v["ranking"]] == [2, 2] and v["text"] in out.stdout
    assert study.load("tiny-study").selection()["confirmations"][0]["study"] == name
    best = run(study_cli, "best", "tiny-study", cwd=workdir)
    assert f"confirmation {name} (2 fresh seeds): " in best.stdout
    again = run(study_cli, "launch", "tune.yaml", "--address", ray_address, "--quiet", cwd=workdir)  # done: nothing re-run
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(optuna.load_study(study_name=name, storage=journal(workdir)).trials) == 4
