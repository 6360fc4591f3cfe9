"""The simulator's fixed-slots model (:mod:`loadtest.sim.slots`) driven by a discrete-event loop: hand-computed
timelines, and its waits equal to the M/D/c recursion's on Poisson arrivals."""

from __future__ import annotations

import heapq
import random

import numpy as np
import pytest

from loadtest.errors import ConfigError
from loadtest.sim.batching import BatchRequest
from loadtest.sim.config import SimConfig
from loadtest.sim.slots import SlotPool
from tests.queueing import mdc_waits


def drive(pool: SlotPool, arrivals: list[tuple[float, BatchRequest]]) -> dict[int, list[float]]:
    """Token times of each request, as the server runs the pool: a submit starts every idle slot at the arrival's
    time; a slot's next step starts when its last one ends (absolute deadlines)."""
    events: list[tuple[float, int, int]] = []  # (time, 0 = a slot's step ends / 1 = an arrival, which)
    for i, (t, _) in enumerate(arrivals):
        heapq.heappush(events, (t, 1, i))
    idle = [True] * len(pool.lanes)
    tokens: dict[int, list[float]] = {}

    def start(index: int, now: float) -> None:
        plan = pool.lanes[index].next_step()
        idle[index] = plan is None
        if plan is not None:
            heapq.heappush(events, (now + plan.duration_s, 0, index))

    while events:
        now, kind, which = heapq.heappop(events)
        if kind == 1:
            home = pool.submit_all([arrivals[which][1]])
            for index in pool.wake(home):
                if idle[index]:
                    start(index, now)
            continue
        for event in pool.lanes[which].finish_step():
            if event.tokens:
                tokens.setdefault(event.request_id, []).append(now)
            elif event.finished:
                tokens.setdefault(event.request_id, [])
        start(which, now)
    return tokens


def test_one_slot_serves_in_arrival_order_with_fixed_times() -> None:
    # prefill 50 ms, 10 ms per further token, 4 tokens: each request holds the slot 50 + 3 × 10 = 80 ms
    pool = SlotPool(1, 0.050, 0.010)
    got = drive(
        pool, [(0.0, BatchRequest(1, 10, 4)), (0.0, BatchRequest(2, 10, 4)), (0.1, BatchRequest(3, 10, 4))]
    )
    assert got[1] == pytest.approx([0.05, 0.06, 0.07, 0.08])
    assert got[2] == pytest.approx([0.13, 0.14, 0.15, 0.16])  # waited 80 ms for the slot
    assert got[3] == pytest.approx([0.21, 0.22, 0.23, 0.24])  # arrived at 0.1, the slot freed at 0.16
    assert pool.outstanding == 0 and pool.running == 0 and pool.waiting == 0


def test_n_slots_serve_n_at_once_and_a_prefill_only_request_leaves_after_its_prefill() -> None:
    pool = SlotPool(2, 0.020, 0.005)
    arrivals = [(0.0, BatchRequest(i, 5, 3)) for i in range(1, 4)] + [(0.0, BatchRequest(9, 5, 0))]
    got = drive(pool, arrivals)
    # 1 and 2 at once (first token 20 ms, hold 30 ms); 3 and the embedding take the slots freed at 30 ms
    assert got[1] == got[2] == pytest.approx([0.020, 0.025, 0.030])
    assert got[3] == pytest.approx([0.050, 0.055, 0.060])
    assert got[9] == []  # finished after its prefill, at 50 ms, without a token


def test_a_cancelled_request_leaves_the_queue_or_frees_its_slot() -> None:
    pool = SlotPool(1, 0.010, 0.010)
    pool.submit_all([BatchRequest(1, 1, 5), BatchRequest(2, 1, 5), BatchRequest(3, 1, 5)])
    slot = pool.lanes[0]
    assert slot.next_step() is not None and slot.request_id == 1
    assert pool.cancel(2) and pool.waiting == 1  # queued: gone
    assert pool.cancel(1) and slot.finish_step() == []  # held: its step ends without a token
    plan = slot.next_step()
    assert plan is not None and plan.admitted == (3,)
    assert not pool.cancel(42)
    with pytest.raises(ValueError, match="already queued"):
        pool.submit_all([BatchRequest(3, 1, 1)])


@pytest.mark.parametrize(("slots", "rate"), [(1, 40.0), (3, 110.0), (8, 450.0)])
def test_the_pool_is_the_m_d_c_queue(slots: int, rate: float) -> None:
    """Poisson arrivals through the pool: every TTFT is the M/D/c recursion's wait + prefill (to rounding)."""
    prefill, tpot, n_out = 0.010, 0.002, 4
    rng = random.Random(slots)
    t, arrivals = 0.0, []
    for i in range(3000):
        t += rng.expovariate(rate)
        arrivals.append((t, BatchRequest(i, 8, n_out)))
    got = drive(SlotPool(slots, prefill, tpot), arrivals)
    ttft = np.array([got[i][0] - a for i, (a, _) in enumerate(arrivals)])
    waits = mdc_waits(np.array([a for a, _ in arrivals]), slots, prefill + (n_out - 1) * tpot)
    assert np.abs(ttft - (waits + prefill)).max() < 1e-9
    assert (waits > 0).mean() > 0.1  # the queue was exercised
    gaps = np.diff(np.array([got[i] for i in range(len(arrivals))]), axis=1)
    assert np.allclose(gaps, tpot)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"prefill_ms": 5.0}, "give slots too"),
        ({"slots": 4, "prefill_ms": 5.0}, "needs prefill_ms and tpot_ms"),
        ({"slots": 4, "prefill_ms": 5.0, "tpot_ms": 0.0}, "tpot_ms must be a positive number"),
        ({"slots": 0, "prefill_ms": 5.0, "tpot_ms": 1.0}, "slots must be a positive integer"),
        ({"slots": 4, "prefill_ms": 5.0, "tpot_ms": 1.0, "replicas": 2}, "one server"),
        ({"slots": 4, "prefill_ms": 5.0, "tpot_ms": 1.0, "chunks": 2}, "one server"),
        ({"slots": 4, "prefill_ms": 5.0, "tpot_ms": 1.0, "jitter_cv": 0.1}, "fixed times"),
    ],
)
def test_fixed_slots_settings_that_cannot_be(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimConfig(**settings)  # type: ignore[arg-type]


def test_slowdown_scales_both_times() -> None:
    pool = SimConfig(slots=2, prefill_ms=10.0, tpot_ms=4.0, slowdown=1.5).serving_model()
    assert isinstance(pool, SlotPool)
    assert (pool.prefill_s, pool.tpot_s, len(pool.lanes)) == (pytest.approx(0.015), pytest.approx(0.006), 2)
