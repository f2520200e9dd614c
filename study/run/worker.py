"""What runs where a trial runs: train one configuration and stream `study.run.events` back.

`trial_events` wraps the trainer in a generator of events, so the same code runs on a
Ray worker (a trial slot's call, or a task) and in-process for unit tests: `trainers.iter_train` for the built-in MLP
and a user's model (``model:``; the worker loads the factory from its reference, see
`study.run.code`), `trainers.user_trainer.iter_user_trial` for a user's trainer function.
Nothing here touches Optuna or MLflow: workers need no credentials. An exception fails the
trial with its whole traceback (`Failed.traceback`), never the worker.

A run that did not diverge sends its kept weights with `Ended` (about 100 KiB for the
quickstart's net, once per trial), so the driver can record the best trial's as an MLflow
artifact: NumPy weights as ``weights.npz`` (arrays ``W0, b0, W1, b1, ...``), torch weights as
``state_dict.pt`` (`torch.save` of a dict of tensors with the same names; a user module's
state dict). `load_weights` reads either back without pickle; `init_params` turns them into
the ``init_params`` of `trainers.iter_train` for the same configuration.
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.run.events import Ended, Epoch, Event, Failed, Started
from trainers import Dataset, TrainConfig, TrainResult, iter_train
from trainers.backend import mlp_weight_names
from trainers.user_code import file_sha256, is_file_ref, split_ref
from trainers.user_trainer import UserTrialResult, iter_user_trial


@dataclass(frozen=True)
class WorkerCode:
    """What a worker loads: `role` (``model`` or ``trainer``), the reference as the worker
    resolves it (`ref`, against its working folder), the folder to import a module from
    (`base_dir`, None: the worker's own path), and for a trainer function the objective's
    metric and direction (to check each epoch and find the best)."""

    role: str
    ref: str
    base_dir: str | None = None
    objective: str = "val_loss"
    direction: str = "minimize"


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


def ended(number: int, result: TrainResult | UserTrialResult, backend: str = "numpy") -> Ended:
    """The parts of a finished run the driver records (the history has been streamed), with
    the kept weights of a run that did not diverge. A trainer function's parameter count and
    test metrics are what it reported, if anything; its weights are its own business."""
    if isinstance(result, UserTrialResult):
        f = result.final
        return Ended(
            number, result.stop_reason, result.best_epoch, result.stopped_epoch, int(f.get("n_params", 0)), dict(f),
            f.get("test_loss"), f.get("test_acc"),
        )  # fmt: skip
    name, data = "", None
    if result.weights is not None and result.stop_reason != "diverged":
        name, data = weights_file(result.weights, backend)
    return Ended(
        number, result.stop_reason, result.best_epoch, result.stopped_epoch, result.n_params,
        dict(result.final), result.test_loss, result.test_acc, data, name,
    )  # fmt: skip


def locate(code: WorkerCode) -> dict[str, str]:
    """The source file the worker will load and its sha256 (``code_path``, ``code_sha256``;
    empty when not found: loading it then says why). A module's folder goes on ``sys.path``."""
    target, _ = split_ref(code.ref, code.role)
    path: str | None
    if is_file_ref(target):
        path = os.path.abspath(os.path.join(code.base_dir or os.getcwd(), os.path.expanduser(target)))
    else:  # a module: from the spec's folder, else the working folder (a job's copy of it), else installed
        folder = os.path.abspath(code.base_dir or os.getcwd())
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            found = None
        path = found.origin if found is not None else None
    if path is None or not os.path.isfile(path):
        return {"code_path": path or "", "code_sha256": ""}
    return {"code_path": path, "code_sha256": file_sha256(path)}


def _run(
    config: TrainConfig | None,
    data: Dataset,
    backend: str,
    device: str,
    threads: int | None,
    code: WorkerCode | None,
    params: Mapping[str, Any] | None,
) -> Any:
    """The trainer's generator (one record per epoch; returns the run's result)."""
    if code is not None and code.role == "trainer":
        return iter_user_trial(code.ref, dict(params or {}), data, objective=code.objective, direction=code.direction)
    if config is None:
        raise ValueError("a trial of the built-in MLP or a user model needs its TrainConfig")
    if code is not None:
        return iter_train(
            config, data, backend="torch", device=device, threads=threads, keep_weights=True, model=code.ref, model_params=params
        )
    return iter_train(config, data, backend=backend, device=device, threads=threads, keep_weights=True)


def trial_events(
    number: int,
    config: TrainConfig | None,
    data: Dataset,
    backend: str = "numpy",
    device: str = "cpu",
    threads: int | None = None,
    code: WorkerCode | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[Event]:
    """Train `config` on `data` as trial `number` (with `code`: the user's model, built with
    `params`, or the user's trainer function, given `params`), yielding its events."""
    info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    if code is not None:
        info.update(locate(code))
    yield Started(number, info)
    torch = sys.modules.get("torch")
    if torch is not None:  # grad mode is per thread, and this worker's last trial may have been cancelled with it off
        torch.set_grad_enabled(True)
    try:
        gen = _run(config, data, backend, device, threads, code, params)
        while True:
            try:
                rec = next(gen)
            except StopIteration as stop:
                yield ended(number, stop.value, "torch" if code is not None else backend)
                return
            yield Epoch(number, rec.epoch, rec.metrics())
    except Exception as e:  # noqa: BLE001 - any trainer error fails this trial only
        yield Failed(number, f"{type(e).__name__}: {e}", traceback.format_exc())
