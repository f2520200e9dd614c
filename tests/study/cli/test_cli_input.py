"""`study` CLI: every bad input exits 2 with one message naming the problem and leaves
nothing behind (no Optuna storage, no mlflow.db, no artifacts); spaces are listed/shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import search_spaces
from study.cli import main

GOOD = "name: s\ndataset: {name: spirals, args: {n_samples: 200}}\nspace: optimizers\nfixed: {epochs: 2}\ntrials: 2\n"

CORPUS = [
    ("trials: 3\n", "field name: Field required"),
    (GOOD + "trails: 3\n", "field trails: unknown field"),
    (GOOD.replace("trials: 2", "trials: 0"), "field trials"),
    (GOOD.replace("optimizers", "no_such_space"), "field space"),
    (GOOD.replace("space: optimizers", "space: nomodule_xyz:func"), "field space"),
    (GOOD.replace("{name: spirals, args: {n_samples: 200}}", "imagenet"), "field dataset: dataset 'imagenet' is neither"),
    (GOOD.replace("{name: spirals, args: {n_samples: 200}}", "/no/such/data.csv"), "field dataset"),
    (GOOD.replace("args: {n_samples: 200}", "args: {n_rows: 200}"), "field dataset: spirals: bad generator argument"),
    (GOOD + "storage: redis://localhost/0\n", "storage 'redis://localhost/0': unknown kind of URL"),
    (GOOD + "storage: sqlite:////no/such/dir/o.db\n", "does not exist"),
    (GOOD + "storage: postgresql://me:hunter2@127.0.0.1:1/optuna\n", "cannot connect"),
    (GOOD + "tracking_uri: http://127.0.0.1:1\n", "MLflow server not reachable"),
    (GOOD + "tracking_uri: s3://bucket\n", "unknown kind of URI"),
    (GOOD.replace("{epochs: 2}", "{epochs: 0}"), "field fixed"),
    (GOOD.replace("{epochs: 2}", "{epoch: 2}"), "field fixed"),
    (GOOD + "enqueue: [{optimizer: adam, lr_adaptive: 0.001, momentum: 0.9}]\n", "field enqueue[0]"),
    (GOOD + "enqueue: [{optimizer: rmsprop_typo}]\n", "field enqueue[0]"),
    (GOOD + "sampler: {name: grid, grid: {optimizer: [sgd, adam]}}\n", "field sampler.grid"),
    (GOOD + "pruner: {name: hyperband, reduction_factor: 1}\n", "field pruner.reduction_factor"),
    (GOOD + "objective: {metric: val_loss, direction: sideways}\n", "field objective.direction"),
    ("name: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), CORPUS, ids=[m for _, m in CORPUS])
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(text)
    assert main(["launch", "spec.yaml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err and "hunter2" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no .hpstudy, mlflow.db, mlruns


def test_bad_flags_and_missing_things(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(GOOD)
    assert main(["launch", "spec.yaml", "--trials", "0"]) == 2
    assert "field trials" in capsys.readouterr().err
    assert main(["launch", "missing.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["resume", "nope"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["status", "nope"]) == 2
    assert main(["space", "show", "no_such_space"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_entry_point_prints_one_line_no_traceback(tmp_path: Path, study_cli: str) -> None:
    (tmp_path / "spec.yaml").write_text(GOOD.replace("trials: 2", "trials: -5"))
    p = subprocess.run([study_cli, "launch", "spec.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: spec.yaml: field trials: Input should be greater than or equal to 1 (got -5)"
    ]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["spec.yaml"]


def test_spaces_and_space_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    for name in search_spaces.builtin():
        assert f"{name}\n" in out
    assert main(["space", "show", "optimizers"]) == 0
    assert capsys.readouterr().out.strip() == search_spaces.load("optimizers").describe().strip()
