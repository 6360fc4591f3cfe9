"""The gate on a Python scenario's flows (analysis/gate_flows.py): flow thresholds judged like request percentiles
and shares, on hand-built flow runs whose answers are worked out in the comments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import xmlschema
from scipy import stats  # type: ignore[import-untyped]

from analysis import load_run
from analysis.frame import RunData
from analysis.gate import gate
from analysis.validity import Validity
from loadtest.errors import ConfigError
from loadtest.spec.slo_flags import parse_regressions, parse_slo_flags, parse_thresholds, slo_tables
from reports.gate_output import gate_json, gate_junit, gate_markdown, gate_table
from tests.helpers import flow_example, jsonl, records, write_flow_run, write_flow_stages, write_run

SCHEMA = Path(__file__).parent / "data" / "junit-10.xsd"
VALID = Validity(())


def flow_run(
    tmp_path: Path, scale: dict[str, float] | None = None, slo: dict[str, float] | None = None
) -> RunData:
    return load_run(write_flow_stages(tmp_path / "run", scale or {"s1": 1.0}, slo))


def only(result: Any) -> Any:
    assert len(result.checks) == 1
    return result.checks[0]


def test_a_flow_percentile_passes_or_fails_on_its_point_with_the_order_statistic_interval(
    tmp_path: Path,
) -> None:
    data = flow_run(tmp_path)
    # p95 of 0.1 … 10.0 s: position 0.95 × 99 = 94.05 → 9.5 + 0.05 × 0.1 = 9.505 s; its interval: the order
    # statistics l = F⁻¹(0.025) − 1 = 89 and u = F̄⁻¹(0.025) = 99 of Binomial(100, 0.95) → [9.0 s, 10.0 s]
    passed = gate(data, VALID, parse_thresholds(["flow_e2e_p95<10s"]))
    check = only(passed)
    assert check.current.value == pytest.approx(9.505)
    assert (check.current.low, check.current.high) == (pytest.approx(9.0), pytest.approx(10.0))
    assert check.current.samples == 100 and check.verdict == "pass"
    assert (check.stage, check.request_class) == ("s1", None)
    assert passed.verdict == "pass"
    failed = gate(data, VALID, parse_thresholds(["flow_e2e_p95<9.5s"]))
    assert only(failed).verdict == "fail" and failed.verdict == "fail"


def test_too_few_flows_for_a_percentile_make_the_run_invalid_not_a_pass(tmp_path: Path) -> None:
    recs, flows = flow_example()
    data = load_run(write_flow_run(tmp_path / "run", recs, flows))
    # three ok flows (1, 3, 6 s): p95 5.7 s, well under 10 s, but its interval has no upper bound
    result = gate(data, VALID, parse_thresholds(["flow_e2e_p95<10s"]))
    check = only(result)
    assert check.current.value == pytest.approx(5.7) and check.verdict == "invalid"
    assert check.note == "too few flows for a p95: 3 leave its 95 % interval unbounded"
    assert result.verdict == "invalid"


def test_flow_error_rate_and_attainment_over_the_flows_that_ended_cancelled_ones_aside(
    tmp_path: Path,
) -> None:
    data = flow_run(tmp_path)
    errors, attained = gate(
        data, VALID, parse_thresholds(["flow_error_rate<5%", "flow_attainment>=50%", "flow_e2e_p50<6s"])
    ).checks[:2]
    # judged: 100 ok + 4 failed + 1 error = 105 (the 2 cancelled left out); broken: 5 → 4.76 %, Clopper–Pearson
    ci = stats.binomtest(5, 105).proportion_ci(0.95)
    assert errors.current.value == pytest.approx(5 / 105) and errors.current.samples == 105
    assert (errors.current.low, errors.current.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert errors.verdict == "pass"
    # good: ok within the gate's flow_e2e_p50 limit of 6 s → flows 1 … 60 → 60 / 105 = 57.1 %
    assert attained.current.value == pytest.approx(60 / 105) and attained.verdict == "pass"
    # without a gate latency threshold, the run's own flow SLO (5 s) says which flows are good: 50 / 105 = 47.6 %
    own = gate(
        flow_run(tmp_path / "own", slo={"flow_e2e_p95": 5.0}),
        VALID,
        parse_thresholds(["flow_attainment>=50%"]),
    )
    assert only(own).current.value == pytest.approx(50 / 105) and own.verdict == "fail"


def test_a_stage_scope_judges_that_stage_and_a_class_scope_is_a_usage_error(tmp_path: Path) -> None:
    data = flow_run(tmp_path, {"s1": 1.0, "s2": 2.0})
    # s2's flows take twice as long: p95 19.01 s
    every = gate(data, VALID, parse_thresholds(["flow_e2e_p95<10s"]))
    assert [(c.stage, c.verdict) for c in every.checks] == [("s1", "pass"), ("s2", "fail")]
    assert every.checks[1].current.value == pytest.approx(19.01)
    scoped = gate(data, VALID, parse_thresholds(["s1:flow_e2e_p95<10s"]))
    assert [(c.stage, c.verdict) for c in scoped.checks] == [("s1", "pass")] and scoped.verdict == "pass"
    with pytest.raises(
        ConfigError, match=r"a flow spans its steps' classes, so its scope is a stage \(s1, s2\)"
    ):
        gate(data, VALID, parse_thresholds(["turn:flow_e2e_p95<10s"]))


def test_a_flow_threshold_on_a_run_without_flows_is_one_line(tmp_path: Path) -> None:
    data = load_run(write_run(tmp_path, jsonl(records())))
    with pytest.raises(ConfigError, match=r"^--slo 'flow_e2e_p95<10s': the run has no flows"):
        gate(data, VALID, parse_thresholds(["flow_e2e_p95<10s"]))


def test_without_slo_the_gate_judges_the_runs_own_flow_slo(tmp_path: Path) -> None:
    data = flow_run(tmp_path, slo={"flow_e2e_p95": 10.0, "attainment": 0.9})
    result = gate(data, VALID, [])
    # p95 9.505 s ≤ 10 s; attainment: flows within 10 s are all 100 ok ones, of 105 judged → 95.2 % ≥ 90 %
    assert [(c.text, c.verdict) for c in result.checks] == [
        ("flow_e2e_p95<10000ms", "pass"),
        ("flow_attainment>=90%", "pass"),
    ]
    assert result.checks[1].current.value == pytest.approx(100 / 105)
    assert "thresholds: the scenario's SLOs (no --slo given)" in result.notes


def test_outputs_show_the_flow_checks(tmp_path: Path) -> None:
    data = flow_run(tmp_path)
    result = gate(data, VALID, parse_thresholds(["flow_e2e_p95<9s", "flow_error_rate<10%"]))
    xml = gate_junit(result).decode()
    xmlschema.XMLSchema(str(SCHEMA)).validate(xml)
    assert 'tests="2" failures="1" errors="0"' in xml
    failure = re.search(
        r'<testcase name="flow_e2e_p95&lt;9s \[s1\]" classname="loadtest.gate.threshold"', xml
    )
    assert failure is not None
    assert 'message="9,505 ms [9,000 ms, 10,000 ms] (95 %), threshold ≤ 9,000 ms"' in xml
    md = gate_markdown(result)
    assert "| ❌ | `flow_e2e_p95<9s` | `s1` | 9,505 ms | [9,000 ms, 10,000 ms] | ≤ 9,000 ms |" in md
    assert "| ✅ | `flow_error_rate<10%` | `s1` | 4.76 % |" in md
    body = orjson.loads(gate_json(result))
    assert [(c["metric"], c["stage"], c["verdict"]) for c in body["checks"]] == [
        ("flow_e2e_p95", "s1", "fail"),
        ("flow_error_rate", "s1", "pass"),
    ]
    assert "flow_error_rate<10%" in gate_table(result)


def test_flow_flags_are_never_a_class_slo_nor_compared_with_a_baseline() -> None:
    thresholds = parse_thresholds(["flow_e2e_p95<10s", "flow_attainment>=90%", "turn:ttft_p95<1s"])
    assert [t.limit for t in thresholds] == [10.0, 0.9, 1.0]
    assert slo_tables(thresholds) == {"turn": {"ttft_p95": 1.0}}  # never a class's SLO
    with pytest.raises(ConfigError, match="is a gate threshold: add --gate"):
        parse_slo_flags(["flow_error_rate<1%"])
    with pytest.raises(ConfigError, match="flow_attainment is a floor, write flow_attainment>=90%"):
        parse_thresholds(["flow_attainment<90%"])
    with pytest.raises(ConfigError, match="flow_error_rate is a ceiling"):
        parse_thresholds(["flow_error_rate>1%"])
    with pytest.raises(ConfigError, match="give the limit a unit"):
        parse_thresholds(["flow_e2e_p95<10"])
    with pytest.raises(ConfigError, match="flow metrics are not compared with a baseline"):
        parse_regressions(["flow_e2e_p95:+10%"])
    assert np.isclose(parse_thresholds(["s1:flow_e2e_p99.9<1.5s"])[0].limit, 1.5)
