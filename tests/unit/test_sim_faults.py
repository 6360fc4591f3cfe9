"""Fault injection draws: configured probabilities within sampling error, reproducible with the seed."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from loadtest.sim.faults import FAULT_KINDS, STREAM_FAULTS, FaultConfig, FaultInjector, FaultPlan

MIX = FaultConfig(
    http_429=0.05,
    http_500=0.03,
    http_503=0.02,
    stream_cut=0.10,
    garbage_line=0.05,
    stall=0.04,
    error_event=0.06,
    stall_s=1.5,
)


def draws(config: FaultConfig, seed: int, n: int, *, stream: bool = True) -> list[FaultPlan | None]:
    injector = FaultInjector(config, seed)
    return [injector.draw(64, stream) for _ in range(n)]


def test_each_fault_strikes_with_its_probability() -> None:
    n = 40_000
    seen = Counter(p.kind if p else None for p in draws(MIX, seed=3, n=n))
    for kind, p in MIX.probabilities().items():
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(seen[kind] - n * p) < 4.5 * sigma, (kind, seen[kind], n * p)
    clean = 1 - sum(MIX.probabilities().values())
    assert abs(seen[None] - n * clean) < 4.5 * math.sqrt(n * clean * (1 - clean))


def test_draws_are_reproducible_with_the_seed() -> None:
    assert draws(MIX, seed=11, n=500) == draws(MIX, seed=11, n=500)
    assert draws(MIX, seed=11, n=500) != draws(MIX, seed=12, n=500)
    own = FaultConfig(http_500=0.5, seed=7)
    assert draws(own, seed=1, n=200) == draws(own, seed=2, n=200)  # the config's own seed wins


def test_stream_faults_strike_mid_stream_and_only_on_streams() -> None:
    plans = [p for p in draws(MIX, seed=5, n=2_000) if p is not None]
    for plan in plans:
        if plan.kind in STREAM_FAULTS:
            assert plan.in_stream and plan.after_tokens == 32 and plan.stall_s == 1.5
        else:
            assert not plan.in_stream and plan.after_tokens == 0
    assert {p.kind for p in plans} == set(FAULT_KINDS)
    plain = [p for p in draws(MIX, seed=5, n=2_000, stream=False) if p is not None]
    assert plain and all(p.kind in ("http_429", "http_500", "http_503") for p in plain)
    # the same draws as for streams: a non-streamed request loses its stream fault, keeps its HTTP one
    assert len(plain) == sum(p.kind not in STREAM_FAULTS for p in plans)
    assert FaultInjector(FaultConfig(stream_cut=1.0), 0).draw(1, True) == FaultPlan("stream_cut", 0, 2.0)


def test_no_faults_when_inactive() -> None:
    assert not FaultConfig().active and MIX.active
    assert draws(FaultConfig(), seed=0, n=100) == [None] * 100
    assert draws(FaultConfig(http_503=1.0), seed=0, n=10) == [FaultPlan("http_503")] * 10


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="within"):
        FaultConfig(stall=1.5)
    with pytest.raises(ValueError, match="add up"):
        FaultConfig(http_500=0.6, stream_cut=0.6)
    with pytest.raises(ValueError, match="stall_s"):
        FaultConfig(stall=0.1, stall_s=0)
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        FaultConfig.from_mapping({"boom": 0.1})
    built = FaultConfig.from_mapping({"http_503": 0.05, "stall": 0.01}, stall_s=3.0)
    assert built == FaultConfig(http_503=0.05, stall=0.01, stall_s=3.0)
