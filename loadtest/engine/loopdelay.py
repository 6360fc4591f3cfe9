"""The engine's event-loop delay: how late a timer wakes when it asks to sleep a fixed interval. Pure: no gevent here.

Every greenlet of an engine process shares one event loop. A greenlet that holds the CPU — parsing a stream, writing
a record, or simply too many of them — holds up every other: a chunk that arrived meanwhile is timestamped when
its reader runs, not when it arrived. :class:`LoopMonitor` measures that from inside: it sleeps ``INTERVAL_S`` at a
time and records ``woke − (asked + interval)`` on the monotonic clock. That lateness bounds the error the loop adds
to every request's timestamps (less the up to ``INTERVAL_S`` a block may have begun before the timer was due: a
loop blocked for B reports about B − interval). The engine (:mod:`loadtest.engine.users`) runs one monitor per open
stage and reports the stage's :meth:`DelayHistogram.summary` with its CPU share; :func:`worst_worker` folds the
workers' summaries into the ``stage_end`` event.

The interval: 10 ms costs about 0.7 % of a core on the project's 2-core machine (one wake-up ≈ 70 µs of CPU in an
idle gevent process; 1 ms costs 3 %), see ``docs/performance.md``.

:func:`burn_forever` is a **test hook**, not a feature: with ``LOADTEST_TEST_ENGINE_BURN_MS=50`` in its environment
the engine runs a greenlet that busy-loops 50 ms without yielding, then yields, for as long as a stage is open — a
saturated engine on demand (loop delay about 50 ms − interval, CPU near a whole core), for the tests of the
generator's self-check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "BURN_ENV",
    "INTERVAL_S",
    "LOOP_DELAY_KEYS",
    "DelayHistogram",
    "LoopMonitor",
    "burn_forever",
    "burn_seconds",
    "worst_worker",
]

INTERVAL_S: Final = 0.010
BURN_ENV: Final = "LOADTEST_TEST_ENGINE_BURN_MS"
LOOP_DELAY_KEYS: Final = ("loop_delay_p50_s", "loop_delay_p99_s", "loop_delay_max_s")

_SUB_BITS: Final = 8  # below 2**8 µs every microsecond has its bucket; above, 128 buckets per power of two
# 19 hours: anything later counts as this (no loop that late still runs)
_TOP_US: Final = (1 << 36) - 1
_BUCKETS: Final = ((_TOP_US.bit_length() - _SUB_BITS) << (_SUB_BITS - 1)) + (1 << _SUB_BITS)


def _bucket(us: int) -> int:
    """The bucket of ``us`` microseconds: the value itself below 256, else ``k·128 + (us >> k)`` for the shift
    ``k`` that leaves 8 significant bits (so ``us >> k`` is 128…255 and the buckets follow on without a gap)."""
    if us < (1 << _SUB_BITS):
        return us
    shift = us.bit_length() - _SUB_BITS
    return (shift << (_SUB_BITS - 1)) + (us >> shift)


def _upper_us(bucket: int) -> int:
    """The largest number of microseconds in ``bucket``."""
    if bucket < (1 << _SUB_BITS):
        return bucket
    shift = (bucket >> (_SUB_BITS - 1)) - 1
    sub = bucket - (shift << (_SUB_BITS - 1))
    return ((sub + 1) << shift) - 1


class DelayHistogram:
    """Counts of lateness in whole microseconds, in a fixed number of buckets (3,840 whatever the stage's length):
    exact below 256 µs, above that each bucket spans at most 1/128 of its lower bound. A percentile is the upper
    bound of the bucket holding its rank (nearest rank: the ⌈q/100 · n⌉-th smallest), never above the exact maximum
    — so it overstates the true value by less than 0.8 %, and never understates it. A negative lateness (the clock
    read before the timer's start) counts as 0."""

    __slots__ = ("_counts", "count", "max_us")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.max_us = 0

    def add(self, late_s: float) -> None:
        us = min(max(0, round(late_s * 1e6)), _TOP_US)
        self._counts[_bucket(us)] += 1
        self.count += 1
        self.max_us = max(self.max_us, us)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0 < q ≤ 100) in seconds; ``None`` without samples."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for bucket, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return min(_upper_us(bucket), self.max_us) / 1e6
        raise AssertionError("the counts add up to count")  # pragma: no cover

    def summary(self) -> dict[str, float | None]:
        """``loop_delay_p50_s``, ``loop_delay_p99_s``, ``loop_delay_max_s`` (``None`` without samples)."""
        return dict(
            zip(
                LOOP_DELAY_KEYS,
                (self.percentile(50), self.percentile(99), self.max_us / 1e6 if self.count else None),
                strict=True,
            )
        )


class LoopMonitor:
    """Sleeps ``interval`` seconds at a time and adds how late it woke to :attr:`histogram`. ``clock`` is monotonic
    seconds and ``sleep`` the loop's own (``gevent.sleep`` in the engine; fakes in the tests)."""

    def __init__(
        self, clock: Callable[[], float], sleep: Callable[[float], object], interval: float = INTERVAL_S
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.interval = interval
        self.histogram = DelayHistogram()

    def run_forever(self) -> None:
        while True:
            asked = self.clock()
            self.sleep(self.interval)
            self.histogram.add(self.clock() - asked - self.interval)


def worst_worker(reports: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The loop delay of a stage over its workers' reports: the worst worker's — the largest p99, with that worker's
    p50 — and the largest maximum. Reports without a measurement (no sample, or an older worker) are left out;
    all ``None`` when none has one."""
    measured = [r for r in reports if r.get("loop_delay_p99_s") is not None]
    if not measured:
        return dict.fromkeys(LOOP_DELAY_KEYS)
    worst = max(measured, key=lambda r: float(r["loop_delay_p99_s"]))
    return {
        "loop_delay_p50_s": worst.get("loop_delay_p50_s"),
        "loop_delay_p99_s": worst["loop_delay_p99_s"],
        "loop_delay_max_s": max(float(r.get("loop_delay_max_s") or 0.0) for r in measured),
    }


def burn_seconds(env: Mapping[str, str]) -> float | None:
    """The test hook's burn in seconds from ``LOADTEST_TEST_ENGINE_BURN_MS`` (``None`` when unset or empty). A
    value that is not a number of milliseconds > 0 is refused (:class:`ValueError`): a test that sets it wrongly
    fails instead of measuring a healthy engine."""
    raw = env.get(BURN_ENV, "").strip()
    if not raw:
        return None
    try:
        ms = float(raw)
    except ValueError:
        ms = math.nan
    if not ms > 0 or math.isinf(ms):
        raise ValueError(f"{BURN_ENV} must be a number of milliseconds > 0, not {raw!r}")
    return ms / 1000


def burn_forever(burn_s: float, clock: Callable[[], float], yield_: Callable[[], object]) -> None:
    """The test hook: hold the CPU for ``burn_s`` seconds of ``clock`` without yielding, then ``yield_`` once
    (in the engine, until the loop's next turn: every other greenlet that is ready runs), again and again until
    killed."""
    while True:
        end = clock() + burn_s
        while clock() < end:
            pass
        yield_()
