"""Idle stages in a scenario: how they are written and checked, what --duration leaves alone, and how long they last
against a simulator that scales to zero."""

from __future__ import annotations

import tomllib

import pytest

from loadtest.client.protocol import EndpointSpec
from loadtest.errors import ConfigError
from loadtest.spec.assemble import Overrides, apply_overrides, shorten_idle_for_simulator
from loadtest.spec.runspec import RunSpec, Stage
from loadtest.spec.scenario import Scenario, load_scenario, parse_scenario
from loadtest.spec.simulator import SimSettings
from tests.helpers import ROOT

IDLE_THEN_BURST = """
[load]
stages = [{ idle = "35m", name = "idle" }, { concurrency = 8, duration = "1m", name = "burst" }]
"""


def scenario(text: str = IDLE_THEN_BURST) -> Scenario:
    return parse_scenario(tomllib.loads(text))


def test_an_idle_stage_sends_nothing_for_its_length() -> None:
    idle, burst = scenario().stages
    assert (idle.kind, idle.duration_s, idle.label, idle.pool_size, idle.open_loop) == ("idle", 2100.0, "idle", 0,
                                                                                         False)  # fmt: skip
    assert idle.idle and not burst.idle
    assert Stage(kind="idle", duration_s=90.0).label == "idle@90s"
    endpoint = EndpointSpec(base_url="http://x/v1", model="m")
    spec = RunSpec(
        run_id="r", name="n", out_dir="o", endpoint=endpoint, request_classes=(), stages=(idle, burst)
    )
    assert RunSpec.from_dict(spec.to_public_dict()).stages == (idle, burst)  # through spec.json and back


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ('[{ idle = "1m", concurrency = 4 }]', "an idle stage): unknown key 'concurrency'"),
        ('[{ idle = "0s" }, { concurrency = 1 }]', "load.stages[0].idle"),
        ('[{ idle = "1m" }]', "every stage is idle"),
        ("[{ concurrency = 0 }]", "load.stages[0].concurrency"),  # zero users is not how idle is written
    ],
)
def test_idle_mistakes_are_one_clear_line(stages: str, message: str) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        scenario(f"[load]\nstages = {stages}\n")


def test_duration_and_max_requests_leave_an_idle_stage_alone() -> None:
    idle, burst = apply_overrides(scenario(), Overrides(duration_s=5.0, max_requests=10)).stages
    assert (idle.duration_s, idle.max_requests) == (
        2100.0,
        None,
    )  # the endpoint's scale-down time, not a load
    assert (burst.duration_s, burst.max_requests) == (5.0, 10)


def test_against_a_scale_to_zero_simulator_idle_lasts_its_scale_down_plus_a_second() -> None:
    base = scenario()
    assert shorten_idle_for_simulator(base) == (base, None)  # no scale-to-zero: the idle stage as written
    sim = SimSettings(scale_to_zero=True, scale_down_after_s=3.0)
    shortened, note = shorten_idle_for_simulator(apply_overrides(base, Overrides(simulator=sim)))
    assert [s.duration_s for s in shortened.stages] == [4.0, 60.0]
    assert note == "idle stages last 4s against the simulator: it scales to zero after 3s without requests"
    databricks = SimSettings(scale_to_zero=True)  # the simulator's default: Databricks' 30 minutes
    kept, note = shorten_idle_for_simulator(apply_overrides(base, Overrides(simulator=databricks)))
    assert [s.duration_s for s in kept.stages] == [1801.0, 60.0] and note is not None


def test_the_shipped_cold_start_scenario_idles_past_databricks_scale_down_and_survives_the_cold_start() -> (
    None
):
    cold = load_scenario(ROOT / "scenarios" / "cold-start.toml")
    idle, burst = cold.stages
    assert idle.idle and idle.duration_s >= 30 * 60  # Databricks: zero after 30 minutes without requests
    assert not burst.idle
    assert (
        cold.abort_after_s is not None and cold.abort_after_s > 597
    )  # Databricks holds a request up to 597 s
    assert cold.simulator.scale_to_zero
    shortened, _ = shorten_idle_for_simulator(cold)
    assert shortened.stages[0].duration_s == float(cold.simulator.value("scale_down_after_s")) + 1.0
