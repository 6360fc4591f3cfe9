"""The automatic sweep's rules: rates between baseline and saturation, and when to stop."""

from __future__ import annotations

import pytest

from loadtest.engine.sweep import observe, sweep_rates, sweep_verdict
from loadtest.errors import ConfigError
from loadtest.spec.assemble import Overrides, scenario_from_flags
from tests.helpers import one_a_second, window


def record(
    scheduled: float, latency: float, cls: str = "chat", ttft: float = 0.1, ok: bool = True
) -> dict[str, object]:
    return {
        "error_class": None if ok else "server_error",
        "scheduled_at": scheduled,
        "started_at": scheduled,
        "first_token_at": scheduled + ttft,
        "ended_at": scheduled + latency,
        "output_tokens": 11,
        "request_class": cls,
    }


def test_rates_lie_strictly_between() -> None:
    assert sweep_rates(1.0, 11.0, 4) == pytest.approx([3.0, 5.0, 7.0, 9.0])


def test_a_healthy_stage_goes_on() -> None:
    obs = observe([record(i * 0.1, 1.0) for i in range(60)])
    assert sweep_verdict(obs, {"chat": {"ttft_p95": 0.5}}) is None


def test_a_clearly_broken_slo_stops() -> None:
    obs = observe([record(i * 0.1, 1.0, ttft=0.9) for i in range(60)])
    reason = sweep_verdict(obs, {"chat": {"ttft_p95": 0.5}})
    assert reason is not None and "ttft_p95" in reason
    # only 1.2× over: not "clearly" broken, the sweep measures it
    assert (
        sweep_verdict(
            observe([record(i * 0.1, 1.0, ttft=0.6) for i in range(60)]), {"chat": {"ttft_p95": 0.5}}
        )
        is None
    )


def test_queue_growth_stops() -> None:
    # latency from intended start grows from 0.1 s to 3 s across the stage: arrivals outpace service
    obs = observe([record(i * 0.1, 1.0, ttft=0.1 + i * 0.05) for i in range(60)])
    reason = sweep_verdict(obs, {})
    assert reason is not None and "queue grows" in reason


def test_no_free_user_stops_and_failures_are_ignored() -> None:
    obs = observe([record(i * 0.1, 1.0) for i in range(20)] + [record(9.0, 9.0, ok=False)])
    assert obs.ok == 20
    obs.no_free_user = 3
    assert "no free user" in (sweep_verdict(obs, {}) or "")


def test_sweep_from_flags() -> None:
    scenario = scenario_from_flags(Overrides(sweep_points=4, duration_s=5.0, max_concurrency=64))
    assert scenario.stages == ()
    assert scenario.sweep is not None
    assert scenario.sweep.points == 4 and scenario.sweep.max_concurrency == 64
    assert scenario.sweep.duration_s == 5.0
    with pytest.raises(ConfigError, match="chooses its own stages"):
        scenario_from_flags(Overrides(sweep_points=4, rates=(1.0,)))


def test_load_check_tells_a_late_generator_from_a_capped_stage() -> None:
    import pandas as pd

    from analysis import check_load

    def frame(lag: float) -> pd.DataFrame:
        rows: pd.DataFrame = one_a_second("s", lag)
        return rows

    meta = {"label": "s", "start": 0.0, "window_end": 100.0, "target": {"kind": "rate", "rate": 1.0}}
    (ok,) = check_load(frame(0.001), [window(meta)])
    assert ok.kept_up and not ok.capped and ok.offered_rps == 1.0
    (late,) = check_load(frame(0.2), [window(meta)])
    assert not late.kept_up and "generator lag" in (late.reason or "")
    (capped,) = check_load(frame(0.2), [window({**meta, "no_free_user": 12})])
    assert capped.kept_up and capped.capped and "free user" in (capped.reason or "")


def test_a_python_scenarios_completed_rate_counts_flows_not_requests() -> None:
    obs = observe([{"started_at": 0.0, "scheduled_at": 0.0, "ended_at": 1.0, "error_class": None}] * 18)
    obs.window_s = 3.0
    assert obs.completed_rate == 6.0  # 18 requests in 3 s
    obs.per_flow, obs.flows_ok = True, 6  # ... of 6 flows of 3 calls that ended ok
    assert obs.completed_rate == 2.0
