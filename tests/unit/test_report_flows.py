"""The report's flow section (reports/html/flow_section.py) and the text ``loadtest analyze`` prints for flows
(reports/flow_text.py), from hand-made run directories of a Python scenario."""

from __future__ import annotations

from pathlib import Path

from analysis.flows import flows_of_run
from reports.flow_text import answer_line, render_flows
from reports.html import render_html
from tests.helpers import (
    FLOW_ERROR,
    FLOW_SLO,
    flow,
    flow_call,
    flow_example,
    jsonl,
    records,
    write_flow_run,
    write_run,
)

HOSTILE = "<b>turn</b>"


def two_stages(tmp_path: Path) -> Path:
    """Stage s1: ten one-call flows of 1 s, one every 2 s (task 1.5 s); s2: ten of 2 s, one a second."""
    recs, flows = [], []
    for i in range(10):
        recs.append(flow_call(f"a{i}", HOSTILE, 0, 2.0 * i, 2.0 * i + 1.0, seq=i))
        flows.append(flow(f"a{i}", "ok", 2.0 * i, 2.0 * i + 1.5, 1))
        recs.append(flow_call(f"b{i}", HOSTILE, 0, 100.0 + i, 102.0 + i, seq=10 + i, stage="s2"))
        flows.append(flow(f"b{i}", "ok", 100.0 + i, 102.0 + i, 1, stage="s2"))
    stages = [{"label": "s1"}, {"label": "s2"}]
    return write_flow_run(tmp_path / "run", recs, flows, {"flow_e2e_p95": 1.5}, stages)


def test_the_report_shows_flows_with_the_scenario_error_escaped(tmp_path: Path) -> None:
    recs, flows = flow_example()
    document = render_html([write_flow_run(tmp_path / "run", recs, flows, FLOW_SLO)])
    assert '<section id="r0-flows"><h3>Flows</h3>' in document
    assert FLOW_ERROR not in document  # never as markup
    assert "<td>ValueError: &lt;script&gt;alert(1)&lt;/script&gt;</td>" in document
    assert "<td>my_flow.py:42</td>" in document
    # the verdict with its basis, and the join check that failed
    assert (
        "s1: flow_e2e_p95 5.70 s (limit ≤ 5.00 s): broken; 95 % CI from 3.00 s, no upper bound; over 3"
        in document
    )
    assert (
        '<p class="banner bad">Join check: 5 of 6 flows joined their records exactly; 1 lack a step'
        in document
    )


def test_the_report_charts_flow_latency_against_load_and_escapes_step_names(tmp_path: Path) -> None:
    document = render_html([two_stages(tmp_path)])
    assert 'id="r0-flow-latency"' in document and "Flow latency against load" in document
    assert HOSTILE not in document and "<td>&lt;b&gt;turn&lt;/b&gt;</td>" in document
    assert "Join check: every one of the 20 flows joined its records exactly." in document


def test_a_run_without_flows_has_no_flow_section_nor_text(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    assert "-flows" not in render_html([run])
    assert flows_of_run(run) is None


def test_the_text_lists_stages_steps_errors_and_a_failed_join(tmp_path: Path) -> None:
    recs, flows = flow_example()
    result = flows_of_run(write_flow_run(tmp_path / "run", recs, flows, FLOW_SLO))
    assert result is not None
    text = render_flows(result)
    lines = text.splitlines()
    assert lines[1] == "  flow SLO: flow_e2e_p95 ≤ 5.00 s, attainment ≥ 50.0%"
    (row,) = [line for line in lines if line.startswith("  s1 ")]
    # flows/s, ok, failed, error, cancelled, unfinished, then latency p50, p95, its interval, p99
    assert row.split()[1:8] == ["0.15", "3", "1", "1", "1", "1", "3.00"]
    assert "    1× my_flow.py:42: " + FLOW_ERROR in lines
    assert lines[-1].startswith(
        "  join check: 5 of 6 flows joined their records exactly; 1 lack a step's record;"
    )
    assert "1 record(s) of 1 flow(s) have no flow line" in lines[-1]


def test_an_exact_join_is_not_printed(tmp_path: Path) -> None:
    result = flows_of_run(two_stages(tmp_path))
    assert result is not None and result.join.is_exact
    assert "join check" not in render_flows(result)


def test_the_runs_last_lines_say_the_best_stage_the_flow_slo_and_the_scenarios_errors(tmp_path: Path) -> None:
    result = flows_of_run(two_stages(tmp_path))
    assert result is not None
    # s1: ten good 1 s flows over 0 … 19.5 s → 10 / 19.5 = 0.51 good flows/s; s2's 2 s flows break the 1.5 s p95
    assert answer_line(result) == (
        "flows: 0.51 good flows/s at s1 (flow latency p95 1.00 s, 1.0 calls/flow); "
        "flow SLO (flow_e2e_p95 ≤ 1.50 s) met in 1 of 2 stages"
    )
    recs, flows = flow_example()
    example = flows_of_run(write_flow_run(tmp_path / "example", recs, flows, FLOW_SLO))
    assert example is not None
    assert answer_line(example).endswith(
        "1 flow ended with the scenario's own exception — most often my_flow.py:42: " + FLOW_ERROR
    )


def test_what_was_run_names_the_module_and_its_steps_not_class_weights(tmp_path: Path) -> None:
    document = render_html([two_stages(tmp_path)])
    assert "<dt>flows</dt><dd>my_flow.py (every FlowUser it defines); steps: chat</dd>" in document
    assert "<dt>classes</dt>" not in document
