"""What runs where a trial runs: train one configuration and stream `study.run.events` back.

`trial_events` wraps `trainers.iter_train` in a generator of events, so the same code runs
inside a Ray streaming task and in-process for unit tests. Nothing here touches Optuna or
MLflow: workers need no credentials.

A run that did not diverge sends its kept weights with `Ended` (about 100 KiB for the
quickstart's net, once per trial), so the driver can record the best trial's as an MLflow
artifact: NumPy weights as ``weights.npz`` (arrays ``W0, b0, W1, b1, ...``), torch weights as
``state_dict.pt`` (`torch.save` of a dict of tensors with the same names). `load_weights`
reads either back without pickle; `init_params` turns them into the ``init_params`` of
`trainers.iter_train` for the same configuration.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from study.run.events import Ended, Epoch, Event, Failed, Started
from trainers import Dataset, TrainConfig, TrainResult, iter_train
from trainers.backend import mlp_weight_names

NUMPY_WEIGHTS = "weights.npz"
TORCH_WEIGHTS = "state_dict.pt"


def weights_file(weights: Mapping[str, np.ndarray], backend: str) -> tuple[str, bytes]:
    """The kept weights as a file: ``weights.npz`` (NumPy) or ``state_dict.pt`` (torch,
    tensors only, so ``torch.load(..., weights_only=True)`` reads it)."""
    buf = io.BytesIO()
    if backend == "torch":
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, buf)
        return TORCH_WEIGHTS, buf.getvalue()
    np.savez(buf, **weights)  # type: ignore[arg-type]
    return NUMPY_WEIGHTS, buf.getvalue()


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A weights file (``weights.npz`` or ``state_dict.pt``) back to its arrays by name, with
    no pickle (``allow_pickle=False``, ``weights_only=True``)."""
    path = os.fspath(path)
    if path.endswith(".pt"):
        import torch

        return {k: v.numpy() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def init_params(weights: Mapping[str, np.ndarray]) -> Any:
    """Weights by name as `trainers.iter_train`'s ``init_params``: the built-in MLP's list
    ``[W0, b0, W1, b1, ...]``, or a user module's state dict as it is."""
    names = mlp_weight_names(len(weights))
    return [weights[k] for k in names] if set(names) == set(weights) else dict(weights)


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
