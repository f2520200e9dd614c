"""What runs where a trial runs: train one configuration and stream `study.run.events` back.

`trial_events` wraps `trainers.iter_train` in a generator of events, so the same code runs
inside a Ray streaming task and in-process for unit tests. Nothing here touches Optuna or
MLflow: workers need no credentials.

A run that did not diverge sends its kept weights with `Ended` (a few hundred KB for the
quickstart's net, once per trial), so the driver can record the best trial's as an MLflow
artifact: NumPy weights as ``weights.npz`` (arrays ``W0, b0, W1, b1, ...``), torch weights as
``state_dict.pt`` (`torch.save` of a dict of tensors with the same names). Either loads back
as ``init_params`` of `trainers.iter_train` (see `weight_arrays`).
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator

import numpy as np

from study.run.events import Ended, Epoch, Event, Failed, Started
from trainers import Dataset, TrainConfig, TrainResult, iter_train

NUMPY_WEIGHTS = "weights.npz"
TORCH_WEIGHTS = "state_dict.pt"


def weight_names(n: int) -> list[str]:
    """The names of `n` parameter arrays ``[W0, b0, W1, b1, ...]``."""
    return [f"{'W' if i % 2 == 0 else 'b'}{i // 2}" for i in range(n)]


def weights_file(weights: list[np.ndarray], backend: str) -> tuple[str, bytes]:
    """The kept weights as a file: ``weights.npz`` (NumPy) or ``state_dict.pt`` (torch,
    tensors only, so ``torch.load(..., weights_only=True)`` reads it)."""
    named = dict(zip(weight_names(len(weights)), weights, strict=True))
    buf = io.BytesIO()
    if backend == "torch":
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in named.items()}, buf)
        return TORCH_WEIGHTS, buf.getvalue()
    np.savez(buf, **named)  # type: ignore[arg-type]
    return NUMPY_WEIGHTS, buf.getvalue()


def weight_arrays(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """A weights file back to ``[W0, b0, W1, b1, ...]`` (NumPy arrays, no pickle), the
    ``init_params`` of `trainers.iter_train` for the same configuration."""
    path = os.fspath(path)
    if path.endswith(".pt"):
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return [state[k].numpy() for k in weight_names(len(state))]
    with np.load(path, allow_pickle=False) as z:
        return [z[k] for k in weight_names(len(z.files))]


def ended(number: int, result: TrainResult, backend: str = "numpy") -> Ended:
    """The parts of a `TrainResult` the driver records (the history has been streamed), with
    the kept weights of a run that did not diverge."""
    name, data = "", None
    if result.weights is not None and result.stop_reason != "diverged":
        name, data = weights_file(result.weights, backend)
    return Ended(
        number, result.stop_reason, result.best_epoch, result.stopped_epoch, result.n_params,
        dict(result.final), result.test_loss, result.test_acc, data, name,
    )  # fmt: skip


def trial_events(
    number: int, config: TrainConfig, data: Dataset, backend: str = "numpy", device: str = "cpu", threads: int | None = None
) -> Iterator[Event]:
    """Train `config` on `data` as trial `number`, yielding its events."""
    yield Started(number, {"pid": os.getpid(), "host": socket.gethostname()})
    try:
        gen = iter_train(config, data, backend=backend, device=device, threads=threads, keep_weights=True)
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                yield ended(number, stop.value, backend)
                return
            yield Epoch(number, rec.epoch, rec.metrics())
    except Exception as e:  # noqa: BLE001 - any trainer error fails this trial only
        yield Failed(number, f"{type(e).__name__}: {e}")
