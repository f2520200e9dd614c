"""Schedule values against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from trainers import TrainConfig
from trainers.schedules import Plateau, lr_at


def lrs(**kw: object) -> list[float]:
    cfg = TrainConfig(**kw)  # type: ignore[arg-type]
    return [lr_at(cfg, e) for e in range(1, cfg.epochs + 1)]


def test_constant() -> None:
    assert lrs(lr=0.1, epochs=4) == [0.1] * 4


def test_step_decay_multiplies_by_gamma_every_step_size_epochs() -> None:
    assert lrs(lr=0.1, epochs=7, schedule="step", gamma=0.5, step_size=3) == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
    )


def test_exponential() -> None:
    assert lrs(lr=1.0, epochs=4, schedule="exponential", gamma=0.9) == pytest.approx([1, 0.9, 0.81, 0.729])


def test_cosine_to_min_lr() -> None:
    got = lrs(lr=1.0, min_lr=0.1, epochs=5, schedule="cosine")
    want = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(5)]
    assert got == pytest.approx(want)
    assert got[0] == 1.0 and got[-1] > 0.1


def test_linear_warmup_then_schedule() -> None:
    got = lrs(lr=0.4, epochs=6, warmup_epochs=4, schedule="step", gamma=0.5, step_size=1)
    assert got == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.2])


def test_min_lr_floors_every_schedule() -> None:
    assert min(lrs(lr=1.0, epochs=10, schedule="exponential", gamma=0.1, min_lr=0.01)) == 0.01
    assert lrs(lr=1.0, epochs=6, warmup_epochs=4, min_lr=0.5)[:4] == [0.5, 0.5, 0.75, 1.0]  # warm-up too


def test_schedules_are_pure_functions_of_the_epoch() -> None:
    cfg = TrainConfig(lr=0.3, epochs=9, schedule="cosine", warmup_epochs=2)
    assert [lr_at(cfg, e) for e in (5, 3, 5)] == [lr_at(cfg, 5), lr_at(cfg, 3), lr_at(cfg, 5)]


def test_reduce_on_plateau_is_torchs_with_patience_minus_one() -> None:
    import torch  # the test set-up installs it; missing torch fails here, loudly

    cfg = TrainConfig(lr=1.0, epochs=10, schedule="reduce_on_plateau", gamma=0.5, plateau_patience=2)
    p = Plateau(cfg)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, threshold=0.0, threshold_mode="abs")
    for e, v in enumerate([1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.8, 0.85, 0.86], start=1):
        assert p.lr(e) == pytest.approx(opt.param_groups[0]["lr"])
        p.update(v)
        ref.step(v)


def test_reduce_on_plateau_cuts_after_patience_bad_epochs() -> None:
    cfg = TrainConfig(lr=1.0, epochs=10, schedule="reduce_on_plateau", gamma=0.5, plateau_patience=2)
    p = Plateau(cfg)
    seen = []
    for e, v in enumerate([1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.8], start=1):
        seen.append(p.lr(e))
        p.update(v)
    # improvements at epochs 1, 2, 7; two bad epochs (3, 4) cut to 0.5; two more (5, 6) to 0.25
    assert seen == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25]


def test_reduce_on_plateau_follows_val_acc_upwards() -> None:
    cfg = TrainConfig(lr=1.0, schedule="reduce_on_plateau", gamma=0.1, plateau_patience=1, monitor="val_acc")
    p = Plateau(cfg)
    p.update(0.5)
    p.update(0.6)
    assert p.factor == 1.0
    p.update(0.55)
    assert p.factor == pytest.approx(0.1)
