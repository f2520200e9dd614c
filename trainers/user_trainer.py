"""A user's trainer function as a trial: one dict of metrics per epoch, streamed.

The contract (``trainer: FILE.py:trial`` in a spec)::

    def trial(params: dict, data: trainers.Dataset):
        for epoch in range(params["epochs"]):
            ...                                    # train one epoch, however you like
            yield {"val_loss": ..., "val_acc": ...}

or, for code that is a loop calling something each epoch, take a ``report`` keyword and call
``report(val_loss=..., val_acc=...)`` (or ``report({...})``) once per epoch. Either way the
epochs stream one at a time: the function is paused at each ``yield``/``report`` until the
caller asks for the next epoch, and a caller that stops (pruning: ``should_stop`` or closing
the generator) ends it there (``GeneratorExit`` at the ``yield``, `StopTrial` raised from
``report``), so its ``finally`` blocks run.

`iter_user_trial` counts ``epoch`` (1, 2, ...; an ``epoch`` key in the dict is ignored),
checks every value is a number and that the objective's metric is there (else a
`UserCodeError` naming the metric and what was reported), and ends the run as ``diverged``
at a non-finite objective value. An exception inside the user's function propagates
unchanged (with the user's traceback); `check_trial` is the launch-time dry run, which turns
it into a `UserCodeError` naming the file, function and line.
"""

from __future__ import annotations

import inspect
import math
import numbers
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from trainers.data import Dataset
from trainers.user_code import UserCodeError, describe, load, raised

#: Seconds `iter_user_trial` waits, when stopped, for a callback-style function to unwind.
JOIN_TIMEOUT = 60.0


class StopTrial(BaseException):
    """Raised from ``report`` when the caller has stopped the trial (pruning). A BaseException,
    so that a user's ``except Exception`` does not swallow it."""


@dataclass(frozen=True)
class TrialEpoch:
    """One epoch of a user trainer: its number and metrics (``metrics()`` as `EpochRecord`'s)."""

    epoch: int
    values: dict[str, float]

    def metrics(self) -> dict[str, float]:
        return dict(self.values)


@dataclass
class UserTrialResult:
    """The whole run: every epoch's metrics and how it ended (``completed``, ``diverged``,
    ``stopped_by_caller``). ``best_epoch`` is the best finite objective value's epoch (0 if none)."""

    objective: str
    history: list[TrialEpoch]
    stop_reason: str
    best_epoch: int
    stopped_epoch: int
    final: dict[str, float] = field(default_factory=dict)  # metrics of the best epoch


def resolve_trial(trial: Callable[..., Any] | str, base_dir: str | None = None) -> tuple[Callable[..., Any], str, str | None]:
    """(function, how messages name it, its source file) from a callable or ``file.py:trial``."""
    if isinstance(trial, str):
        code = load(trial, base_dir, role="trainer")
        return code.func, code.where, code.path
    if not callable(trial):
        raise UserCodeError(f"trainer must be a function or FILE.py:trial / package.module:trial, got {trial!r}")
    try:
        src = inspect.getsourcefile(trial)
    except TypeError:
        src = None
    ref = f"{getattr(trial, '__module__', '?')}:{getattr(trial, '__qualname__', repr(trial))}"
    return trial, describe(ref, src), src


def takes_report(func: Callable[..., Any]) -> bool:
    """Whether the function reports through a callback (it names a ``report`` parameter)."""
    try:
        return "report" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _check_signature(func: Callable[..., Any], where: str, callback: bool) -> None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return
    try:
        sig.bind({}, None, report=None) if callback else sig.bind({}, None)
    except TypeError as e:
        raise UserCodeError(
            f"trainer {where}: must be def trial(params, data) (yielding a dict per epoch) or def trial(params, data, report); "
            f"its signature is {sig} ({e})"
        ) from None


def direction_of(metric: str) -> str:
    """``maximize`` for ``*_acc`` and ``*accuracy``, else ``minimize`` (the study's default)."""
    return "maximize" if metric.endswith(("_acc", "accuracy")) else "minimize"


def iter_user_trial(
    trial: Callable[..., Any] | str,
    params: Mapping[str, Any],
    data: Dataset,
    *,
    objective: str = "val_loss",
    direction: str | None = None,
    should_stop: Callable[[TrialEpoch], bool] | None = None,
    base_dir: str | None = None,
) -> Generator[TrialEpoch, None, UserTrialResult]:
    """Run the user's `trial(params, data)` (see the module), yielding a `TrialEpoch` per epoch;
    returns a `UserTrialResult` (the value of its ``StopIteration``)."""
    func, where, _src = resolve_trial(trial, base_dir)
    return (yield from _iter(func, where, params, data, objective, direction, should_stop))


