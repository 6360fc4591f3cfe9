"""The simulator's scale model on a fake clock: scale to zero after idle, the cold start (held or refused), the
scale-out ramp, and what SimConfig allows."""

from __future__ import annotations

import pytest

from loadtest.client.clock import FakeClock
from loadtest.errors import ConfigError
from loadtest.sim.config import SimConfig
from loadtest.sim.scaling import Autoscaler, ScalingConfig


def scaler(clock: FakeClock, **config: object) -> Autoscaler:
    return Autoscaler(ScalingConfig(**config), clock)  # type: ignore[arg-type]


def test_the_endpoint_scales_to_zero_after_the_idle_period_and_not_before() -> None:
    clock = FakeClock(start=100.0)
    s = scaler(clock, scale_to_zero=True, scale_down_after_s=30.0, max_replicas=2)
    assert s.replicas == 2 and s.due() == 130.0  # warm at its full size; the scale-down is armed
    clock.now = 129.999
    assert s.advance(outstanding=0) == 2
    clock.now = 130.0
    assert s.advance(outstanding=0) == 0
    assert s.cold and s.due() is None  # at zero nothing is due until a request comes
    assert s.history == [(100.0, 2), (130.0, 0)]
    assert s.counts == {"scale_ups_from_zero": 0, "scale_outs": 0, "scale_downs": 1}


def test_activity_and_outstanding_requests_keep_the_endpoint_up() -> None:
    clock = FakeClock(start=0.0)
    s = scaler(clock, scale_to_zero=True, scale_down_after_s=10.0)
    clock.now = 4.0
    assert s.arrive() == "serve"
    assert s.due() == 14.0  # ten seconds after the last arrival
    clock.now = 14.0
    assert s.advance(outstanding=1) == 1  # a request still running: not idle
    clock.now = 20.0
    s.touch()  # it finished
    clock.now = 29.9
    assert s.advance(outstanding=0) == 1
    clock.now = 30.0
    assert s.advance(outstanding=0) == 0


def test_a_request_at_zero_is_held_for_the_cold_start_then_the_replicas_serve() -> None:
    clock = FakeClock(start=0.0)
    s = scaler(clock, scale_to_zero=True, scale_down_after_s=5.0, cold_start_s=15.0, max_replicas=3)
    clock.now = 5.0
    s.advance(outstanding=0)
    clock.now = 60.0
    assert s.arrive() == "hold"  # starts the cold start
    assert s.starting and s.due() == 75.0
    clock.now = 70.0
    assert s.arrive() == "hold"  # a second request does not restart it
    assert s.due() == 75.0
    assert s.advance(outstanding=2) == 0
    clock.now = 75.0
    assert s.advance(outstanding=2) == 3  # without autoscaling it comes back at its full size
    assert not s.starting
    assert s.arrive() == "serve"
    assert s.counts["scale_ups_from_zero"] == 1
    assert s.history == [(0.0, 3), (5.0, 0), (75.0, 3)]


def test_the_503_reply_says_when_to_retry_in_whole_seconds() -> None:
    clock = FakeClock(start=0.0)
    s = scaler(clock, scale_to_zero=True, scale_down_after_s=1.0, cold_start_s=2.5, cold_start_reply="503")
    clock.now = 1.0
    s.advance(outstanding=0)
    clock.now = 10.0
    assert s.arrive() == "refuse"
    assert s.retry_after_s() == 3  # 2.5 s left, rounded up
    clock.now = 11.5
    assert s.arrive() == "refuse"
    assert s.retry_after_s() == 1  # exactly one second left
    clock.now = 12.4
    assert s.retry_after_s() == 1  # never less than one
    clock.now = 12.5
    assert s.advance(outstanding=0) == 1


