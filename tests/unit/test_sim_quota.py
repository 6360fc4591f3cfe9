"""Pay-per-token quotas on a fake clock: sliding windows, reservation and credit-back, Retry-After, the rate truth."""

from __future__ import annotations

import heapq

import pytest

from loadtest.client.clock import FakeClock
from loadtest.errors import ConfigError
from loadtest.model.quota import QuotaLimits, ppt_admitted_rate
from loadtest.sim.config import SimConfig
from loadtest.sim.quota import Quota, Rejection, Ticket


def quota(clock: FakeClock, **limits: int) -> Quota:
    return Quota(QuotaLimits(**limits), clock)


def admitted(result: Ticket | Rejection) -> Ticket:
    assert isinstance(result, Ticket), result
    return result


def rejected(result: Ticket | Rejection) -> Rejection:
    assert isinstance(result, Rejection), result
    return result


def test_itpm_admits_up_to_the_limit_then_429_with_the_time_until_budget_frees() -> None:
    clock = FakeClock(start=0.0)
    q = quota(clock, itpm=10_000)
    for t in range(10):
        clock.now = float(t)
        admitted(q.admit(1_000, 50))
    assert q.usage() == {"input_tokens_per_minute": 10_000}
    clock.now = 10.0
    refusal = rejected(q.admit(1_000, 50))
    assert refusal == Rejection("input_tokens_per_minute", 10_000, 11_000, 50)  # the t=0 charge leaves at 60
    assert q.usage() == {"input_tokens_per_minute": 10_000}  # a rejected request consumes nothing
    clock.now = 10.0
    assert rejected(q.admit(2_500, 50)).retry_after_s == 52  # needs the charges of t=0, 1 and 2 gone: 62 − 10
    clock.now = 59.9
    assert rejected(q.admit(1_000, 50)).retry_after_s == 1  # 0.1 s rounds up, never 0
    clock.now = 60.0  # the window is (t − 60, t]: the charge made at 0 is gone
    admitted(q.admit(1_000, 50))
    assert rejected(q.admit(1, 50)).retry_after_s == 1  # the next frees at 61


def test_the_documented_429_body() -> None:
    refusal = Rejection("input_tokens_per_minute", 200_000, 200_150, 15)
    assert refusal.openai_detail() == {
        "message": "Rate limit exceeded: ITPM limit of 200,000 tokens reached",
        "type": "rate_limit_exceeded",
        "code": 429,
        "limit_type": "input_tokens_per_minute",
        "limit": 200000,
        "current": 200150,
        "retry_after": 15,
    }
    assert refusal.databricks_message("ep").startswith("Exceeded workspace ITPM rate limit for ep")


def test_otpm_reserves_max_tokens_and_credits_back_the_unused_part_at_once() -> None:
    clock = FakeClock(start=100.0)
    q = quota(clock, otpm=1_000)
    first = admitted(q.admit(10, 600))
    assert q.usage() == {"output_tokens_per_minute": 600}  # reserved, nothing produced yet
    refusal = rejected(q.admit(10, 600))
    assert (refusal.limit_type, refusal.current) == ("output_tokens_per_minute", 1_200)
    assert refusal.retry_after_s == 60  # the reservation would stay until its charge expires
    clock.advance(2.0)
    q.release(first, produced=100)  # finished after 100 tokens: 500 come back now
    assert q.usage() == {"output_tokens_per_minute": 100}
    second = admitted(q.admit(10, 600))
    q.release(second, produced=600)
    assert q.usage() == {"output_tokens_per_minute": 700}
    clock.now = 160.0  # the first charge (100 produced tokens) keeps its admission time, 100
    assert q.usage() == {"output_tokens_per_minute": 600}
    clock.now = 162.0
    assert q.usage() == {"output_tokens_per_minute": 0}
    q.release(first, produced=0)  # a release after the charge left the window changes nothing
    assert q.usage() == {"output_tokens_per_minute": 0}


