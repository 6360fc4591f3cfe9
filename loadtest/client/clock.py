"""A monotonic clock that reads as epoch seconds.

``time.time()`` can step when NTP corrects it; ``time.perf_counter()`` never does but has no epoch. The clock reads
``anchor_epoch + (perf_counter() - anchor_perf)``: monotonic, sub-microsecond resolution, and comparable across
processes on one host to within the anchoring error (a few microseconds).
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "EpochClock", "FakeClock"]


class Clock(Protocol):
    def __call__(self) -> float: ...


class EpochClock:
    """Monotonic epoch seconds (see module docstring)."""

    __slots__ = ("_anchor_epoch", "_anchor_perf")

    def __init__(self) -> None:
        self._anchor_perf = time.perf_counter()
        self._anchor_epoch = time.time()

    def __call__(self) -> float:
        return self._anchor_epoch + (time.perf_counter() - self._anchor_perf)


class FakeClock:
    """A clock for tests: returns ``now`` and moves only when told (or by ``step`` on every read)."""

    def __init__(self, start: float = 1_000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value

    def advance(self, seconds: float) -> None:
        self.now += seconds
