"""How a trial's events are grouped into Ray objects (`study.run.remote.coalesced`), on a
scripted clock: slow epochs go out one by one the moment they end, fast ones together, a
start, an end, a failure or an epoch at a pruner's rung at once with whatever epochs wait
before it; nothing is lost, reordered or duplicated."""

from __future__ import annotations

from collections.abc import Iterator

from study.run.events import Ended, Epoch, Event, Failed, Started
from study.run.remote import coalesced


def _scripted(times: list[float], events: list[Event]) -> tuple[Iterator[Event], list[float]]:
    """`events`, each produced at the clock time given for it; the clock it reads."""
    now = [0.0]

    def gen() -> Iterator[Event]:
        for t, e in zip(times, events, strict=True):
            now[0] = t
            yield e

    return gen(), now


def _groups(
    times: list[float], events: list[Event], window: float = 0.05, pause_at: frozenset[int] = frozenset()
) -> list[list[str]]:
    gen, now = _scripted(times, events)
    out = [
        [type(e).__name__ + (str(e.epoch) if isinstance(e, Epoch) else "") for e in batch]
        for batch in coalesced(gen, window, lambda: now[0], pause_at)
    ]
    flat = [e for batch in out for e in batch]
    names = [type(e).__name__ + (str(e.epoch) if isinstance(e, Epoch) else "") for e in events]
    assert flat == names  # every event once, in order
    return out


def _epochs(n: int) -> list[Event]:
    return [Epoch(0, k, {"val_loss": 1.0 / k}) for k in range(1, n + 1)]


def test_slow_epochs_go_out_one_by_one() -> None:
    events = [Started(0, {}), *_epochs(3), Ended(0, "completed", 3, 3, 10)]
    assert _groups([0.0, 1.0, 2.0, 3.0, 3.01], events) == [["Started"], ["Epoch1"], ["Epoch2"], ["Epoch3"], ["Ended"]]


def test_fast_epochs_go_out_together_with_the_next_event() -> None:
    events = [Started(0, {}), *_epochs(10), Ended(0, "completed", 10, 10, 10)]
    times = [0.0] + [0.001 * k for k in range(1, 11)] + [0.0105]
    assert _groups(times, events) == [["Started"], [f"Epoch{k}" for k in range(1, 11)] + ["Ended"]]
    times = [0.0] + [0.02 * k for k in range(1, 11)] + [0.21]  # 20 ms epochs: about one message per 50 ms
    assert _groups(times, events) == [
        ["Started"], ["Epoch1", "Epoch2", "Epoch3"], ["Epoch4", "Epoch5", "Epoch6"], ["Epoch7", "Epoch8", "Epoch9"],
        ["Epoch10", "Ended"],
    ]  # fmt: skip


def test_an_epoch_at_a_rung_goes_out_at_once() -> None:
    """The trial waits there for the pruner's verdict: the driver must see that epoch now."""
    events = [Started(0, {}), *_epochs(10), Ended(0, "completed", 10, 10, 10)]
    times = [0.0] + [0.001 * k for k in range(1, 11)] + [0.0105]
    assert _groups(times, events, pause_at=frozenset({1, 3, 9})) == [
        ["Started"], ["Epoch1"], ["Epoch2", "Epoch3"], [f"Epoch{k}" for k in range(4, 10)], ["Epoch10", "Ended"],
    ]  # fmt: skip


def test_a_failure_goes_out_at_once_with_the_epochs_before_it() -> None:
    events = [Started(0, {}), *_epochs(2), Failed(0, "ValueError: x")]
    assert _groups([0.0, 0.01, 0.02, 0.03], events) == [["Started"], ["Epoch1", "Epoch2", "Failed"]]


def test_a_trial_cut_off_after_fast_epochs_sends_them_at_its_end() -> None:
    events = [Started(0, {}), *_epochs(2)]  # a trainer function that returns without an end event
    assert _groups([0.0, 0.01, 0.02], events) == [["Started"], ["Epoch1", "Epoch2"]]