def test_scale_out_adds_one_replica_per_period_while_requests_do_not_fit() -> None:
    clock = FakeClock(start=0.0)
    s = scaler(clock, scale_out_s=4.0, min_replicas=1, max_replicas=3, scale_down_after_s=100.0)
    assert s.replicas == 1  # autoscaling starts at the minimum
    s.demand(outstanding=8, per_replica=8)
    assert not s.starting  # 8 fit in one replica's batch
    clock.now = 1.0
    s.demand(outstanding=9, per_replica=8)
    assert s.starting and s.due() == 5.0
    clock.now = 3.0
    s.demand(outstanding=30, per_replica=8)
    assert s.due() == 5.0  # one replica at a time
    clock.now = 5.0
    assert s.advance(outstanding=30) == 2
    s.demand(outstanding=30, per_replica=8)  # 30 > 2 x 8: the next one
    clock.now = 9.0
    assert s.advance(outstanding=30) == 3
    s.demand(outstanding=30, per_replica=8)
    assert not s.starting  # at the maximum
    assert s.history == [(0.0, 1), (5.0, 2), (9.0, 3)]
    assert s.counts["scale_outs"] == 2
    clock.now = 109.0
    assert s.advance(outstanding=0) == 1  # idle: back to the minimum (no scale to zero)


def test_from_zero_an_autoscaled_endpoint_comes_back_at_its_minimum_and_ramps() -> None:
    clock = FakeClock(start=0.0)
    s = scaler(
        clock, scale_to_zero=True, scale_down_after_s=2.0, cold_start_s=3.0, scale_out_s=1.0, max_replicas=4
    )
    clock.now = 2.0
    assert s.advance(outstanding=0) == 0
    clock.now = 10.0
    assert s.arrive() == "hold"
    s.demand(outstanding=32, per_replica=8)
    assert s.due() == 13.0  # no scale-out while cold: the cold start comes first
    clock.now = 13.0
    times = []
    for _ in range(5):
        assert s.advance(outstanding=32) >= 1
        s.demand(outstanding=32, per_replica=8)
        times.append((clock.now, s.replicas))
        due = s.due()
        assert due is not None
        clock.now = due
    # the last due is the scale-down check, 2 s after the last replica came up (busy: it stays)
    assert times == [(13.0, 1), (14.0, 2), (15.0, 3), (16.0, 4), (18.0, 4)]


def test_a_scale_down_calls_off_a_scale_out_in_progress() -> None:
    clock = FakeClock(start=0.0)
    s = scaler(clock, scale_to_zero=True, scale_down_after_s=2.0, scale_out_s=5.0, max_replicas=2)
    s.demand(outstanding=100, per_replica=8)
    assert s.due() == 2.0  # the scale-down (2 s) comes before the new replica (5 s)
    clock.now = 2.0
    assert s.advance(outstanding=0) == 0
    assert not s.starting and s.due() is None


def test_scaling_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cold_start_s must be a positive"):
        ScalingConfig(cold_start_s=0)
    with pytest.raises(ValueError, match="hold or 503"):
        ScalingConfig(cold_start_reply="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min"):
        ScalingConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ConfigError, match="need mode='pt' and no slots"):
        SimConfig(mode="ppt", scale_to_zero=True)
    with pytest.raises(ConfigError, match="need mode='pt' and no slots"):
        SimConfig(slots=2, prefill_ms=10, tpot_ms=5, scale_out_s=1.0)
    with pytest.raises(ConfigError, match="scale_down_after_s"):
        SimConfig(scale_to_zero=True, scale_down_after_s=-1.0)


def test_sim_config_sizes_the_scale_from_its_band() -> None:
    assert SimConfig().scaling_config() is None  # a fixed size unless asked
    config = SimConfig(chunk_size=1000, min_provisioned_throughput=1000, max_provisioned_throughput=4000,
                       scale_out_s=2.0)  # fmt: skip
    scaling = config.scaling_config()
    assert scaling is not None
    assert (scaling.min_replicas, scaling.max_replicas, scaling.warm_replicas) == (1, 4, 1)
    zero = SimConfig(chunks=3, scale_to_zero=True).scaling_config()
    assert zero is not None and (zero.warm_replicas, zero.floor, zero.cold_start_s) == (3, 0, 15.0)
    assert zero.scale_down_after_s == 1800.0 and zero.hold_timeout_s == 597.0  # Databricks' figures