def test_cancel_refunds_everything_a_request_charged() -> None:
    clock = FakeClock(start=0.0)
    q = quota(clock, itpm=100, otpm=100, qph=10, qps=10)
    ticket = admitted(q.admit(40, 30))
    assert q.usage() == {
        "input_tokens_per_minute": 40,
        "output_tokens_per_minute": 30,
        "queries_per_hour": 1,
        "queries_per_second": 1,
    }
    q.cancel(ticket)
    assert set(q.usage().values()) == {0}


def test_qps_counts_requests_in_a_one_second_window() -> None:
    clock = FakeClock(start=0.0)
    q = quota(clock, qps=2)
    admitted(q.admit(5, 5))
    clock.now = 0.1
    admitted(q.admit(5, 5))
    clock.now = 0.2
    refusal = rejected(q.admit(5, 5))
    assert (refusal.limit_type, refusal.limit, refusal.current, refusal.retry_after_s) == (
        "queries_per_second",
        2,
        3,
        1,
    )
    clock.now = 1.0
    admitted(q.admit(5, 5))
    clock.now = 1.05
    rejected(q.admit(5, 5))
    clock.now = 1.1
    admitted(q.admit(5, 5))


def test_qph_counts_requests_per_hour_in_one_second_buckets() -> None:
    clock = FakeClock(start=0.0)
    q = quota(clock, qph=3)
    for t in (0.2, 0.5, 10.0):
        clock.now = t
        admitted(q.admit(1, 1))
    clock.now = 20.0
    refusal = rejected(q.admit(1, 1))
    assert refusal.limit_type == "queries_per_hour"
    assert refusal.retry_after_s == 3601 - 20  # the queries of second (0, 1] leave at 3601
    clock.now = 3600.5
    rejected(q.admit(1, 1))
    clock.now = 3601.0
    admitted(q.admit(1, 1))
    admitted(q.admit(1, 1))
    rejected(q.admit(1, 1))


def test_the_limit_reported_is_the_one_that_frees_last() -> None:
    clock = FakeClock(start=0.0)
    q = quota(clock, itpm=1_000, qps=1)
    admitted(q.admit(1_000, 1))
    clock.now = 0.5
    refusal = rejected(q.admit(10, 1))  # both violated: QPS frees at 1, ITPM at 60
    assert (refusal.limit_type, refusal.retry_after_s) == ("input_tokens_per_minute", 60)
    clock.now = 30.0
    refusal = rejected(q.admit(10, 1))
    assert (refusal.limit_type, refusal.retry_after_s) == ("input_tokens_per_minute", 30)


def test_a_request_larger_than_a_limit_is_never_admitted() -> None:
    q = quota(FakeClock(start=0.0), otpm=100)
    refusal = rejected(q.admit(1, 101))
    assert (refusal.limit_type, refusal.current, refusal.retry_after_s) == (
        "output_tokens_per_minute",
        101,
        60,
    )


def test_limits_validate() -> None:
    with pytest.raises(ValueError, match="itpm"):
        QuotaLimits(itpm=0)
    with pytest.raises(ValueError, match="qps"):
        QuotaLimits(qps=True)
    assert QuotaLimits(otpm=5, qps=1).by_type() == {"output_tokens_per_minute": 5, "queries_per_second": 1}


def test_sim_config_keeps_quotas_to_pay_per_token_mode() -> None:
    assert SimConfig().quota_limits() is None
    assert SimConfig(mode="ppt").quota_limits() is None
    assert SimConfig(mode="ppt", itpm=10, qps=2).quota_limits() == QuotaLimits(itpm=10, qps=2)
    with pytest.raises(ConfigError, match="mode='ppt'"):
        SimConfig(itpm=10)
    with pytest.raises(ConfigError, match="mode='pt'"):
        SimConfig(mode="ppt", chunks=2)
    with pytest.raises(ConfigError, match="mode"):
        SimConfig(mode="fast")  # type: ignore[arg-type]


