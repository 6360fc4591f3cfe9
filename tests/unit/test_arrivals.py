"""Arrival processes and the token-rate controller: statistics checked within sampling error."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from loadtest.spec.arrivals import ArrivalProcess, TokenRateController, arrival_times


def gaps(process: ArrivalProcess, rate: float, n: int = 20_000, seed: int = 1) -> np.ndarray:
    rng = random.Random(seed)
    return np.array([process.gap(rate, rng) for _ in range(n)])


def test_constant_is_exact() -> None:
    g = gaps(ArrivalProcess("constant"), 4.0, n=100)
    assert np.allclose(g, 0.25)


@pytest.mark.parametrize(
    ("process", "cv"),
    [
        (ArrivalProcess("poisson"), 1.0),
        (ArrivalProcess("gamma", burstiness=0.25), 2.0),
        (ArrivalProcess("gamma", burstiness=4.0), 0.5),
    ],
)
def test_mean_and_cv_within_sampling_error(process: ArrivalProcess, cv: float) -> None:
    rate = 10.0
    g = gaps(process, rate)
    # the mean of n gaps has standard error cv/(rate*sqrt(n)); allow 4 standard errors
    assert abs(g.mean() - 1 / rate) < 4 * cv / rate / math.sqrt(len(g))
    assert process.cv == pytest.approx(cv)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.06)


def test_arrival_times_are_seeded_and_within_duration() -> None:
    a = arrival_times(ArrivalProcess("poisson"), 50.0, 10.0, seed=7)
    b = arrival_times(ArrivalProcess("poisson"), 50.0, 10.0, seed=7)
    c = arrival_times(ArrivalProcess("poisson"), 50.0, 10.0, seed=8)
    assert a == b and a != c
    assert all(0 <= t < 10.0 for t in a)
    assert abs(len(a) - 500) < 4 * math.sqrt(500)


def test_labels() -> None:
    assert ArrivalProcess("poisson").label(2) == "poisson@2.00rps"
    assert ArrivalProcess("gamma", 0.5).label(2) == "gamma0.5@2.00rps"


def test_token_rate_from_prior_then_usage() -> None:
    ctl = TokenRateController(total_per_min=60_000, expected_input=800, expected_output=200)
    assert ctl.rate() == pytest.approx(1.0)  # 1000 tokens/s / 1000 tokens per request
    for _ in range(1_000):  # the server's chat template adds 200 prompt tokens
        ctl.observe(1000, 200)
    assert ctl.rate() == pytest.approx(1000 / 1200, rel=0.01)
    ctl.observe(None, 5)  # no usage: ignored
    assert ctl.rate() == pytest.approx(1000 / 1200, rel=0.01)


def test_token_rate_separate_targets_take_the_binding_one() -> None:
    ctl = TokenRateController(
        input_per_min=120_000, output_per_min=6_000, expected_input=1000, expected_output=200
    )
    # input allows 2 req/s, output allows 0.5 req/s
    assert ctl.rate() == pytest.approx(0.5)
    assert ctl.label() == "tokens@in120000+out6000tpm"


def test_token_rate_rejects_ambiguous_targets() -> None:
    with pytest.raises(ValueError, match="either"):
        TokenRateController(total_per_min=1, input_per_min=1, expected_input=1, expected_output=1)
    with pytest.raises(ValueError, match="needs"):
        TokenRateController(expected_input=1, expected_output=1)


def test_integral_correction_catches_up_after_a_wrong_prior() -> None:
    # prior expects 100 tokens per request, the server really uses 50: the base rate is half what is needed
    ctl = TokenRateController(total_per_min=6_000, expected_input=50, expected_output=50, prior_weight=1e9)
    t, arrivals, dt = 0.0, 0, 0.01
    next_arrival = 0.0
    while t < 60.0:
        if t >= next_arrival:
            arrivals += 1
            ctl.observe(25, 25)  # completes at once with half the expected tokens
            next_arrival = t + 1.0 / ctl.rate_at(t, arrivals)
        t += dt
    assert ctl.rate() == pytest.approx(1.0)  # the uncorrected rate would offer only half the target
    offered_tokens_per_min = arrivals * 50 / 60.0 * 60.0
    assert offered_tokens_per_min == pytest.approx(6_000, rel=0.05)


def test_rate_at_is_clamped() -> None:
    ctl = TokenRateController(total_per_min=6_000, expected_input=50, expected_output=50)
    base = ctl.rate()
    assert ctl.rate_at(10.0, 0) == pytest.approx(4 * base)  # far behind: at most 4×
    assert ctl.rate_at(1.0, 1_000) == pytest.approx(0.25 * base)  # far ahead: at least ¼×
