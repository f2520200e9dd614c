"""The HTML report from real (small) training runs, without Ray or MLflow."""

from __future__ import annotations

import pandas as pd
import pytest

from study.query.report import build_report
from trainers import TrainConfig, load_dataset, train

PNG = b"\x89PNG\r\n\x1a\n"


def _frames(configs: list[TrainConfig]) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_dataset("digits")
    rows, curves = [], []
    for n, cfg in enumerate(configs):
        r = train(cfg, data)
        best = r.best
        rows.append(
            {
                "number": n,
                "state": "COMPLETE" if r.stop_reason != "diverged" else "FAIL",
                "stop_reason": r.stop_reason,
                "value": best.val_loss if best else None,
                "best_epoch": r.best_epoch,
                "stopped_epoch": r.stopped_epoch,
                "gap_at_best": best.val_loss - best.train_loss if best else None,
                "n_params": r.n_params,
                **cfg.to_dict(),
            }
        )
        for rec in r.history:
            curves.append({"trial": n, "epoch": rec.epoch, **rec.metrics()})
    trials = pd.DataFrame(rows).sort_values("value", na_position="last").reset_index(drop=True)
    trials.attrs["hyperparameters"] = ["depth", "width", "activation", "optimizer", "dropout", "l2"]
    return trials, pd.DataFrame(curves)


@pytest.fixture(scope="module")
def frames():
    base = TrainConfig(depth=1, width=16, epochs=4, lr=0.01)
    configs = [
        base,
        base.replace(depth=3, activation="sigmoid", dropout=0.3),
        base.replace(depth=2, width=32, optimizer="momentum", lr=0.05, l2=1e-3),
        base.replace(activation="tanh", dropout=0.1, patience=1),
        base.replace(optimizer="sgd", lr=1e7),  # diverges
    ]
    return _frames(configs)


def test_report_has_every_section_with_real_figures(frames, tmp_path) -> None:
    trials, curves = frames
    rep = build_report("demo", trials, curves, tmp_path / "report.html", importance={"lr": 0.6, "depth": 0.3, "dropout": 0.1})
    titles = [s.title for s in rep.sections]
    assert titles == [
        "Best trials",
        "Training vs validation curves",
        "Generalization gap vs regularization",
        "Depth vs width",
        "Optimizer and schedule",
        "Per-layer gradient norms by activation and depth",
        "Early-stopping replay",
        "Hyperparameter importance",
    ]
    names = sorted(p.name for p in rep.figures)
    assert names == ["curves.png", "depth_width.png", "gap.png", "grad_norms.png", "importance.png", "optimizer_schedule.png"]
    for p in rep.figures:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    page = rep.html_path.read_text()
    assert page.count("data:image/png;base64,") == 6  # self-contained
    assert "schedule" in page and "did not vary" not in page
    replay = next(s for s in rep.sections if s.title == "Early-stopping replay")
    assert "<table" in replay.table


def test_replay_counts_only_completed_and_diverged_trials_as_exact(frames, tmp_path) -> None:
    trials, curves = frames
    trials = trials.copy()
    trials.loc[trials["stop_reason"] == "completed", "stop_reason"] = ["pruned"] + ["completed"] * (
        int((trials["stop_reason"] == "completed").sum()) - 1
    )
    n_exact = int(trials["stop_reason"].isin(["completed", "diverged"]).sum())
    rep = build_report("demo", trials, curves, tmp_path / "r.html")
    replay = next(s for s in rep.sections if s.title == "Early-stopping replay")
    assert f"{n_exact} of 5 trials ran to their end" in replay.text
    assert n_exact < 5


def test_sections_without_data_say_so(frames, tmp_path) -> None:
    trials, curves = frames
    same = trials.assign(dropout=0.0, l1=0.0, l2=0.0, weight_decay=0.0, optimizer="adam", schedule="constant", depth=1, width=16)
    rep = build_report("flat", same, curves, tmp_path / "r.html")
    empty = {s.title: s.empty for s in rep.sections if s.empty}
    assert "Generalization gap vs regularization" in empty
    assert "Depth vs width" in empty and "Optimizer and schedule" in empty
    assert "Hyperparameter importance" in empty
    assert all(f'class="empty">{m}' in rep.html_path.read_text() for m in empty.values())
