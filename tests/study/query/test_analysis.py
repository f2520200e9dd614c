"""study.query.curves, .replay and .audit on constructed curves whose answers are worked out by hand in the comments,
plus a differential check of the early-stopping replay against the real trainers.loop."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from study.query import audit, curves, replay


def curve(val_loss, train_loss=None, val_acc=None, trial=None):
    """A curve frame with epochs 1..n; train_loss defaults to a falling line."""
    n = len(val_loss)
    d = {
        "epoch": np.arange(1, n + 1),
        "train_loss": train_loss if train_loss is not None else np.linspace(1.0, 0.1, n),
        "val_loss": val_loss,
        "val_acc": val_acc if val_acc is not None else np.full(n, 0.5),
    }
    df = pd.DataFrame(d)
    if trial is not None:
        df.insert(0, "trial", trial)
    return df


# -- best epoch --------------------------------------------------------------------------------


def test_best_epoch_val_loss_min_delta():
    # val = 1.0, 0.8, 0.75, 0.72, 0.74, 0.71
    # min_delta 0: improvements at 1, 2, 3, 4, 6 -> best epoch 6 (0.71)
    # min_delta 0.05: 1 (from inf); 2: 0.8 < 1.0-0.05 yes; 3: 0.75 < 0.8-0.05=0.75 no;
    #   4: 0.72 < 0.75 yes; 5 no; 6: 0.71 < 0.72-0.05=0.67 no -> best epoch 4 (0.72)
    val = [1.0, 0.8, 0.75, 0.72, 0.74, 0.71]
    assert curves.best_epoch(val) == 6
    assert curves.best_epoch(val, min_delta=0.05) == 4
    s = curves.summarize_trial(curve(val), min_delta=0.05)
    assert s["best_epoch"] == 4 and s["best_value"] == pytest.approx(0.72)


def test_best_epoch_ties_and_exact_boundary():
    # ties are no improvement, first best wins: 1.0, 0.5, 0.5, 0.75 -> epoch 2
    assert curves.best_epoch([1.0, 0.5, 0.5, 0.75]) == 2
    # improvement must be by MORE than min_delta (binary-exact values):
    # 1.0; 0.75 < 1.0-0.25=0.75 no; 0.5 < 0.75 yes -> epoch 3
    assert curves.best_epoch([1.0, 0.75, 0.5], min_delta=0.25) == 3
    # a NaN epoch is a divergence: the run ends there, never the best
    assert curves.best_epoch([1.0, 0.5, math.nan, 0.1]) == 2
    assert curves.best_epoch([math.nan]) is None


def test_best_epoch_val_acc_monitor():
    # acc = 0.5, 0.7, 0.72, 0.74, 0.6
    # min_delta 0: rises to epoch 4 -> 4
    # min_delta 0.05: 1: 0.5; 2: 0.7 > 0.55 yes; 3: 0.72 > 0.75 no; 4: 0.74 > 0.75 no -> 2
    acc = [0.5, 0.7, 0.72, 0.74, 0.6]
    assert curves.best_epoch(acc, monitor="val_acc") == 4
    assert curves.best_epoch(acc, monitor="val_acc", min_delta=0.05) == 2
    # the same frame by val_loss: val_loss falls throughout -> epoch 5, so the monitor matters
    c = curve([1.0, 0.9, 0.8, 0.7, 0.6], val_acc=acc)
    assert curves.summarize_trial(c, monitor="val_acc", min_delta=0.05)["best_epoch"] == 2
    assert curves.summarize_trial(c, monitor="val_acc")["best_value"] == pytest.approx(0.74)
    assert curves.summarize_trial(c, monitor="val_loss")["best_epoch"] == 5


# -- overfitting onset and gap -------------------------------------------------------------------

# epoch:  1    2    3    4     5     6     7     8
TRAIN = [1.0, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25]
VAL = [1.1, 0.9, 0.8, 0.85, 0.82, 0.9, 0.95, 1.0]


def test_onset_tolerates_noise_after_the_minimum():
    # e=1, 2: a later val (0.8) is below theirs -> no.
    # e=3 (val 0.8, train 0.6): later val 0.85, 0.82, 0.9, 0.95, 1.0 all > 0.8 (the dip at 5
    # stays above), later train all < 0.6 -> onset 3, with 5 epochs after it.
    # (a "monotone to the end" rule would wrongly answer 5.)
    assert curves.overfitting_onset(TRAIN, VAL) == 3
    assert curves.overfitting_onset(TRAIN, VAL, min_run=5) == 3
    assert curves.overfitting_onset(TRAIN, VAL, min_run=6) is None


def test_onset_none_when_val_comes_back_or_train_does_not_fall():
    # val returns below its epoch-2 level at epoch 5 (0.79 < 0.8): e=2 fails; e=5 (0.79) is
    # followed by 0.85 > 0.79 and train 0.5 < 0.6, but only 1 epoch after it
    tr, va = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], [1.0, 0.8, 0.9, 0.95, 0.79, 0.85]
    assert curves.overfitting_onset(tr, va, min_run=3) is None
    assert curves.overfitting_onset(tr, va, min_run=1) == 5
    # val rises after epoch 2 but train rises too (0.85 > 0.8; after 3: 0.9 > 0.85): no onset
    assert curves.overfitting_onset([1.0, 0.8, 0.85, 0.9, 0.95], [1.0, 0.7, 0.8, 0.9, 1.0], min_run=1) is None
    # val coming back to exactly its epoch-2 level (0.7 at epoch 4) is not "staying above":
    # e=2 fails, e=4 (0.7, then 0.9) is the onset
    assert curves.overfitting_onset([1.0, 0.8, 0.7, 0.6, 0.5], [1.0, 0.7, 0.8, 0.7, 0.9], min_run=1) == 4
    # train flat at its epoch-2 level (0.8 at epoch 3) is not "falling": e=2 fails, onset 3
    assert curves.overfitting_onset([1.0, 0.8, 0.8, 0.6, 0.5], [1.0, 0.7, 0.8, 0.9, 1.0], min_run=1) == 3
    # the same val with train falling: onset 2
    assert curves.overfitting_onset([1.0, 0.8, 0.7, 0.6, 0.5], [1.0, 0.7, 0.8, 0.9, 1.0], min_run=1) == 2


def test_onset_ignores_the_diverged_tail():
    # finite prefix = epochs 1..4; e=2: later val 0.8, 0.9 > 0.7, train 0.6, 0.5 < 0.8 -> 2 epochs after
    tr, va = [1.0, 0.8, 0.6, 0.5, math.nan], [1.0, 0.7, 0.8, 0.9, math.inf]
    assert curves.overfitting_onset(tr, va, min_run=2) == 2
    assert curves.overfitting_onset(tr, va, min_run=3) is None


def test_summarize_trial_onset_gap_and_epoch_numbers():
    # best by val_loss = epoch 3 (0.8): gap = 0.8 - 0.6 = 0.2; last: 1.0 - 0.25 = 0.75
    s = curves.summarize_trial(curve(VAL, TRAIN))
    assert s["best_epoch"] == 3 and s["onset_epoch"] == 3 and s["stopped_epoch"] == 8
    assert s["gap_at_best"] == pytest.approx(0.2)
    assert s["gap_at_last"] == pytest.approx(0.75)
    assert s["diverged"] is False
    # epochs are read from the column, rows may come unsorted: same curve numbered 11..18, shuffled
    c = curve(VAL, TRAIN)
    c["epoch"] += 10
    s2 = curves.summarize_trial(c.sample(frac=1.0, random_state=0))
    assert (s2["best_epoch"], s2["onset_epoch"], s2["stopped_epoch"]) == (13, 13, 18)
    assert s2["gap_at_best"] == pytest.approx(0.2)


def test_summarize_long_frame():
    # trial 7 = the curve above; trial 2 diverges at epoch 3 with best at 2 (0.7, gap 0.7-0.8=-0.1)
    long = pd.concat([curve(VAL, TRAIN, trial=7), curve([0.9, 0.7, math.nan], [1.0, 0.8, math.nan], trial=2)])
    out = curves.summarize(long)
    assert list(out["trial"]) == [2, 7]
    r2, r7 = out.iloc[0], out.iloc[1]
    assert r2["best_epoch"] == 2 and r2["stopped_epoch"] == 3 and bool(r2["diverged"])
    assert r2["gap_at_best"] == pytest.approx(-0.1) and math.isnan(r2["gap_at_last"])
    assert pd.isna(r2["onset_epoch"])
    assert r7["onset_epoch"] == 3 and r7["gap_at_last"] == pytest.approx(0.75)
    assert str(out["best_epoch"].dtype) == "Int64"


# -- early-stopping replay ---------------------------------------------------------------------

# trial "A", 10 epochs. min_delta 0, since-best counter after each epoch:
# epoch: 1    2    3     4     5    6     7     8     9     10
# val:  1.0  0.8  0.85  0.82  0.7  0.75  0.72  0.74  0.69  0.9
# since: 0    0    1     2     0    1     2     3     0     1
# hindsight best 0.69 at epoch 9
VAL_A = [1.0, 0.8, 0.85, 0.82, 0.7, 0.75, 0.72, 0.74, 0.69, 0.9]
# trial "B", 6 epochs:
# val:  0.9  0.75  0.78  0.72  0.73  0.74
# since: 0    0     1     0     1     2        hindsight 0.72 at epoch 4
VAL_B = [0.9, 0.75, 0.78, 0.72, 0.73, 0.74]


def two_trials():
    return pd.concat([curve(VAL_A, trial="A"), curve(VAL_B, trial="B")], ignore_index=True)


def row(df, trial, patience):
    r = df[(df["trial"] == trial) & (df["patience"] == patience)]
    assert len(r) == 1
    return r.iloc[0]


@pytest.mark.parametrize(
    "patience, stop, fired, kept_epoch, kept, saved, regret",
    [
        # p=1: since hits 1 at epoch 3 -> stop 3, keep epoch 2 (0.8), saved 10-3=7, regret 0.8-0.69
        (1, 3, True, 2, 0.8, 7, 0.11),
        # p=2: since hits 2 at epoch 4 -> stop 4, keep 0.8, saved 6
        (2, 4, True, 2, 0.8, 6, 0.11),
        # p=3: since hits 3 at epoch 8 -> stop 8, keep epoch 5 (0.7), saved 2, regret 0.01
        (3, 8, True, 5, 0.7, 2, 0.01),
        # p=4: never -> runs to 10, keeps epoch 9 (0.69), nothing saved, no regret
        (4, 10, False, 9, 0.69, 0, 0.0),
    ],
)
def test_replay_patiences_by_hand(patience, stop, fired, kept_epoch, kept, saved, regret):
    out = replay.replay_early_stopping(two_trials(), [1, 2, 3, 4])
    r = row(out, "A", patience)
    assert (r["stop_epoch"], bool(r["fired"]), r["kept_epoch"], r["epochs_saved"]) == (stop, fired, kept_epoch, saved)
    assert r["kept_value"] == pytest.approx(kept)
    assert r["regret"] == pytest.approx(regret, abs=1e-12)
    assert (r["hindsight_epoch"], r["stopped_epoch"]) == (9, 10)
    assert curves.stop_epoch(VAL_A, patience) == stop


def test_replay_min_delta():
    # min_delta 0.05, p=4: 1: 1.0; 2: 0.8 < 0.95 yes; 3, 4 no (since 1, 2); 5: 0.7 < 0.75 yes;
    # 6, 7, 8 no (1, 2, 3); 9: 0.69 < 0.65 no (4) -> stop 9, keep epoch 5 (0.7), saved 1, regret 0.01
    out = replay.replay_early_stopping(two_trials(), [4], min_delta=0.05)
    r = row(out, "A", 4)
    assert (r["stop_epoch"], r["kept_epoch"], r["epochs_saved"]) == (9, 5, 1)
    assert r["kept_value"] == pytest.approx(0.7) and r["regret"] == pytest.approx(0.01)


def test_replay_val_acc_regret_is_positive():
    # acc 0.5, 0.6, 0.55, 0.58, 0.7; p=2: since 0,0,1,2 -> stop 4, keep 0.6 (epoch 2);
    # hindsight max 0.7 at 5 -> regret 0.7 - 0.6 = 0.1 (not -0.1). p=3: runs to 5, keeps 0.7, regret 0
    c = curve([1.0, 0.9, 0.8, 0.7, 0.6], val_acc=[0.5, 0.6, 0.55, 0.58, 0.7], trial=0)
    out = replay.replay_early_stopping(c, [2, 3], monitor="val_acc")
    r2, r3 = row(out, 0, 2), row(out, 0, 3)
    assert (r2["stop_epoch"], r2["kept_epoch"], r2["hindsight_epoch"]) == (4, 2, 5)
    assert r2["regret"] == pytest.approx(0.1)
    assert (r3["stop_epoch"], r3["kept_epoch"]) == (5, 5) and r3["regret"] == pytest.approx(0.0)


def test_replay_divergence_ends_the_run():
    # val 1.0, 0.9, 0.95, nan: p=5 stops at the divergence (epoch 4), not fired, keeps 0.9;
    # p=1: since 1 at epoch 3 -> stop 3 fired, saved 4-3 = 1; hindsight 0.9 (nan excluded)
    c = curve([1.0, 0.9, 0.95, math.nan], train_loss=[1.0, 0.8, 0.7, math.nan], trial=0)
    out = replay.replay_early_stopping(c, [1, 5])
    r1, r5 = row(out, 0, 1), row(out, 0, 5)
    assert (r5["stop_epoch"], bool(r5["fired"]), r5["kept_epoch"], r5["regret"]) == (4, False, 2, 0.0)
    assert (r1["stop_epoch"], bool(r1["fired"]), r1["epochs_saved"]) == (3, True, 1)
    assert r1["hindsight_value"] == pytest.approx(0.9)


def test_replay_exact_flag():
    long = pd.concat([curve(VAL_A, trial=0), curve(VAL_B, trial=1), curve([1.0, 0.9, math.nan], trial=2)])
    exact = lambda df: dict(zip(df["trial"], df["exact"], strict=True))  # noqa: E731
    # from stop reasons: completed and diverged ran to their own end; early_stopped did not
    out = replay.replay_early_stopping(long, [2], stop_reasons={0: "completed", 1: "early_stopped", 2: "diverged"})
    assert exact(out) == {0: True, 1: False, 2: True}
    # explicit flags win as given
    out = replay.replay_early_stopping(long, [2], replayable={0: False, 1: True, 2: False})
    assert exact(out) == {0: False, 1: True, 2: False}
    # a stop_reason column in the frame is used when nothing is passed
    long2 = long.assign(stop_reason=long["trial"].map({0: "stopped_by_caller", 1: "completed", 2: "early_stopped"}))
    assert exact(replay.replay_early_stopping(long2, [2])) == {0: False, 1: True, 2: False}
    # unknown otherwise
    assert replay.replay_early_stopping(long, [2])["exact"].isna().all()
    with pytest.raises(ValueError, match="no entry for trial 2"):
        replay.replay_early_stopping(long, [2], replayable={0: True, 1: True})
    with pytest.raises(ValueError, match="stop reason of trial 1 must be one of .*got 'pruned'"):
        replay.replay_early_stopping(long, [2], stop_reasons={0: "completed", 1: "pruned", 2: "completed"})


def test_replay_summary_by_hand():
    # per patience, A then B (B by hand: p=1 stop 3 keep 0.75 saved 3 regret 0.03;
    # p=2 stop 6 fired keep 0.72 saved 0; p>=3 runs to 6 keeps 0.72):
    # p=1: saved 7+3=10 of 16, regret 0.11+0.03, both fired; kept A .8 B .75 -> B; hindsight A .69 -> winner changes
    # p=2: saved 6+0, regret 0.11, fired 2; kept .8 vs .72 -> B, changes
    # p=3: saved 2+0, regret 0.01, fired 1 (A); kept .7 vs .72 -> A, no change
    # p=4: nothing saved, no regret, none fired; A
    s = replay.replay_summary(replay.replay_early_stopping(two_trials(), [4, 1, 3, 2])).set_index("patience")
    assert list(s.index) == [1, 2, 3, 4]
    assert list(s["epochs_run"]) == [16] * 4
    assert list(s["epochs_saved"]) == [10, 6, 2, 0]
    assert list(s["n_fired"]) == [2, 2, 1, 0]
    assert list(s["n_regret"]) == [2, 1, 1, 0]
    np.testing.assert_allclose(s["regret_sum"], [0.14, 0.11, 0.01, 0.0], atol=1e-12)
    np.testing.assert_allclose(s["regret_max"], [0.11, 0.11, 0.01, 0.0], atol=1e-12)
    assert s.loc[1, "saved_fraction"] == pytest.approx(10 / 16)
    assert list(s["best_trial"]) == ["B", "B", "A", "A"]
    assert list(s["hindsight_trial"]) == ["A"] * 4
    assert list(s["changes_winner"]) == [True, True, False, False]
    # exact_only keeps only trials known exact: B alone
    s2 = replay.replay_summary(
        replay.replay_early_stopping(two_trials(), [1], replayable={"A": False, "B": True}), exact_only=True
    )
    assert s2.loc[0, "n_trials"] == 1 and s2.loc[0, "epochs_saved"] == 3 and s2.loc[0, "n_exact"] == 1


def test_replay_matches_the_real_trainer():
    """Differential: a run trained with patience p is what replaying its full run says."""
    from trainers.config import TrainConfig
    from trainers.data import load_dataset
    from trainers.loop import train

    data = load_dataset("gaussian_mixture", n_samples=160, n_features=8, label_noise=0.3, seed=3)
    base = dict(depth=1, width=32, epochs=25, lr=0.03, batch_size=16, seed=1)
    full = train(TrainConfig(**base), data)
    assert full.stop_reason == "completed"
    c = pd.DataFrame([asdict(r) for r in full.history]).drop(columns=["grad_norm", "weight_norm"])
    c.insert(0, "trial", 0)
    checked_fired = 0
    for monitor in ("val_loss", "val_acc"):
        for min_delta in (0.0, 0.02):
            out = replay.replay_early_stopping(c, [1, 2, 4], min_delta=min_delta, monitor=monitor)
            for p in (1, 2, 4):
                res = train(TrainConfig(**base, patience=p, min_delta=min_delta, monitor=monitor), data)
                r = row(out, 0, p)
                assert res.stopped_epoch == r["stop_epoch"], (monitor, min_delta, p)
                assert res.best_epoch == r["kept_epoch"], (monitor, min_delta, p)
                assert res.final[monitor] == pytest.approx(r["kept_value"], rel=0, abs=1e-12)
                assert (res.stop_reason == "early_stopped") == bool(r["fired"])
                checked_fired += bool(r["fired"])
    assert checked_fired >= 4  # the runs really stopped early, so the rule was exercised


# -- pruning audit -------------------------------------------------------------------------------

# completed: C1 .. C4 (C4 stopped at epoch 2); pruned P1 at (2, 0.85), P2 at (3, 0.68), P3 at (5, 0.5)
# epoch:   1    2     3     4       best / last
# C1:     1.0  0.8   0.7   0.52     0.52 / 0.52
# C2:     1.0  0.9   0.5   0.55     0.50 / 0.55   <- winner by best
# C3:     1.0  0.7   0.65  0.62     0.62 / 0.62
# C4:     1.0  0.95                 0.95 / 0.95
COMPLETED = {"C1": [1.0, 0.8, 0.7, 0.52], "C2": [1.0, 0.9, 0.5, 0.55], "C3": [1.0, 0.7, 0.65, 0.62], "C4": [1.0, 0.95]}
PRUNED = {"P1": (2, 0.85), "P2": (3, 0.68), "P3": (5, 0.5)}


def audit_frame(transform=lambda v: v, column="val_loss"):
    frames = [curve(list(v), trial=t).assign(**{column: transform(np.array(v))}) for t, v in COMPLETED.items()]
    frames.append(
        curve([1.0, 0.85], trial="P1").assign(**{column: transform(np.array([1.0, 0.85]))})
    )  # pruned curves are not peers
    return pd.concat(frames, ignore_index=True)


def test_pruning_audit_by_hand():
    out = audit.pruning_audit(audit_frame(), PRUNED).set_index("trial")
    # P1 @2 = 0.85; peers C1 .8, C2 .9, C3 .7, C4 .95: better 2, worse 2, rank 3, beat 0.5,
    # median (0.8+0.9)/2 = 0.85, best 0.7; the winner C2 had 0.9 > 0.85 -> was worse: True
    p1 = out.loc["P1"]
    assert (p1["n_compared"], p1["n_better"], p1["n_worse"], p1["rank"]) == (4, 2, 2, 3)
    assert p1["beat_fraction"] == 0.5 and p1["median_at_step"] == pytest.approx(0.85) and p1["best_at_step"] == 0.7
    assert (p1["winner"], p1["winner_final"], p1["winner_at_step"], bool(p1["winner_was_worse"])) == ("C2", 0.5, 0.9, True)
    # P2 @3 = 0.68; peers C1 .7, C2 .5, C3 .65 (C4 has no epoch 3): better 2, worse 1, rank 3,
    # beat 1/3, median 0.65, best 0.5; winner C2 had 0.5 < 0.68 -> False
    p2 = out.loc["P2"]
    assert (p2["n_compared"], p2["n_better"], p2["n_worse"], p2["rank"]) == (3, 2, 1, 3)
    assert p2["beat_fraction"] == pytest.approx(1 / 3) and p2["median_at_step"] == 0.65 and p2["best_at_step"] == 0.5
    assert not bool(p2["winner_was_worse"])
    # P3 @5: nobody reached epoch 5 -> no peers, rank 1, unknown indicator
    p3 = out.loc["P3"]
    assert p3["n_compared"] == 0 and p3["rank"] == 1 and math.isnan(p3["beat_fraction"]) and pd.isna(p3["winner_was_worse"])


def test_pruning_audit_final_last_changes_the_winner():
    # by last value C1 (0.52) beats C2 (0.55): winner C1 had 0.8 < 0.85 at step 2 -> False
    out = audit.pruning_audit(audit_frame(), PRUNED, final="last").set_index("trial")
    assert out.loc["P1", "winner"] == "C1" and out.loc["P1", "winner_final"] == 0.52
    assert not bool(out.loc["P1", "winner_was_worse"])


def test_pruning_audit_maximize_mirrors_minimize():
    # accuracy = 1 - loss, maximized: every count is the same as by hand above
    out = audit.pruning_audit(
        audit_frame(lambda v: 1 - v, "val_acc"),
        {t: (s, 1 - v) for t, (s, v) in PRUNED.items()},
        metric="val_acc",
        direction="maximize",
    ).set_index("trial")
    assert list(out["n_better"]) == [2, 2, 0] and list(out["n_worse"]) == [2, 1, 0]
    assert out.loc["P1", "best_at_step"] == pytest.approx(0.3) and out.loc["P1", "winner"] == "C2"
    assert bool(out.loc["P1", "winner_was_worse"]) and not bool(out.loc["P2", "winner_was_worse"])


def test_pruning_audit_nan_value_and_explicit_completed():
    # a NaN reported value is worse than every peer: 4 better at step 2, rank 5;
    # with completed = C1, C3 only: winner C1 (0.52), peers at 2: .8, .7
    out = audit.pruning_audit(audit_frame(), {"P1": (2, math.nan)}, completed=["C1", "C3"])
    r = out.iloc[0]
    assert (r["n_compared"], r["n_better"], r["n_worse"], r["rank"], r["winner"]) == (2, 2, 0, 3, "C1")
    # a tie is neither better nor worse: 0.8 at step 2 ties C1; better .7 only, worse .9 and .95
    r = audit.pruning_audit(audit_frame(), {"P1": (2, 0.8)}).iloc[0]
    assert (r["n_better"], r["n_worse"], r["rank"], r["beat_fraction"]) == (1, 2, 2, 0.5)
    # tying the winner (C2: 0.9 at step 2) is not "the winner was worse"
    r = audit.pruning_audit(audit_frame(), {"P1": (2, 0.9)}).iloc[0]
    assert (r["n_better"], r["n_worse"], bool(r["winner_was_worse"])) == (2, 1, False)
    with pytest.raises(ValueError, match="trial 'P1' is in both pruned and completed"):
        audit.pruning_audit(audit_frame(), {"P1": (2, 0.85)}, completed=["C1", "P1"])


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_names_what_is_wrong():
    with pytest.raises(ValueError, match="monitor must be one of val_loss, val_acc, got 'loss'"):
        curves.summarize_trial(curve(VAL), monitor="loss")
    with pytest.raises(ValueError, match="curve is missing column.*val_loss"):
        curves.summarize_trial(curve(VAL).drop(columns="val_loss"))
    with pytest.raises(ValueError, match="epoch 2 more than once"):
        curves.summarize_trial(pd.concat([curve(VAL), curve(VAL).iloc[[1]]]))
    with pytest.raises(ValueError, match="patience must be an integer >= 1, got 0"):
        replay.replay_early_stopping(two_trials(), [2, 0])
    with pytest.raises(ValueError, match="min_delta must be a finite number >= 0, got -0.1"):
        replay.replay_early_stopping(two_trials(), [2], min_delta=-0.1)
    with pytest.raises(ValueError, match="missing column trial"):
        curves.summarize(curve(VAL))
    with pytest.raises(ValueError, match="direction must be one of minimize, maximize, got 'min'"):
        audit.pruning_audit(audit_frame(), PRUNED, direction="min")
