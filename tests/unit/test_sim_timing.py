"""The simulator's own timing (:mod:`loadtest.sim.timing`): the loop-lag monitor on a fake loop, the percentiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from loadtest.sim.timing import FirstTokens, LagMonitor, percentiles


class FakeLoop:
    """``time()`` and ``call_at`` of an event loop whose clock the test moves; :meth:`run_until` fires the timers due,
    each at the time the test says the loop got to it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], FakeHandle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> FakeHandle:
        handle = FakeHandle()
        self.timers.append((when, lambda: callback(*args), handle))
        return handle

    def fire_next(self, at: float) -> None:
        """The loop reaches the earliest pending timer at ``at`` (≥ its due time)."""
        self.timers.sort(key=lambda t: t[0])
        when, callback, handle = self.timers.pop(0)
        assert at >= when
        self.now = at
        if not handle.cancelled:
            callback()


class FakeHandle:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_the_monitor_records_how_late_each_tick_fired_and_rearms_from_when_it_woke() -> None:
    loop = FakeLoop()
    monitor = LagMonitor(loop, interval=0.01, keep=3)  # type: ignore[arg-type]
    monitor.start()
    monitor.start()  # idempotent: one timer
    assert len(loop.timers) == 1 and loop.timers[0][0] == pytest.approx(100.01)
    loop.fire_next(100.01)  # on time
    loop.fire_next(100.05)  # due 100.02: 30 ms late (the loop was busy)
    loop.fire_next(100.06)  # due 100.06 (re-armed from 100.05): on time
    assert [round(late, 6) for _, late in monitor.samples] == [0.0, 0.03, 0.0]
    loop.fire_next(100.075)  # due 100.07; only the last 3 samples are kept
    assert [round(late, 6) for _, late in monitor.samples] == [0.03, 0.0, 0.005]
    assert monitor.samples[-1][0] == 100.075
    summary = monitor.summary()
    assert summary == {"interval_s": 0.01, "samples": 3, "p50_s": 0.005, "p99_s": 0.03, "max_s": 0.03}
    monitor.stop()
    assert loop.timers[-1][2].cancelled
    monitor.stop()


def test_percentiles_are_nearest_rank_over_raw_values_and_none_without_values() -> None:
    assert percentiles([]) == {"p50_s": None, "p99_s": None, "max_s": None}
    values = [i / 1000 for i in range(1, 201)]  # 1..200 ms, shuffled order must not matter
    got = percentiles(values[::-1])
    assert got == {"p50_s": 0.1, "p99_s": 0.198, "max_s": 0.2}
    assert percentiles([0.25]) == {"p50_s": 0.25, "p99_s": 0.25, "max_s": 0.25}


def test_first_tokens_keep_the_last_rows() -> None:
    rows = FirstTokens(keep=2)
    for i in range(3):
        rows.add(f"r{i}", float(i), i + 0.5, i + 0.6)
    assert list(rows.rows) == [("r1", 1.0, 1.5, 1.6), ("r2", 2.0, 2.5, 2.6)]
