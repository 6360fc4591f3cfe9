"""The truth the capacity proofs are held to (:mod:`tests.queueing`), proven first: the FIFO queue simulation against
Erlang C and Pollaczek–Khinchine, the fast M/D/c recursion against it, percentiles against Erlang's M/D/1 waiting
time distribution, and the exact highest SLO-compliant Poisson rate of the two fixed-slots servers the proofs use."""

from __future__ import annotations

import numpy as np
import pytest

from tests.queueing import (
    EIGHT,
    TWO,
    SlotServer,
    erlang_c_mean_wait,
    exact_rate,
    fifo_waits,
    md1_mean_wait,
    md1_wait_cdf,
    mdc_waits,
    poisson_arrivals,
    ttft_p95,
)


def test_the_fifo_queue_simulation_meets_erlang_c() -> None:
    # M/M/3 at ρ = 0.8: Erlang C's mean wait; 10⁶ customers put the simulated mean within ~1 % (one s.d.)
    c, service, rate, n = 3, 1.0, 2.4, 1_000_000
    rng = np.random.default_rng(5)
    waits = fifo_waits(np.cumsum(rng.exponential(1 / rate, n)), rng.exponential(service, n), c)
    assert waits[n // 50 :].mean() == pytest.approx(erlang_c_mean_wait(rate, service, c), rel=0.04)


def test_the_m_d_c_recursion_is_the_fifo_queue_with_fixed_service() -> None:
    arrivals = poisson_arrivals(7.0, 50_000, seed=3)  # ρ = 7 × 0.5 / 4 = 0.875
    fixed = mdc_waits(arrivals, 4, 0.5)
    assert np.abs(fixed - fifo_waits(arrivals, np.full(arrivals.size, 0.5), 4)).max() < 1e-9
    assert (fixed > 0).mean() > 0.3


def test_m_d_1_mean_and_p95_meet_their_closed_forms() -> None:
    rate, d, n = 0.8, 1.0, 2_000_000
    waits = mdc_waits(poisson_arrivals(rate, n, seed=7), 1, d)[n // 50 :]
    assert waits.mean() == pytest.approx(md1_mean_wait(rate, d), rel=0.015)  # 0.8 / 0.4 = 2.0
    assert (waits == 0).mean() == pytest.approx(1 - rate * d, abs=0.005)
    low, high = 0.0, 20.0  # Erlang's distribution, solved for P(W ≤ t) = 0.95 (t ≈ 6.62 D)
    while high - low > 1e-9:
        mid = (low + high) / 2
        low, high = (mid, high) if md1_wait_cdf(mid, rate, d) < 0.95 else (low, mid)
    assert float(np.percentile(waits, 95)) == pytest.approx(low, rel=0.02)


@pytest.mark.parametrize(("server", "limit_s", "expected"), [(EIGHT, 0.030, 437.4), (TWO, 0.080, 38.37)])
def test_the_exact_slo_rate_of_the_proofs_servers(
    server: SlotServer, limit_s: float, expected: float
) -> None:
    exact = exact_rate(server, limit_s)
    print(f"\n{server}: exact {exact:.3f} req/s ({exact / server.capacity_rps:.1%} of c/D)")
    assert exact == pytest.approx(expected, rel=0.002)
    assert ttft_p95(server, exact * 0.99) <= limit_s < ttft_p95(server, exact * 1.01)
    # the truth's own Monte Carlo error: other seeds land within 0.5 %
    assert exact_rate(server, limit_s, seed=12) == pytest.approx(exact, rel=0.005)
