"""Measures on hand-made histories, and on a real run through its TrainResult."""

from __future__ import annotations

import math

import pytest

from study.measures import evaluate, measure_result, parse_measure
from trainers import TrainConfig, load_dataset, train


def _row(tl: float, vl: float, ta: float = 0.5, va: float = 0.5, g: tuple = (0.1, 1.0), w: tuple = (3.0, 4.0)) -> dict:
    r = {"train_loss": tl, "val_loss": vl, "train_acc": ta, "val_acc": va, "lr": 0.1, "sparsity": 0.0}
    r.update({f"grad_norm_{i}": x for i, x in enumerate(g)})
    r.update({f"weight_norm_{i}": x for i, x in enumerate(w)})
    return r


# val_loss falls to 0.5 at epoch 3, then rises; train_loss keeps falling
HISTORY = [
    _row(1.0, 1.1, 0.6, 0.55, g=(0.01, 1.0)),
    _row(0.6, 0.8, 0.8, 0.7, g=(0.02, 0.8)),
    _row(0.3, 0.5, 0.9, 0.8),
    _row(0.2, 0.55, 0.95, 0.8),
    _row(0.1, 0.6, 0.97, 0.78, w=(6.0, 8.0)),
]
SUMMARY = {"best_epoch": 3, "stopped_epoch": 5, "n_params": 1234, "test_loss": 0.7, "test_acc": 0.81, "epochs": 5}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("final:val_loss", 0.6),
        ("val_loss", 0.6),
        ("best:val_loss", 0.5),
        ("min:val_loss", 0.5),
        ("max:val_acc", 0.8),
        ("auc:train_loss", (1.0 + 0.6 + 0.3 + 0.2 + 0.1) / 5),
        ("gap", 0.6 - 0.1),
        ("final:gap", 0.6 - 0.1),
        ("gap_at_best", 0.5 - 0.3),
        ("acc_gap", 0.97 - 0.78),
        ("grad_ratio@1", 100.0),
        ("grad_ratio@2", 40.0),
        ("log10:grad_ratio@1", 2.0),
        ("val_acc@4", 0.8),
        ("weight_norm_total", 10.0),  # sqrt(6^2 + 8^2)
        ("weight_norm_total@1", 5.0),
        ("grad_norm_total@1", math.hypot(0.01, 1.0)),
        ("epochs_to:train_loss<=0.3", 3.0),
        ("epochs_to:train_loss<0.3", 4.0),
        ("epochs_to:val_acc>=0.8", 3.0),
        ("epochs_to:train_loss<=0.01", 6.0),  # never: censored at epochs + 1
        ("test_acc", 0.81),
        ("n_params", 1234.0),
        ("best_epoch", 3.0),
        ("sparsity", 0.0),
    ],
)
def test_measure_values(text: str, value: float) -> None:
    assert evaluate(text, HISTORY, SUMMARY) == pytest.approx(value)


def test_early_stopping_replay_measures() -> None:
    # patience 1: epoch 4 does not improve on 0.5, so it stops after epoch 4 and keeps epoch 3
    assert evaluate("es_stop:1", HISTORY) == 4
    assert evaluate("es_kept:1", HISTORY) == pytest.approx(0.5)
    assert evaluate("es_regret:1", HISTORY) == pytest.approx(0.0)
    assert evaluate("es_saved:1", HISTORY) == pytest.approx(1 / 5)
    # a curve whose minimum comes after a two-epoch plateau: patience 2 stops too early
    late = [_row(1, v) for v in (1.0, 0.8, 0.9, 0.85, 0.4, 0.45)]
    assert evaluate("es_stop:2", late) == 4
    assert evaluate("es_kept:2", late) == pytest.approx(0.8)
    assert evaluate("es_regret:2", late) == pytest.approx(0.4)
    assert evaluate("es_regret:3", late) == pytest.approx(0.0)
    assert evaluate("es_stop:3", late) == 6 and evaluate("es_saved:3", late) == 0.0


def test_best_epoch_without_a_summary_follows_the_loop_rule() -> None:
    tie = [_row(1, v) for v in (0.9, 0.7, 0.7, 0.8)]  # a tie is not an improvement: epoch 2 stays best
    assert evaluate("best:val_loss", tie) == pytest.approx(0.7)
    assert evaluate("best:train_loss", [_row(t, v) for t, v in ((0.5, 0.9), (0.4, 0.7), (0.3, 0.7))]) == pytest.approx(0.4)


def test_a_diverged_run() -> None:
    diverged = [_row(1.0, 1.0), _row(0.5, 0.6), _row(math.nan, math.nan)]
    assert math.isnan(evaluate("final:val_loss", diverged))  # the verdict leaves this seed out
    assert evaluate("min:val_loss", diverged) == pytest.approx(0.6)
    assert evaluate("epochs_to:train_loss<=0.1", diverged, {"epochs": 20}) == 21  # slower than any run that gets there
    assert math.isnan(evaluate("val_loss@5", diverged, {"epochs": 20}))
    assert evaluate("es_stop:5", diverged) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "measure must be a non-empty string"),
        ("final:val_los", "unknown key 'val_los'"),
        ("mean:val_loss", "unknown form 'mean'; allowed forms: final:KEY"),
        ("val_loss@0", "the epoch after @ must be an integer >= 1, got '0'"),
        ("epochs_to:train_loss=0.1", "epochs_to needs KEY<=X"),
        ("es_kept:0", "es_kept needs a patience, an integer >= 1"),
        ("accuracy", "is not one of the forms"),
    ],
)
def test_bad_measures_name_the_allowed_forms(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_measure(text)


def test_missing_keys_and_epochs_beyond_the_run() -> None:
    with pytest.raises(ValueError, match="the history has no 'grad_norm_7'"):
        evaluate("grad_norm_7", HISTORY)
    with pytest.raises(ValueError, match="epoch 9 is beyond the run's 5 epochs"):
        evaluate("val_loss@9", HISTORY, SUMMARY)
    with pytest.raises(ValueError, match="needs at least one epoch"):
        evaluate("gap", [])


def test_on_a_real_run() -> None:
    data = load_dataset("digits", test=0.2)
    res = train(TrainConfig(depth=2, width=16, epochs=3, seed=1), data)
    last = res.history[-1]
    assert measure_result("gap", res) == pytest.approx(last.val_loss - last.train_loss)
    assert measure_result("grad_ratio@1", res) == pytest.approx(res.history[0].grad_norm[-1] / res.history[0].grad_norm[0])
    assert measure_result("test_acc", res) == pytest.approx(res.test_acc)
    assert measure_result("best:val_loss", res) == pytest.approx(res.history[res.best_epoch - 1].val_loss)
    assert measure_result("weight_norm_total", res) == pytest.approx(math.sqrt(sum(w * w for w in last.weight_norm)))
    assert evaluate("val_acc", res.history) == pytest.approx(last.val_acc)  # EpochRecords work as rows too
