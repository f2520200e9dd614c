"""``python -m trainers``: train one configuration and print every epoch.

Every `TrainConfig` field is a flag (``--depth 4 --width 128 --optimizer momentum``);
``--width 128,64`` gives a per-layer tuple, ``--patience none`` turns early stopping off.
``--val``/``--test`` take a fraction of the dataset or a file holding that split.

Threads: one BLAS/OpenMP (and torch) thread by default, which is fastest for these small
networks and fair to other work on the machine; ``--threads N`` or ``OMP_NUM_THREADS=N``
changes it (``--threads $(nproc)`` for every core).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from trainers.config import TrainConfig
from trainers.data import BUILTIN, DataError, has_official_test, load_dataset
from trainers.loop import iter_train


def _parse_value(field: dataclasses.Field, text: str) -> Any:
    try:
        return _convert(field, text)
    except ValueError as e:
        if str(e).startswith(field.name):
            raise
        raise ValueError(f"{field.name} must be {_kind(field)}, got {text!r}") from None


def _kind(field: dataclasses.Field) -> str:
    if field.name == "width":
        return "an integer or comma-separated integers (one per hidden layer)"
    if field.name == "patience":
        return "an integer or none"
    return "an integer" if isinstance(field.default, int) else "a number"


def _convert(field: dataclasses.Field, text: str) -> Any:
    default = field.default
    if text.lower() == "none":
        return None
    if field.name == "width":
        parts = [int(p) for p in text.split(",")]
        return parts[0] if len(parts) == 1 else tuple(parts)
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{field.name} must be true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(default, int) or field.name in ("patience",):
        return int(text)
    if isinstance(default, float) or field.name in ("max_grad_norm", "weight_decay"):
        return float(text)
    return text


def _split_arg(text: str) -> float | str:
    """A fraction, or the name of a file holding that split."""
    try:
        return float(text)
    except ValueError:
        return text


def _threads_arg(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"threads must be a positive integer, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trainers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset", default="digits", help=f"built-in ({', '.join(BUILTIN)}) or .npz/.csv/.parquet file (default digits)"
    )
    p.add_argument("--val", default="0.2", help="validation fraction, or a file holding the validation split (default 0.2)")
    p.add_argument(
        "--test",
        default=None,
        help="test fraction, or a file holding the test split (default 0.2; mnist1d: its official test split)",
    )
    p.add_argument("--data-seed", type=int, default=0, help="seed of the stratified split (default 0)")
    p.add_argument("--label-column", default="label", help="label column of a .csv/.parquet file (default label)")
    p.add_argument("--backend", default="numpy", choices=["numpy", "torch"])
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (torch backend)")
    p.add_argument(
        "--threads",
        default=None,
        metavar="N",
        help="BLAS/OpenMP/torch threads (default: OMP_NUM_THREADS if set, else 1)",
    )
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name != "tags"]
    for f in fields:
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, metavar="V", help=f"default {f.default!r}")
    args = p.parse_args(argv)
    try:
        values = {f.name: _parse_value(f, getattr(args, f.name)) for f in fields if getattr(args, f.name) is not None}
        config = TrainConfig(**values)
        threads = _threads_arg(args.threads)
        if args.test is not None:
            test = _split_arg(args.test)
        else:
            test = 0.0 if has_official_test(args.dataset) else 0.2
        data = load_dataset(
            args.dataset, val=_split_arg(args.val), test=test, seed=args.data_seed, label_column=args.label_column
        )
    except (ValueError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(data.summary())
    print(f"{'epoch':>5} {'lr':>9} {'train_loss':>10} {'train_acc':>9} {'val_loss':>9} {'val_acc':>8} {'gap':>7} {'sec':>6}")
    gen = iter_train(config, data, backend=args.backend, device=args.device, threads=threads)
    started = False
    while True:
        try:
            r = next(gen)
        except StopIteration as stop:
            res = stop.value
            break
        except (ValueError, ImportError) as e:  # the backend is built on the first step: bad device, no torch
            if started:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 2
        started = True
        print(
            f"{r.epoch:5d} {r.lr:9.2e} {r.train_loss:10.4f} {r.train_acc:9.4f} {r.val_loss:9.4f} {r.val_acc:8.4f} "
            f"{r.val_loss - r.train_loss:7.4f} {r.seconds:6.2f}"
        )
    print(f"stop: {res.stop_reason} at epoch {res.stopped_epoch}; best epoch {res.best_epoch}; {res.n_params} parameters")
    if res.test_acc is not None:
        print(
            f"test (weights of epoch {res.best_epoch if config.restore_best else res.stopped_epoch}): loss {res.test_loss:.4f} acc {res.test_acc:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