def _iter(
    func: Callable[..., Any],
    where: str,
    params: Mapping[str, Any],
    data: Dataset,
    objective: str,
    direction: str | None,
    should_stop: Callable[[TrialEpoch], bool] | None,
) -> Generator[TrialEpoch, None, UserTrialResult]:
    callback = takes_report(func)
    _check_signature(func, where, callback)
    maximize = (direction or direction_of(objective)) == "maximize"
    stream = _callback_stream(func, dict(params), data, where) if callback else _generator_stream(func, dict(params), data, where)
    history: list[TrialEpoch] = []
    reason, best_epoch, best = "completed", 0, -math.inf if maximize else math.inf
    try:
        for raw in stream:
            rec = TrialEpoch(len(history) + 1, _clean(raw, where, len(history) + 1, objective))
            history.append(rec)
            value = rec.values[objective]
            if not math.isfinite(value):
                reason = "diverged"
                yield rec
                break
            if (value > best) if maximize else (value < best):
                best, best_epoch = value, rec.epoch
            yield rec
            if should_stop is not None and should_stop(rec):
                reason = "stopped_by_caller"
                break
    finally:
        stream.close()
    if not history:
        raise UserCodeError(f"trainer {where}: reported no epoch; it must yield (or report) one dict of metrics per epoch")
    final = history[best_epoch - 1].metrics() if best_epoch else {}
    return UserTrialResult(objective, history, reason, best_epoch, len(history), final)


def check_trial(
    trial: Callable[..., Any] | str,
    params: Mapping[str, Any],
    data: Dataset,
    *,
    objective: str = "val_loss",
    base_dir: str | None = None,
) -> dict[str, float]:
    """The launch-time dry run: the first epoch only, then stop. Returns its metrics; any
    problem, the user's own exceptions included, is a `UserCodeError` naming file, function
    and line."""
    func, where, src = resolve_trial(trial, base_dir)
    gen = _iter(func, where, params, data, objective, None, None)
    try:
        return next(gen).metrics()
    except StopIteration:  # pragma: no cover - iter_user_trial raises on an empty run
        raise UserCodeError(f"trainer {where}: reported no epoch") from None
    except UserCodeError:
        raise
    except Exception as e:
        raise raised(f"trainer {where}: the dry run (first epoch)", e, src) from e
    finally:
        gen.close()


def _clean(raw: Any, where: str, epoch: int, objective: str) -> dict[str, float]:
    """A plain ``{name: float}`` from what the user reported, or a `UserCodeError`."""
    if not isinstance(raw, Mapping):
        raise UserCodeError(f"trainer {where}: epoch {epoch} reported a {type(raw).__name__}, not a dict of metrics")
    out: dict[str, float] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            raise UserCodeError(f"trainer {where}: epoch {epoch} reported a metric named {k!r}; names must be strings")
        if k == "epoch":
            continue
        out[k] = _number(v, f"trainer {where}: epoch {epoch} reported {k}={v!r} ({type(v).__name__}); metrics must be numbers")
    if objective not in out:
        raise UserCodeError(
            f"trainer {where}: epoch {epoch} reported no {objective!r} (the objective's metric); it reported {sorted(out) or 'nothing'}"
        )
    return out


def _number(v: Any, message: str) -> float:
    """A real number, or a zero-dimensional array or tensor of one, as a float."""
    if isinstance(v, bool) or not (isinstance(v, numbers.Real) or getattr(v, "ndim", None) == 0):
        raise UserCodeError(message)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise UserCodeError(message) from None


def _generator_stream(func: Callable[..., Any], params: dict[str, Any], data: Dataset, where: str) -> Generator[Any, None, None]:
    out = func(params, data)
    if not isinstance(out, Iterator):
        raise UserCodeError(
            f"trainer {where}: returned a {type(out).__name__}; it must yield one dict of metrics per epoch "
            "(a generator function) or take a `report` keyword and call it once per epoch"
        )
    try:
        yield from out
    finally:
        close = getattr(out, "close", None)
        if close is not None:
            close()


def _callback_stream(func: Callable[..., Any], params: dict[str, Any], data: Dataset, where: str) -> Generator[Any, None, None]:
    """Run ``func(params, data, report=...)`` in a thread, in lockstep with the consumer:
    ``report`` hands one epoch over and waits until the next is asked for (or raises
    `StopTrial` when the consumer has stopped)."""
    to_caller: queue.Queue[tuple[str, Any]] = queue.Queue()
    to_user: queue.Queue[bool] = queue.Queue()
    stopped = threading.Event()

    def report(*args: Any, **kwargs: Any) -> None:
        if stopped.is_set():
            raise StopTrial()
        if len(args) > 1 or (args and kwargs):
            raise TypeError("report takes one dict of metrics or keyword metrics, e.g. report(val_loss=0.3, val_acc=0.9)")
        to_caller.put(("epoch", args[0] if args else kwargs))
        if not to_user.get():
            raise StopTrial()

    def run() -> None:
        try:
            out = func(params, data, report=report)
            if inspect.isgenerator(out):
                out.close()
                to_caller.put(
                    ("error", UserCodeError(f"trainer {where}: takes `report` but is a generator; use one or the other"))
                )
            else:
                to_caller.put(("done", None))
        except StopTrial:
            to_caller.put(("done", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer's thread
            to_caller.put(("error", e))

    worker = threading.Thread(target=run, name="hpstudy-user-trial", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = to_caller.get()
            if kind == "error":
                raise value
            if kind == "done":
                return
            yield value
            to_user.put(True)
    finally:
        if worker.is_alive():
            stopped.set()
            to_user.put(False)
            worker.join(JOIN_TIMEOUT)