def simulate(
    limits: QuotaLimits,
    rps: float,
    prompt: int,
    max_tokens: int,
    output: int,
    duration_s: float,
    horizon_s: float,
    warmup_s: float,
) -> float:
    """Offer ``rps`` evenly spaced requests to a :class:`Quota`; each admitted one finishes ``duration_s`` later
    after ``output`` tokens. Returns the admitted rate measured after ``warmup_s``."""
    clock = FakeClock(start=0.0)
    q = Quota(limits, clock)
    finishing: list[tuple[float, int, Ticket]] = []
    count = 0
    k = 0
    while (at := k / rps) <= horizon_s:
        while finishing and finishing[0][0] <= at:
            clock.now, _, ticket = heapq.heappop(finishing)
            q.release(ticket, output)
        clock.now = at
        result = q.admit(prompt, max_tokens)
        if isinstance(result, Ticket):
            count += at >= warmup_s
            heapq.heappush(finishing, (at + duration_s, k, result))
        k += 1
    return count / (horizon_s - warmup_s)


CASES = [
    # limits, rps, prompt, max_tokens, output, duration, expected binding
    (QuotaLimits(itpm=200_000, otpm=40_000, qps=20), 5.0, 1_000, 150, 150, 2.0, "input_tokens_per_minute"),
    (QuotaLimits(itpm=200_000, otpm=40_000, qps=20), 5.0, 500, 150, 150, 2.0, "output_tokens_per_minute"),
    (QuotaLimits(otpm=40_000), 10.0, 1_000, 300, 150, 0.0, "output_tokens_per_minute"),
    (QuotaLimits(otpm=40_000), 30.0, 1_000, 1_000, 100, 5.0, "output_tokens_per_minute"),  # reservation
    (QuotaLimits(itpm=10**7, qps=3), 10.0, 100, 50, 50, 1.0, "queries_per_second"),
    (QuotaLimits(qph=360, qps=5), 1.0, 100, 50, 50, 1.0, "queries_per_hour"),
    (QuotaLimits(itpm=200_000, otpm=40_000, qps=20), 1.0, 1_000, 150, 150, 2.0, None),
]


@pytest.mark.parametrize(("limits", "rps", "prompt", "max_tokens", "output", "duration", "binding"), CASES)
def test_ppt_admitted_rate_matches_a_simulated_sequence_of_admissions(
    limits: QuotaLimits,
    rps: float,
    prompt: int,
    max_tokens: int,
    output: int,
    duration: float,
    binding: str | None,
) -> None:
    rate, bound = ppt_admitted_rate(limits, rps, prompt, max_tokens, output, duration_s=duration)
    assert bound == binding
    window = 3600.0 if limits.qph is not None else 60.0
    measured = simulate(limits, rps, prompt, max_tokens, output, duration, 5 * window, 2 * window)
    assert measured == pytest.approx(rate, rel=0.015)
    if binding is None:
        assert rate == rps


def test_ppt_admitted_rate_caps_and_ties() -> None:
    limits = QuotaLimits(itpm=60_000, otpm=6_000, qph=3_600, qps=1)
    # ITPM 60,000 / (60·1,000) = 1/s, OTPM 6,000 / (60·100) = 1/s, QPH 1/s, QPS 1/s: ITPM comes first on a tie
    assert ppt_admitted_rate(limits, 2.0, 1_000, 100) == (1.0, "input_tokens_per_minute")
    assert ppt_admitted_rate(limits, 1.0, 1_000, 100) == (1.0, None)  # exactly at the cap: nothing refused
    # a reservation held longer lowers the OTPM cap: 6,000 / (60·50 + 10·50) per s
    rate, bound = ppt_admitted_rate(QuotaLimits(otpm=6_000), 5.0, 10, 100, 50, duration_s=10.0)
    assert bound == "output_tokens_per_minute" and rate == pytest.approx(6_000 / 3_500)
    assert ppt_admitted_rate(QuotaLimits(), 3.0, 10, 10) == (3.0, None)
    with pytest.raises(ValueError, match=">= 0"):
        ppt_admitted_rate(limits, -1.0, 1, 1)
