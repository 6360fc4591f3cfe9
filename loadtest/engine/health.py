"""A dead endpoint, as the engine sees it: a user's back-off after connection failures, and the watch that stops a
run whose endpoint stays unreachable (or answers only 5xx). Pure: no gevent, no clock of its own — the times are
the records' own.

What counts (:func:`outcome_of`, from a record's ``status`` and ``error_class``):

* **unreachable** — no HTTP response at all: ``connection`` (refused, reset, DNS, a connection closed before the
  headers) or ``timeout`` before any status (a connect timeout, or no headers within the read timeout);
* **server error** — an HTTP 5xx response;
* **answered** — any other response (a success, a 429, a 4xx, a 200 whose stream was cut);
* ``cancelled`` records (the run stopping) say nothing about the endpoint and are ignored.

:class:`Backoff` — after an unreachable outcome a user waits ``base_s × 2^(n−1)`` (n consecutive such failures),
at most ``cap_s``, times a jitter factor in [0.5, 1) (the "equal jitter" of AWS's back-off note: never less than
half the nominal wait, so a dead endpoint sees at most about two requests per user per ``cap_s``), before its next
request; any other response resets it. 50 ms, 100 ms, … 1.6 s, then 2 s: 16 users make about 200 requests in 10 s
against a refused port instead of about 38,000. A closed-loop user also backs off after a refusal *answer* — HTTP
429 or a 5xx status — since it would otherwise send again the instant the answer came (4 users against an endpoint
answering only 429 sent 8,769 requests in 2 s); an open-loop user does not (its arrivals set the pace).
A 503 with ``Retry-After`` ("temporarily unavailable, come back then": what an endpoint scaling up from zero may
say, and a wait to the Databricks SDK too) is waited out, in either loop: at least ``Retry-After``, at most
``cap_s``.

:class:`AbortWatch` — the run stops when, for ``after_s`` seconds, every request that completed was unreachable
(or, separately, got a 5xx). A streak starts at the *start* of its first failing request — bounded by the end of
the last request the endpoint answered (for the 5xx streak: answered other than with a 5xx), since the endpoint was
alive then — and the run stops at the end of the first failing request that completes ``after_s`` or more after
that start. Any answer (any non-5xx answer) that ends after the streak began resets it, so a stray failure among
successes never stops a run. A hung endpoint is caught when its requests time out (``--read-timeout``): a request
that got no response for ``after_s`` is itself the evidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from loadtest.spec.runspec import DEFAULT_ABORT_AFTER_S

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "DEFAULT_ABORT_AFTER_S",
    "Abort",
    "AbortWatch",
    "Backoff",
    "Outcome",
    "backs_off",
    "outcome_of",
]

BACKOFF_BASE_S: Final = 0.05
BACKOFF_CAP_S: Final = 2.0

Outcome = Literal["unreachable", "server_error", "answered", "ignored"]
AbortKind = Literal["unreachable", "server_error"]


def outcome_of(status: int | None, error_class: str | None) -> Outcome:
    """What a record says about the endpoint (module docstring)."""
    if error_class == "cancelled":
        return "ignored"
    if status is None:
        return "unreachable" if error_class in ("connection", "timeout") else "ignored"
    return "server_error" if status >= 500 else "answered"


def _refusal(status: int, closed_loop: bool) -> bool:
    """An answer a closed-loop user would otherwise repeat at once: HTTP 429 or a 5xx status."""
    return closed_loop and (status == 429 or status >= 500)


def backs_off(
    status: int | None, error_class: str | None, closed_loop: bool, retry_after_s: float | None = None
) -> bool:
    """Whether a user waits before its next request after one that ended so: no response at all (unreachable);
    a 503 with ``Retry-After``; or, in a closed loop, an HTTP 429 or 5xx answer. Never after a success or a
    cancelled request."""
    if error_class is None or error_class == "cancelled":
        return False
    if status is None:
        return outcome_of(status, error_class) == "unreachable"
    return _refusal(status, closed_loop) or (status == 503 and retry_after_s is not None)


class Backoff:
    """One user's wait before its next request (module docstring). ``rand`` returns a float in [0, 1)."""

    __slots__ = ("base_s", "cap_s", "failures", "rand")

    def __init__(
        self, rand: Callable[[], float], base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S
    ) -> None:
        self.rand = rand
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def after(
        self,
        status: int | None,
        error_class: str | None,
        closed_loop: bool = False,
        retry_after_s: float | None = None,
    ) -> float:
        """Seconds to wait after a request that ended so: 0.0 unless :func:`backs_off` says so."""
        if error_class == "cancelled":
            return 0.0  # the run stopping says nothing: the count stays
        if not backs_off(status, error_class, closed_loop, retry_after_s):
            self.failures = 0  # a success, or an answer that is not a refusal
            return 0.0
        come_back = min(max(retry_after_s or 0.0, 0.0), self.cap_s) if status == 503 else 0.0
        if status is not None and not _refusal(status, closed_loop):
            self.failures = 0  # an answer that only said when to come back
            return come_back
        self.failures += 1
        nominal = min(self.cap_s, self.base_s * 2.0 ** min(self.failures - 1, 30))
        return max(nominal * (0.5 + 0.5 * self.rand()), come_back)


