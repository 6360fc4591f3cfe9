"""Pay-per-token quotas as Databricks enforces them: ITPM, OTPM (``max_tokens`` reserved), QPH and QPS.

Pure: no I/O; the clock is injected (``Quota(limits, clock)``), so tests need no sleeps.

Rules:

- **Windows slide.** The usage of a limit at time ``t`` is the sum of the charges made in ``(t − W, t]``, with
  ``W`` = 60 s for ITPM and OTPM, 3,600 s for QPH, 1 s for QPS. QPH charges are kept in 1-second buckets (a query
  counts until the end of its second plus 3,600 s), so memory stays bounded whatever the rate.
- **Admission** (:meth:`Quota.admit`) of a request with ``p`` input tokens and ``max_tokens = m`` charges ``p`` to
  ITPM, ``m`` to OTPM (a *reservation*), 1 to QPH and 1 to QPS, all at once or not at all: it is rejected when for
  any limit ``usage + charge > limit``. A rejected request consumes nothing.
- **Completion** (:meth:`Quota.release`): the OTPM charge is cut to the tokens produced at once (the unused
  ``m − produced`` is credited back); the charge keeps its admission time. :meth:`Quota.cancel` refunds a request
  that was admitted but never served (everything it charged).
- **Rejection** (:class:`Rejection`): for each violated limit, ``τ`` is the earliest time at which
  ``usage + charge ≤ limit`` if nothing else is admitted and in-flight reservations stay; the limit reported is the
  one whose ``τ`` comes last (ties in the order ITPM, OTPM, QPH, QPS), ``retry_after = max(1, ⌈τ − t⌉)`` seconds
  and ``current = usage + charge`` (what admitting the request would have made it). A charge larger than the limit
  alone can never be admitted: its ``retry_after`` is the window ``W``.

:func:`loadtest.model.quota.ppt_admitted_rate` is the steady-state truth for a constant offered load.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.model.quota import QUOTA_WINDOWS, LimitType, QuotaLimits

__all__ = ["Quota", "Rejection", "Ticket"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request was refused: the binding limit, its value, the usage it would reach, seconds to wait."""

    limit_type: LimitType
    limit: int
    current: int
    retry_after_s: int

    @property
    def short_name(self) -> str:
        return QUOTA_WINDOWS[self.limit_type][0]

    def openai_detail(self) -> dict[str, Any]:
        """The ``error`` object of Databricks' documented 429 body (OpenAI-style paths)."""
        name, unit = QUOTA_WINDOWS[self.limit_type][:2]
        return {
            "message": f"Rate limit exceeded: {name} limit of {self.limit:,} {unit} reached",
            "type": "rate_limit_exceeded",
            "code": 429,
            "limit_type": self.limit_type,
            "limit": self.limit,
            "current": self.current,
            "retry_after": self.retry_after_s,
        }

    def databricks_message(self, endpoint: str) -> str:
        """The ``message`` of a ``REQUEST_LIMIT_EXCEEDED`` body (Databricks paths)."""
        name, unit = QUOTA_WINDOWS[self.limit_type][:2]
        return (
            f"Exceeded workspace {name} rate limit for {endpoint}: limit {self.limit:,} {unit}, "
            f"{self.current:,} requested; retry after {self.retry_after_s} s. Please use a provisioned "
            "throughput Foundation Model APIs endpoint for production workloads."
        )


class _Entry:
    __slots__ = ("amount", "live", "ts")

    def __init__(self, ts: float, amount: int) -> None:
        self.ts, self.amount, self.live = ts, amount, True


