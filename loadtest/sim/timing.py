"""The simulator's own timing: how late its event loop runs, and each request's first token as the model meant it.

Both exist so that a benchmark can tell whether the simulator keeps the times its model computes, or has become the
bottleneck (``benchmarks/sim_bench.py``, ``docs/performance.md``). Times are the event loop's clock
(``loop.time()``, ``time.monotonic`` on Linux: the same clock in every process of the machine).

- :class:`LagMonitor`: a timer every :data:`INTERVAL_S` that records how late it fired,
  ``woke − (asked + interval)``. Every callback of the loop waits behind whatever runs, so that lateness bounds what
  the loop adds to any write (less up to one interval: a loop blocked for B reports about B − interval). The last
  :data:`KEEP` samples (60 s) are kept raw, with the time they were taken.
- :class:`FirstTokens`: per request, when it arrived, when the model's first token was due (the end of the step that
  admitted it, or of its prefill slot) and when the server had written it; the last :data:`KEEP_REQUESTS`.
  ``due − arrived`` is the model's TTFT, ``written − due`` what the server added to it.
- The steps (the server keeps them, :data:`KEEP_STEPS`): when a step's tokens were due and when the last of them
  was written — the most the server added to any token of that step.

:func:`percentiles` summarises raw values (nearest rank): the loop's lateness in ``/sim/stats``. The rows and samples
themselves are ``GET /sim/timings``; they are not summarised on ``/sim/stats``, which ``/metrics`` scrapes build
(sorting 100,000 rows would hold the loop tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from typing import Final

__all__ = ["INTERVAL_S", "KEEP", "KEEP_REQUESTS", "KEEP_STEPS", "FirstTokens", "LagMonitor", "percentiles"]

INTERVAL_S: Final = 0.010
KEEP: Final = 6000  # samples: the last 60 s at one per 10 ms
KEEP_REQUESTS: Final = 1 << 17  # 131,072 requests, ≈ 20 MB
KEEP_STEPS: Final = 1 << 15  # 32,768 steps: 4 minutes at 136 steps/s


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """``p50_s``, ``p99_s``, ``max_s`` of ``values`` by nearest rank (the ⌈q/100 · n⌉-th smallest); ``None`` each
    without values."""
    if not values:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[max(1, math.ceil(q / 100 * n)) - 1], 6)

    return {"p50_s": rank(50), "p99_s": rank(99), "max_s": round(ordered[-1], 6)}


class LagMonitor:
    """How late a timer every ``interval`` seconds fires on ``loop`` (:meth:`start`, :meth:`stop`); ``samples``
    holds ``(time, lateness)`` pairs, the last ``keep``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float = INTERVAL_S, keep: int = KEEP
    ) -> None:
        self.loop, self.interval = loop, interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=keep)
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        if self._timer is None:
            self._arm(self.loop.time())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: float) -> None:
        self._due = now + self.interval
        self._timer = self.loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        now = self.loop.time()
        self.samples.append((now, max(0.0, now - self._due)))
        self._arm(now)

    def summary(self) -> dict[str, float | int | None]:
        """Over the samples kept: their count, the interval, and the lateness's p50 / p99 / max in seconds."""
        return {
            "interval_s": self.interval,
            "samples": len(self.samples),
            **percentiles([late for _, late in self.samples]),
        }


class FirstTokens:
    """``(request_id, arrived, due, written)`` per generation whose first token the model produced, the last
    ``keep``; ``written`` is when the server had handled that token: for a stream, handed it to the connection."""

    def __init__(self, keep: int = KEEP_REQUESTS) -> None:
        self.rows: deque[tuple[str, float, float, float]] = deque(maxlen=keep)

    def add(self, request_id: str, arrived: float, due: float, written: float) -> None:
        self.rows.append((request_id, arrived, due, written))