@dataclass(frozen=True, slots=True)
class Abort:
    """Why and when the watch stopped a run: ``since`` (epoch s) the endpoint has not answered (or answered only
    5xx), ``at`` the end of the request that decided it, in ``stage``; ``failures`` requests failed meanwhile, the
    last with ``detail``."""

    kind: AbortKind
    since: float
    at: float
    stage: str | None
    after_s: float
    failures: int
    detail: str | None

    @property
    def window_s(self) -> float:
        return self.at - self.since

    def reason(self, local_time: Callable[[float], str] | None = None) -> str:
        """One line: ``endpoint unreachable for 10 s from 12:00:08 (stage concurrency@16: 190 requests, every one
        failed to connect or got no response; last: connection failed: ConnectionRefusedError)``."""
        clock = local_time or (lambda t: time.strftime("%H:%M:%S", time.localtime(t)))
        what = "unreachable" if self.kind == "unreachable" else "failing"
        every = (
            "every one failed to connect or got no response"
            if self.kind == "unreachable"
            else "every one answered with a 5xx"
        )
        where = f"stage {self.stage}: " if self.stage else ""
        last = f"; last: {self.detail}" if self.detail else ""
        return (
            f"endpoint {what} for {self.window_s:.0f} s from {clock(self.since)} "
            f"({where}{self.failures:,} requests, {every}{last})"
        )


@dataclass(slots=True)
class _Streak:
    since: float
    failures: int = 0


class AbortWatch:
    """Stops a run whose endpoint is dead for ``after_s`` seconds (module docstring). Feed it every record in the
    order they complete (roughly: a worker's batches may arrive 100 ms apart); it returns an :class:`Abort` once."""

    __slots__ = ("_answered_at", "_fine_at", "_server", "_unreachable", "after_s")

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._answered_at = float("-inf")  # end of the last request the endpoint answered
        self._fine_at = float("-inf")  # end of the last one it answered other than with a 5xx
        self._unreachable: _Streak | None = None
        self._server: _Streak | None = None

    def observe(
        self,
        status: int | None,
        error_class: str | None,
        started_at: float,
        ended_at: float,
        stage: str | None = None,
        detail: str | None = None,
    ) -> Abort | None:
        if error_class is None and self._unreachable is None and self._server is None:
            self._answered_at = self._fine_at = max(self._fine_at, ended_at)  # the fast path: all is well
            return None
        outcome = outcome_of(status, error_class)
        if outcome == "ignored":
            return None
        if outcome == "unreachable":
            return self._fail("unreachable", started_at, ended_at, stage, detail)
        self._answered_at = max(self._answered_at, ended_at)
        if self._unreachable is not None and ended_at >= self._unreachable.since:
            self._unreachable = None
        if outcome == "server_error":
            return self._fail("server_error", started_at, ended_at, stage, detail)
        self._fine_at = max(self._fine_at, ended_at)
        if self._server is not None and ended_at >= self._server.since:
            self._server = None
        return None

    def _fail(
        self, kind: AbortKind, started_at: float, ended_at: float, stage: str | None, detail: str | None
    ) -> Abort | None:
        streak = self._unreachable if kind == "unreachable" else self._server
        if streak is None:
            alive = self._answered_at if kind == "unreachable" else self._fine_at
            streak = _Streak(since=max(started_at, alive))
            if kind == "unreachable":
                self._unreachable = streak
            else:
                self._server = streak
        streak.failures += 1
        if ended_at - streak.since < self.after_s:
            return None
        return Abort(kind, streak.since, ended_at, stage, self.after_s, streak.failures, detail)