class _Window:
    """Charges within ``(t − W, t]``; charges at the same (bucketed) time share one entry."""

    __slots__ = ("bucket", "entries", "limit", "total", "window")

    def __init__(self, limit: int, window: float, bucket: float) -> None:
        self.limit, self.window, self.bucket = limit, window, bucket
        self.entries: deque[_Entry] = deque()
        self.total = 0

    def expire(self, now: float) -> None:
        cutoff = now - self.window
        entries = self.entries
        while entries and entries[0].ts <= cutoff:
            entry = entries.popleft()
            entry.live = False
            self.total -= entry.amount

    def charge(self, now: float, amount: int) -> _Entry:
        ts = math.ceil(now / self.bucket) * self.bucket if self.bucket else now
        entries = self.entries
        if entries and entries[-1].ts == ts:
            entry = entries[-1]
            entry.amount += amount
        else:
            entry = _Entry(ts, amount)
            entries.append(entry)
        self.total += amount
        return entry

    def refund(self, entry: _Entry, amount: int) -> None:
        if entry.live and amount > 0:
            entry.amount -= amount
            self.total -= amount

    def wait_s(self, now: float, cost: int) -> float:
        """Seconds until ``total + cost ≤ limit`` if nothing else is charged (``window`` if ``cost > limit``)."""
        excess = self.total + cost - self.limit
        if cost > self.limit:
            return self.window
        freed = 0
        for entry in self.entries:
            freed += entry.amount
            if freed >= excess:
                return entry.ts + self.window - now
        return self.window  # unreachable while cost <= limit: every charge expires eventually


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an admitted request charged: ``(window, entry, amount)`` per limit, and its OTPM reservation."""

    charges: tuple[tuple[_Window, _Entry, int], ...]
    otpm: tuple[_Window, _Entry] | None
    reserved: int


class Quota:
    """Sliding-window admission control (see the module docstring for the rules)."""

    def __init__(self, limits: QuotaLimits, clock: Callable[[], float]) -> None:
        self.limits, self.clock = limits, clock
        self._windows: dict[LimitType, _Window] = {
            kind: _Window(limit, QUOTA_WINDOWS[kind][2], QUOTA_WINDOWS[kind][3])
            for kind, limit in limits.by_type().items()
        }

    def usage(self) -> dict[LimitType, int]:
        """Current usage of each limit that is set."""
        now = self.clock()
        for window in self._windows.values():
            window.expire(now)
        return {kind: window.total for kind, window in self._windows.items()}

    def admit(self, prompt_tokens: int, max_tokens: int) -> Ticket | Rejection:
        """Charge a request, or say why not (then nothing is charged)."""
        now = self.clock()
        costs: dict[LimitType, int] = {
            "input_tokens_per_minute": prompt_tokens,
            "output_tokens_per_minute": max_tokens,
            "queries_per_hour": 1,
            "queries_per_second": 1,
        }
        worst: tuple[float, LimitType] | None = None
        for kind, window in self._windows.items():
            window.expire(now)
            cost = costs[kind]
            if window.total + cost > window.limit:
                wait = window.wait_s(now, cost)
                if worst is None or wait > worst[0]:
                    worst = (wait, kind)
        if worst is not None:
            wait, kind = worst
            window = self._windows[kind]
            return Rejection(kind, window.limit, window.total + costs[kind], max(1, math.ceil(wait - 1e-9)))
        charges = tuple(
            (window, window.charge(now, costs[kind]), costs[kind])
            for kind, window in self._windows.items()
            if costs[kind] > 0
        )
        otpm = self._windows.get("output_tokens_per_minute")
        held = next(((w, e) for w, e, _ in charges if w is otpm), None)
        return Ticket(charges, held, max_tokens)

    def release(self, ticket: Ticket, produced: int) -> None:
        """The request is done after ``produced`` output tokens: credit back the unused reservation now."""
        if ticket.otpm is not None:
            window, entry = ticket.otpm
            window.refund(entry, ticket.reserved - min(max(produced, 0), ticket.reserved))

    def cancel(self, ticket: Ticket) -> None:
        """Refund everything the request charged (it was admitted but never served)."""
        for window, entry, amount in ticket.charges:
            window.refund(entry, amount)
