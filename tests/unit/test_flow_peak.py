"""A forecast in flows per second (analysis/flow_peak.py, ``[plan] peak_fps``, ``--peak-fps``): converted with the
run's measured requests and tokens per ok flow. Every figure is worked out in the comments from the run built here."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from analysis import load_run
from analysis.capacity import capacity_from_run
from analysis.flow_peak import flow_peak
from analysis.forecast import FlowPeak
from analysis.run_plan import RunPlan, plan_for_run
from loadtest.errors import ConfigError
from loadtest.spec.assemble import Overrides, apply_overrides, python_from_flags, scenario_from_flags
from loadtest.spec.runspec import PlanRequest
from loadtest.spec.scenario import load_scenario, parse_scenario
from tests.helpers import failed_call, flow, flow_call, jsonl, refused, run_cli, write_flow_run, write_run
from tests.helpers import records as toml_records

MODULE = "\n".join(
    [
        "from loadtest.flows import FlowUser, task",
        "",
        "",
        "class U(FlowUser):",
        "    @task",
        "    def t(self):",
        "        pass",
        "",
    ]
)


def flow_run(tmp_path: Path) -> Path:
    """Three ok flows, one failed:

    * ``a`` ok, 2 calls, 2 records, 100 + 20 tokens;
    * ``b`` ok, 1 call answered 429 then retried: 2 records, 200 + 40 tokens;
    * ``c`` failed, 1 record (a 503): not the basis;
    * ``d`` ok, 3 calls, 3 records, 300 + 60 tokens.

    Per ok flow: (2 + 2 + 3) / 3 = 7/3 requests (the lines' ``calls`` would say (2 + 1 + 3) / 3 = 2: the retry is
    a request sent), (120 + 240 + 360) / 3 = 240 tokens."""
    recs = [
        flow_call("a", "turn", 0, 1.0, 2.0, seq=1),
        flow_call("a", "turn", 1, 2.0, 3.0, seq=2),
        failed_call(flow_call("b", "turn", 0, 4.0, 4.1, seq=3), "rate_limited", 429),
        flow_call("b", "turn", 0, 5.0, 6.0, seq=3, attempt=1),
        failed_call(flow_call("c", "turn", 0, 7.0, 7.2, seq=4), "server_error", 503),
        flow_call("d", "turn", 0, 8.0, 9.0, seq=5),
        flow_call("d", "turn", 1, 9.0, 10.0, seq=6),
        flow_call("d", "turn", 2, 10.0, 11.0, seq=7),
    ]
    flows = [
        flow("a", "ok", 0.5, 3.5, 2, prompt_tokens=100, output_tokens=20),
        flow("b", "ok", 3.5, 6.5, 1, prompt_tokens=200, output_tokens=40),
        flow("c", "failed", 6.5, 7.5, 1, error_detail="turn: server_error"),
        flow("d", "ok", 7.5, 11.5, 3, prompt_tokens=300, output_tokens=60),
    ]
    return write_flow_run(tmp_path / "run", recs, flows)


def test_requests_per_flow_count_the_retries_and_tokens_are_per_ok_flow(tmp_path: Path) -> None:
    peak = flow_peak(flow_run(tmp_path), 6.0)
    assert (peak.flows, peak.requests_per_flow, peak.tokens_per_flow) == (3, pytest.approx(7 / 3), 240.0)
    # 6 flows/s × 7/3 = 14 req/s; 6 × 240 × 60 = 86,400 tokens/min
    assert peak.requests_per_s == pytest.approx(14.0)
    assert peak.tokens_per_min == pytest.approx(86_400.0)
    assert peak.describe() == (
        "6 flows/s × 2.33 requests/flow = 14.00 req/s; × 240 tokens/flow × 60 = 86,400 tokens/min "
        "(measured over 3 ok flows of run, retries included)"
    )


def test_a_flow_peak_sets_the_forecasts_requests() -> None:
    from analysis.forecast import Forecast

    peak = FlowPeak(5.0, 4.0, 1000.0, 10)
    forecast = Forecast(peak.tokens_per_min, 200, 50, flows=peak)
    # 5 × 4 = 20 req/s as sent, not 300,000 / 60 / 250 = 20 by the mix (equal here) ...
    assert forecast.peak_requests_per_s == pytest.approx(20.0)
    # ... and with retries among them the flows' count holds: 5 × 4.5 = 22.5, the mix would say 20
    retried = Forecast(peak.tokens_per_min, 200, 50, flows=FlowPeak(5.0, 4.5, 1000.0, 10))
    assert retried.peak_requests_per_s == pytest.approx(22.5)


def test_a_run_without_flows_or_without_an_ok_flow_is_one_line(tmp_path: Path) -> None:
    plain = write_run(tmp_path / "plain", jsonl(toml_records()))
    with pytest.raises(
        ConfigError, match=r"^a peak in flows/s: .*plain/run has no flows \(flows are a Python"
    ) as err:
        flow_peak(plain, 5.0)
    assert "\n" not in str(err.value)
    none_ok = write_flow_run(
        tmp_path / "failed",
        [failed_call(flow_call("a", "turn", 0, 1.0, 2.0), "server_error", 503)],
        [flow("a", "failed", 0.5, 2.5, 1)],
    )
    with pytest.raises(ConfigError, match=r"has none \(1 flows in flows.jsonl\)"):
        flow_peak(none_ok, 5.0)


def test_the_runs_plan_converts_flows_per_second(tmp_path: Path) -> None:
    run = flow_run(tmp_path)
    data = load_run(run)
    request = PlanRequest(peak_flows_per_s=6.0, architectures=("llama-3.1-8b",))
    plan = plan_for_run(data, capacity_from_run(data), request)
    assert isinstance(plan, RunPlan), plan
    assert plan.forecast.peak_tokens_per_min == pytest.approx(86_400.0)
    assert plan.forecast.peak_requests_per_s == pytest.approx(14.0)
    # the per-request mix stays the run's successful requests' (BASE: 20 in / 11 out)
    assert (plan.forecast.prompt_tokens, plan.forecast.output_tokens) == (20, 11)
    plain = write_run(tmp_path / "plain", jsonl(toml_records()))
    plain_data = load_run(plain)
    why = plan_for_run(plain_data, capacity_from_run(plain_data), request)
    assert isinstance(why, str) and why.startswith("a peak in flows/s: ") and "has no flows" in why


def test_loadtest_plan_peak_fps_shows_its_basis(tmp_path: Path) -> None:
    run = str(flow_run(tmp_path))
    common = ("--mix-from", run, "--arch", "llama-3.1-8b")
    body = orjson.loads(run_cli("plan", "--peak-fps", "6", *common, "--format", "json").stdout)
    assert body["forecast"]["peak_tokens_per_min"] == pytest.approx(86_400.0)
    assert body["forecast"]["peak_requests_per_s"] == pytest.approx(14.0)
    table = run_cli("plan", "--peak-fps", "6", *common)
    assert table.returncode == 0, table.stderr
    assert (
        "forecast: peak 6 flows/s × 2.33 requests/flow = 14.00 req/s; × 240 tokens/flow × 60 = 86,400 tokens/min "
        "(measured over 3 ok flows of run, retries included) at 20 in / 11 out" in table.stdout
    )
    refused(
        run_cli("plan", "--peak-fps", "6", "--peak-tpm", "9", *common),
        2,
        "--peak-tpm or --peak-fps, not both",
    )
    three = run_cli("plan", "--peak-fps", "6", "--peak-tpm", "9", "--peak-rps", "1", *common)
    refused(three, 2, "--peak-tpm, --peak-rps or --peak-fps, not all 3")
    no_run = run_cli("plan", "--peak-fps", "6", "--prompt-tokens", "100", "--output-tokens", "10")
    refused(no_run, 2, "--peak-fps is converted with a run's measured flows")
    plain = str(write_run(tmp_path / "plain", jsonl(toml_records())))
    refused(run_cli("plan", "--peak-fps", "6", "--mix-from", plain), 2, "has no flows")
    refused(run_cli("report", plain, "--peak-fps", "6"), 2, "--peak-fps:", "has no flows")


def test_plan_peak_fps_in_a_python_toml_and_refused_without_python(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(MODULE)
    path = tmp_path / "s.toml"
    path.write_text('[python]\nmodule = "flow.py"\n[plan]\npeak_fps = 5\n')
    scenario = load_scenario(path)
    assert scenario.plan == PlanRequest(peak_flows_per_s=5.0)
    with pytest.raises(ConfigError, match=r"\[plan\] peak_fps: a peak in flows per second needs a Python"):
        parse_scenario({"plan": {"peak_fps": 5}})
    with pytest.raises(ConfigError, match="give peak_rps or peak_fps, not both"):
        parse_scenario({"plan": {"peak_rps": 5, "peak_fps": 5}})
    # the flag over the scenario's peak, and back through the spec
    changed = apply_overrides(scenario, Overrides(peak_flows_per_s=2.0))
    assert changed.plan == PlanRequest(peak_flows_per_s=2.0)
    assert PlanRequest.from_dict({"peak_flows_per_s": 2.0}) == PlanRequest(peak_flows_per_s=2.0)
    over_tpm = apply_overrides(scenario, Overrides(peak_tokens_per_min=100.0))
    assert over_tpm.plan == PlanRequest(peak_tokens_per_min=100.0)


def test_run_peak_fps_is_refused_before_any_load_without_a_python_scenario(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(MODULE)
    scenario = python_from_flags(tmp_path / "flow.py", Overrides(peak_flows_per_s=3.0))
    assert scenario.plan is not None and scenario.plan.peak_flows_per_s == 3.0 and not scenario.plan.example
    with pytest.raises(ConfigError, match="--peak-fps: a peak in flows per second needs a Python scenario"):
        scenario_from_flags(Overrides(peak_flows_per_s=3.0))
    toml = tmp_path / "plain.toml"
    toml.write_text('[[classes]]\nname = "chat"\n')
    out = tmp_path / "runs"
    proc = run_cli("run", str(toml), "--peak-fps", "5", "--out", str(out))
    refused(proc, 2, "--peak-fps: a peak in flows per second needs a Python scenario")
    assert not out.exists()  # refused before the run directory, so before any load
