"""Queueing theory the capacity proofs compare against: the FIFO c-server queue simulated with numpy, closed forms to
check that simulation with, and the exact highest Poisson rate whose TTFT p95 meets an SLO on the simulator's
fixed-slots model (an M/D/c server, :mod:`loadtest.sim.slots`). Pure numpy; shared by the tests like
:mod:`tests.helpers`.

* :func:`fifo_waits` — Kiefer–Wolfowitz: each arrival takes the server that frees first (a heap of free times), any
  service times. The general reference, checked against Erlang C (M/M/c) and Pollaczek–Khinchine (M/D/1).
* :func:`mdc_waits` — the same queue with one fixed service time D, vectorised: with FIFO and equal service times
  starts are in arrival order and customer ``n`` takes the server customer ``n − c`` left, so
  ``s_n = max(a_n, s_{n−c} + D)`` (Crommelin 1932: every c-th customer sees a single-server queue). Solved per
  residue class mod c as ``s_k = k·D + max_{j≤k} (a_j − j·D)``, a cumulative maximum. Equal to :func:`fifo_waits`
  with fixed service times (to rounding), and ~10⁶ customers in milliseconds.
* :func:`exact_rate` — bisection on λ of the stationary TTFT p95 (wait + prefill) over 2·10⁶ Poisson customers with
  common random numbers (the same unit-rate arrivals scaled by 1/λ, so the p95 is monotone in λ).
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EIGHT",
    "TWO",
    "SlotServer",
    "erlang_c_mean_wait",
    "exact_rate",
    "fifo_waits",
    "md1_mean_wait",
    "md1_wait_cdf",
    "mdc_waits",
    "poisson_arrivals",
    "ttft_p95",
]


@dataclass(frozen=True)
class SlotServer:
    """The simulator's fixed-slots settings: ``slots`` servers, ``prefill_ms`` to the first token, ``tpot_ms`` per
    further token, ``output_tokens`` per request (every request holds a slot ``D = prefill + (n − 1)·tpot``)."""

    slots: int
    prefill_ms: float
    tpot_ms: float
    output_tokens: int

    @property
    def prefill_s(self) -> float:
        return self.prefill_ms / 1000

    @property
    def service_s(self) -> float:
        return (self.prefill_ms + (self.output_tokens - 1) * self.tpot_ms) / 1000

    @property
    def capacity_rps(self) -> float:
        """``c / D``: the rate at which the queue stops being stable."""
        return self.slots / self.service_s


# the servers of the proofs (tests/unit/test_queueing_truth.py, test_capacity_coverage.py, and
# tests/integration/test_capacity_proof.py): eight slots holding a request 10 + 3 × 2 = 16 ms (500 req/s at most),
# met by TTFT p95 ≤ 30 ms up to 437.4 req/s; two slots holding one 20 + 3 × 5 = 35 ms (57 req/s), met by TTFT
# p95 ≤ 80 ms up to 38.37 req/s
EIGHT = SlotServer(slots=8, prefill_ms=10.0, tpot_ms=2.0, output_tokens=4)
TWO = SlotServer(slots=2, prefill_ms=20.0, tpot_ms=5.0, output_tokens=4)


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    """``n`` Poisson arrival times at ``rate`` per second from 0 (the unit-rate arrivals of ``seed``, scaled)."""
    return _unit_arrivals(n, seed) / rate


@functools.lru_cache(maxsize=4)
def _unit_arrivals(n: int, seed: int) -> np.ndarray:
    times = np.cumsum(np.random.default_rng(seed).exponential(1.0, n))
    times.flags.writeable = False
    return times


def fifo_waits(arrivals: np.ndarray, services: np.ndarray, c: int) -> np.ndarray:
    """Waiting times in a FIFO queue with ``c`` servers (Kiefer–Wolfowitz): each customer, in arrival order, takes
    the server that frees first."""
    free = [0.0] * c
    waits = np.empty(arrivals.size)
    for i, (a, s) in enumerate(zip(arrivals.tolist(), services.tolist(), strict=True)):
        first = heapq.heappop(free)
        start = max(a, first)
        waits[i] = start - a
        heapq.heappush(free, start + s)
    return waits


def mdc_waits(arrivals: np.ndarray, c: int, d: float) -> np.ndarray:
    """Waiting times in a FIFO queue with ``c`` servers and one fixed service time ``d``, ``arrivals`` sorted (the
    module docstring's recursion)."""
    starts = np.empty(arrivals.size, dtype="float64")
    for r in range(c):
        a = arrivals[r::c]
        k = np.arange(a.size) * d
        starts[r::c] = k + np.maximum.accumulate(a - k)
    waits: np.ndarray = starts - arrivals
    return waits


def erlang_c_mean_wait(rate: float, service_s: float, c: int) -> float:
    """Mean wait in M/M/c: Erlang C's probability of waiting ``C(c, a)`` times ``1 / (c·μ − λ)``."""
    a = rate * service_s
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    wait_prob = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return wait_prob * service_s / (c - a)


def md1_mean_wait(rate: float, d: float) -> float:
    """Mean wait in M/D/1 (Pollaczek–Khinchine): ``ρ·D / (2(1 − ρ))``."""
    rho = rate * d
    return rho * d / (2 * (1 - rho))


def md1_wait_cdf(t: float, rate: float, d: float) -> float:
    """``P(W ≤ t)`` in M/D/1, Erlang's closed form: ``(1 − ρ) Σ_{k=0}^{⌊t/D⌋} (λ(kD − t))^k / k! · e^{−λ(kD − t)}``."""
    rho = rate * d
    return (1 - rho) * sum(
        (rate * (k * d - t)) ** k / math.factorial(k) * math.exp(-rate * (k * d - t))
        for k in range(int(t // d) + 1)
    )


def ttft_p95(server: SlotServer, rate: float, n: int = 2_000_000, seed: int = 11) -> float:
    """The stationary TTFT p95 (wait + prefill) at Poisson ``rate``: ``n`` customers, the first 2 % left out as
    warm-up."""
    waits = mdc_waits(poisson_arrivals(rate, n, seed), server.slots, server.service_s)
    return float(np.percentile(waits[n // 50 :], 95)) + server.prefill_s


@functools.cache
def exact_rate(server: SlotServer, limit_s: float, seed: int = 11) -> float:
    """The highest Poisson rate whose stationary TTFT p95 is within ``limit_s``, by bisection (to 10⁻⁵ relative)."""
    low, high = 0.05 * server.capacity_rps, 0.999 * server.capacity_rps
    assert ttft_p95(server, low, seed=seed) <= limit_s < ttft_p95(server, high, seed=seed)
    while high - low > 1e-5 * high:
        mid = (low + high) / 2
        low, high = (mid, high) if ttft_p95(server, mid, seed=seed) <= limit_s else (low, mid)
    return (low + high) / 2
