"""The user-module backend's own behaviour: dropout, named records, eval-mode metrics,
dead units, sparsity, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainers import TrainConfig, iter_train, load_dataset, train
from trainers.torch_module import ModuleBackend, row_losses
from trainers.user_code import UserCodeError
from trainers.user_model import set_dropout

DATA = load_dataset("gaussian_mixture", n_samples=400, n_features=10, n_classes=3, label_noise=0.1, test=0.2)


class Net(nn.Module):
    """A small user module with nested dropout layers of several kinds and a norm layer."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.inp = nn.Linear(n_inputs, hidden)
        self.block = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.drop1d = nn.Dropout1d(0.1)
        self.alpha = nn.AlphaDropout(0.2)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.inp(x))
        h = self.drop1d(h.unsqueeze(-1)).squeeze(-1)
        return self.head(self.alpha(h))


def build_net(n_inputs: int, n_classes: int, hidden: int = 16) -> nn.Module:
    return Net(n_inputs, n_classes, hidden)


def test_dropout_sets_p_of_every_dropout_layer() -> None:
    be = ModuleBackend(TrainConfig(dropout=0.35, epochs=1), DATA, build_net)
    layers = [m for m in be.module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert len(layers) == 3 and {type(m) for m in layers} == {nn.Dropout, nn.Dropout1d, nn.AlphaDropout}
    assert all(m.p == 0.35 for m in layers)
    off = ModuleBackend(TrainConfig(dropout=0.0, epochs=1), DATA, build_net)
    assert all(m.p == 0.0 for m in off.module.modules() if isinstance(m, nn.modules.dropout._DropoutNd))


def test_masks_are_resampled_every_mini_batch_and_nothing_is_dropped_at_evaluation() -> None:
    p = 0.4

    def build(n_inputs: int, n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(n_inputs, 64), nn.ReLU(), nn.Dropout(0.0), nn.Linear(64, n_classes))

    be = ModuleBackend(TrainConfig(dropout=p, batch_size=50, epochs=1), DATA, build)
    calls: list[tuple[bool, torch.Tensor, torch.Tensor]] = []
    be.module[2].register_forward_hook(lambda m, i, o: calls.append((m.training, i[0].detach().clone(), o.detach().clone())))
    order = np.arange(len(DATA.y_train))
    be.fit_epoch(order, 1e-3)
    train_calls = [(x, y) for training, x, y in calls if training]
    assert len(train_calls) == math.ceil(len(order) / 50)  # one mask per mini-batch
    masks = []
    for x, y in train_calls:
        live = x != 0
        kept = (y != 0) & live
        torch.testing.assert_close(y[kept], x[kept] / (1 - p))  # inverted dropout: kept units scaled by 1/(1-p)
        masks.append(kept[:, :].float())
        assert abs(1 - kept.sum().item() / live.sum().item() - p) < 0.06  # dropped fraction ~ p
    first, second = masks[0], masks[1]
    both = (train_calls[0][0] != 0) & (train_calls[1][0] != 0)
    assert not torch.equal(first[both], second[both])  # a new mask for the next batch
    calls.clear()
    be.evaluate("val")
    assert calls and all(not training and torch.equal(x, y) for training, x, y in calls)  # identity at evaluation


def test_a_factory_taking_dropout_receives_it_and_its_layers_are_left_alone() -> None:
    seen: list[float] = []

    def build(n_inputs: int, n_classes: int, width: int, dropout: float) -> nn.Module:
        seen.append(dropout)
        return nn.Sequential(nn.Linear(n_inputs, width), nn.ReLU(), nn.Dropout(dropout / 2), nn.Linear(width, n_classes))

    be = ModuleBackend(TrainConfig(dropout=0.3, epochs=1), DATA, build, {"width": 8})
    assert seen == [0.3] and be.module[2].p == 0.15


def test_dropout_without_a_dropout_layer_or_parameter_is_an_error() -> None:
    def build(n_inputs: int, n_classes: int) -> nn.Module:
        return nn.Linear(n_inputs, n_classes)

    with pytest.raises(UserCodeError, match=r"dropout=0.2 asked for, but the module has no dropout layer"):
        ModuleBackend(TrainConfig(dropout=0.2), DATA, build)
    with pytest.raises(UserCodeError, match=r"'dropout' is the training option TrainConfig.dropout"):
        ModuleBackend(TrainConfig(), DATA, build_net, {"dropout": 0.1})


def test_mlp_architecture_fields_are_refused_for_a_user_module() -> None:
    with pytest.raises(ValueError, match=r"depth, activation set for a user model"):
        ModuleBackend(TrainConfig(depth=3, activation="tanh"), DATA, build_net)


def test_named_norms_are_the_norms_of_those_tensors() -> None:
    """One full batch per epoch: the epoch's gradient norm is the gradient at the starting
    weights, computed here again by torch directly (penalty included)."""
    cfg = TrainConfig(optimizer="sgd", lr=0.1, l2=1e-2, l1=1e-3, batch_size=len(DATA.y_train), epochs=1, dropout=0.0)
    be = ModuleBackend(cfg, DATA, build_net)
    start = be.snapshot()
    order = np.random.default_rng(1).permutation(len(DATA.y_train))
    _, finite, grad = be.fit_epoch(order, cfg.lr)
    assert finite
    ref = build_net(DATA.n_features, DATA.n_classes)
    ref.load_state_dict(start)
    assert set_dropout(ref, 0.0) == 3  # as the backend did (config dropout 0)
    X = torch.from_numpy(DATA.X_train[order])
    y = torch.from_numpy(DATA.y_train[order])
    loss = row_losses("cross_entropy", ref(X), y).mean()
    weights = [p for p in ref.parameters() if p.ndim >= 2]
    loss = loss + cfg.l1 * sum(w.abs().sum() for w in weights) + 0.5 * cfg.l2 * sum((w * w).sum() for w in weights)
    loss.backward()
    names = [n for n, _ in ref.named_parameters()]
    assert list(be.param_names) == names
    expected = [torch.linalg.vector_norm(p.grad).item() for _, p in ref.named_parameters()]
    np.testing.assert_allclose(grad, expected, rtol=1e-5)
    after = [torch.linalg.vector_norm(p.detach()).item() for _, p in be.module.named_parameters()]
    np.testing.assert_allclose(be.weight_norms(), after, rtol=1e-6)


def test_records_and_metric_keys_carry_the_parameter_names() -> None:
    gen = iter_train(TrainConfig(epochs=2, dropout=0.2), DATA, backend="torch", model=build_net, model_params={"hidden": 12})
    rec = next(gen)
    gen.close()
    names = (
        "inp.weight",
        "inp.bias",
        "block.2.weight",
        "block.2.bias",
        "block.3.weight",
        "block.3.bias",
        "head.weight",
        "head.bias",
    )
    assert rec.names == names and len(rec.grad_norm) == len(rec.weight_norm) == len(names)
    m = rec.metrics()
    assert {f"grad_norm.{n}" for n in names} | {f"weight_norm.{n}" for n in names} <= set(m)
    assert not any(k.startswith(("grad_norm_", "weight_norm_")) for k in m) and "names" not in m
    assert m["grad_norm.head.weight"] == rec.grad_norm[6] and m["weight_norm.inp.bias"] == rec.weight_norm[1]
    builtin = next(iter_train(TrainConfig(depth=1, width=8, epochs=1), DATA, backend="torch")).metrics()
    assert {"grad_norm_0", "grad_norm_1", "weight_norm_0", "weight_norm_1"} <= set(builtin)


def test_train_metrics_are_measured_in_eval_mode() -> None:
    be = ModuleBackend(TrainConfig(dropout=0.5, seed=2), DATA, build_net)
    be.fit_epoch(np.arange(len(DATA.y_train)), 1e-2)
    X, y = torch.from_numpy(DATA.X_train), torch.from_numpy(DATA.y_train)
    with torch.no_grad():
        be.module.eval()
        eval_loss = row_losses("cross_entropy", be.module(X), y).mean().item()
        be.module.train()
        train_mode_loss = row_losses("cross_entropy", be.module(X), y).mean().item()
    assert be.evaluate("train")[0] == pytest.approx(eval_loss, rel=1e-6)
    assert abs(train_mode_loss - eval_loss) > 1e-2  # with dropout 0.5 the two modes differ: the gap is real


def test_dead_units_count_relu_channels_and_are_nan_without_relu_layers() -> None:
    def build(n_inputs: int, n_classes: int) -> nn.Module:
        lin = nn.Linear(n_inputs, 8)
        with torch.no_grad():
            lin.bias[:3] = -1e6  # three units are never positive
        return nn.Sequential(lin, nn.ReLU(), nn.Linear(8, n_classes))

    be = ModuleBackend(TrainConfig(), DATA, build)
    assert be.evaluate("val")[2] == pytest.approx(3 / 8)

    def conv(n_inputs: int, n_classes: int) -> nn.Module:
        c = nn.Conv1d(1, 4, 3, padding=1)
        with torch.no_grad():
            c.bias[0] = -1e6  # one channel of four dead at every position
        return nn.Sequential(nn.Unflatten(1, (1, n_inputs)), c, nn.ReLU(), nn.Flatten(), nn.Linear(4 * n_inputs, n_classes))

    assert ModuleBackend(TrainConfig(), DATA, conv).evaluate("val")[2] == pytest.approx(1 / 4)

    def functional(n_inputs: int, n_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(n_inputs, 8), nn.Tanh(), nn.Linear(8, n_classes))

    assert math.isnan(ModuleBackend(TrainConfig(), DATA, functional).evaluate("val")[2])


def test_sparsity_counts_weights_only() -> None:
    def build(n_inputs: int, n_classes: int) -> nn.Module:
        lin = nn.Linear(n_inputs, n_classes)
        with torch.no_grad():
            lin.weight[0] = 0.0  # n_inputs of the n_inputs * n_classes weights
            lin.bias.zero_()  # biases are not weights
        return lin

    be = ModuleBackend(TrainConfig(), DATA, build)
    assert be.sparsity() == pytest.approx(1 / DATA.n_classes)


def test_same_seed_gives_a_bit_identical_history_whatever_else_uses_the_global_rng() -> None:
    cfg = TrainConfig(epochs=3, dropout=0.3, seed=11)

    def history(**kw) -> list[tuple]:
        return [
            (h.train_loss, h.val_loss, h.batch_loss, *h.grad_norm)
            for h in train(cfg, DATA, backend="torch", model=build_net, **kw).history
        ]

    a = history()
    torch.manual_seed(12345)
    b = history(should_stop=lambda rec: torch.rand(100).sum() < 0)  # other code draws from torch's RNG between epochs
    assert a == b
    c = [(h.train_loss,) for h in train(cfg.replace(seed=12), DATA, backend="torch", model=build_net).history]
    assert [x[:1] for x in a] != c


def test_restore_best_and_init_params_use_the_state_dict() -> None:
    cfg = TrainConfig(epochs=4, optimizer="sgd", lr=0.05, seed=4)
    be = ModuleBackend(cfg, DATA, build_net)
    init = be.snapshot()
    again = ModuleBackend(cfg.replace(seed=5), DATA, build_net, init_params=init)
    for k, v in again.module.state_dict().items():
        assert torch.equal(v, init[k])


def test_a_user_module_trains_the_same_on_a_thread_left_with_grad_mode_off() -> None:
    """As for the torch MLP: a cancelled trial can leave a reused worker's grad mode off."""
    cfg = TrainConfig(epochs=2, seed=3, optimizer="adam", lr=1e-2)
    reference = train(cfg, DATA, backend="torch", model=build_net)
    torch.set_grad_enabled(False)
    try:
        left_off = train(cfg, DATA, backend="torch", model=build_net)
    finally:
        torch.set_grad_enabled(True)
    strip = [h.metrics() | {"seconds": 0} for h in reference.history]
    assert [h.metrics() | {"seconds": 0} for h in left_off.history] == strip
