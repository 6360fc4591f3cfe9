"""The generator's self-check (:mod:`analysis.load_check`) on a saturated engine: a closed-loop stage has no schedule
to lag behind, so the engine's event-loop delay and CPU share decide whether it kept up."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analysis import DEFAULT_MAX_LOOP_DELAY_S, SATURATED_CPU_SHARE, StageLoad, check_load
from analysis.load_check import saturation
from tests.helpers import one_a_second, window

CLOSED = {"label": "c", "start": 0.0, "window_end": 100.0, "target": {"kind": "concurrency", "users": 4}}


def closed_loop(lag: float = 0.0) -> pd.DataFrame:
    """100 requests of stage ``c``, one a second, each started ``lag`` after it was due."""
    frame: pd.DataFrame = one_a_second("c", lag)
    return frame


def check(lag: float = 0.0, **stage: Any) -> StageLoad:
    (load,) = check_load(closed_loop(lag), [window({**CLOSED, **stage})])
    return load


def test_the_bounds() -> None:
    assert (DEFAULT_MAX_LOOP_DELAY_S, SATURATED_CPU_SHARE) == (0.015, 0.9)


def test_a_closed_loop_stage_whose_engine_was_saturated_did_not_keep_up() -> None:
    load = check(
        generator_cpu_share=0.97, loop_delay_p50_s=0.0089, loop_delay_p99_s=0.0415, loop_delay_max_s=0.0953
    )
    assert (load.loop_delay_p50_s, load.loop_delay_p99_s, load.loop_delay_max_s) == (0.0089, 0.0415, 0.0953)
    assert load.lag_p99_s == 0.0  # closed loop: no lag to give it away
    assert load.engine_saturated and not load.kept_up and not load.capped
    assert load.reason == "engine saturated: event-loop delay p99 41.5 ms > 15 ms, CPU 97% of a core"


@pytest.mark.parametrize(
    ("delay", "cpu", "reason"),
    [
        # the loop was late though the engine had under 90 % of a core (another process shared its core)
        (0.0543, 0.74, "engine saturated: event-loop delay p99 54.3 ms > 15 ms, CPU 74% of a core"),
        (0.1234, 0.99, "engine saturated: event-loop delay p99 123 ms > 15 ms, CPU 99% of a core"),
        # the bound itself: a delay of exactly 15 ms is not over it, 15.1 ms is
        (0.0151, 0.5, "engine saturated: event-loop delay p99 15.1 ms > 15 ms, CPU 50% of a core"),
        # a run from before the loop delay was measured: its CPU share alone, at 0.9 of a core and more
        (None, 0.95, "engine saturated: CPU 95% of a core ≥ 90%"),
        (None, 0.9, "engine saturated: CPU 90% of a core ≥ 90%"),
        (0.025, None, "engine saturated: event-loop delay p99 25.0 ms > 15 ms"),
    ],
)
def test_the_delay_or_without_it_the_cpu_share_saturates_the_engine(
    delay: float | None, cpu: float | None, reason: str
) -> None:
    stage: dict[str, Any] = {"generator_cpu_share": cpu}
    if delay is not None:
        stage["loop_delay_p99_s"] = delay
    load = check(**stage)
    assert (load.engine_saturated, load.kept_up, load.reason) == (True, False, reason)
    assert saturation(delay, cpu) == reason


@pytest.mark.parametrize(
    ("delay", "cpu"),
    [
        (0.0021, 0.30),
        (0.015, 0.89),
        # a whole core, the loop still on time (a tight loop of instant failures): its timestamps are on time
        (0.0095, 0.93),
        (0.0008, 1.0),
        (None, 0.89),
        (None, None),
    ],
)
def test_a_healthy_engine_kept_up(delay: float | None, cpu: float | None) -> None:
    stage: dict[str, Any] = {"generator_cpu_share": cpu}
    if delay is not None:
        stage.update(loop_delay_p50_s=delay / 4, loop_delay_p99_s=delay, loop_delay_max_s=delay * 2)
    load = check(**stage)
    assert (load.engine_saturated, load.kept_up, load.reason) == (False, True, None)
    assert load.loop_delay_p99_s == delay


def test_the_bound_can_be_given() -> None:
    (load,) = check_load(
        closed_loop(), [window({**CLOSED, "loop_delay_p99_s": 0.0085})], max_loop_delay_s=0.005
    )
    assert load.reason == "engine saturated: event-loop delay p99 8.5 ms > 5 ms"


def test_a_saturated_engine_in_a_capped_stage_did_not_keep_up_either() -> None:
    load = check(lag=0.2, no_free_user=12, generator_cpu_share=0.99, loop_delay_p99_s=0.045)
    assert load.capped and load.engine_saturated and not load.kept_up
    assert load.reason == (
        "engine saturated: event-loop delay p99 45.0 ms > 15 ms, CPU 99% of a core; "
        "12 arrivals waited for a free user (the in-flight cap was reached)"
    )


def test_a_late_and_saturated_generator_says_both() -> None:
    load = check(lag=0.2, target={"kind": "rate", "rate": 1.0}, generator_cpu_share=0.96)
    assert not load.kept_up
    assert load.reason == (
        "engine saturated: CPU 96% of a core ≥ 90%; generator lag p99 200 ms > 25 ms (see gen CPU)"
    )
