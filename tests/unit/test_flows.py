"""The flow analysis (analysis/flows.py, analysis/flow_data.py) on run directories built by hand: every figure below
is worked out in the comments from the records and flow lines given."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.flow_data import read_flow_calls, read_flow_table
from analysis.flows import FlowAnalysis, flow_latency, flows_of_run
from tests.helpers import (
    FLOW_ERROR,
    FLOW_SLO,
    flow,
    flow_call,
    flow_example,
    jsonl,
    write_flow_run,
    write_run,
)
from tests.helpers import records as toml_records


def analysed(tmp_path: Path, slo: dict[str, float] | None = None) -> FlowAnalysis:
    recs, flows = flow_example()
    result = flows_of_run(write_flow_run(tmp_path / "run", recs, flows, FLOW_SLO if slo is None else slo))
    assert result is not None
    return result


def test_flow_latency_is_first_start_to_last_end_over_every_attempt(tmp_path: Path) -> None:
    recs, flows = flow_example()
    run = write_flow_run(tmp_path / "run", recs, flows)
    table = read_flow_table(run)
    latency = flow_latency(read_flow_calls(run, table), len(table))
    # w0/3: 111.0 → 111.2; w0/4: 112.0 → 112.4; w0/5: no call → none
    expected = [3.0, 6.0, 0.2, 0.4, None, 1.0]
    assert [None if v != v else pytest.approx(v) for v in latency.tolist()] == expected


def test_a_stage_counts_its_flows_by_outcome_and_the_unfinished_one(tmp_path: Path) -> None:
    (stage,) = analysed(tmp_path).stages
    assert stage.stage == "s1"
    assert stage.outcomes == {"ok": 3, "failed": 1, "error": 1, "cancelled": 1}
    assert (stage.ended, stage.unfinished, stage.started) == (6, 1, 7)


def test_latency_steps_tokens_and_rates_over_the_ok_flows(tmp_path: Path) -> None:
    (stage,) = analysed(tmp_path).stages
    # ok flows' latencies 1, 3, 6: p50 = 3; p95 at position 0.95 × 2 = 1.9 → 3 + 0.9 × 3 = 5.7
    assert stage.latency["p50"] == pytest.approx(3.0)
    assert stage.latency["p95"] == pytest.approx(5.7)
    assert stage.latency["max"] == pytest.approx(6.0)
    # the order-statistic interval of three values: low x_(l), l = F⁻¹(0.025) − 1 for F = Binomial(3, 0.95):
    # F(1) = 0.007, F(2) = 0.143 → l = 1 → 3.0; high x_(u), u = F̄⁻¹(0.025) = 3: beyond the sample, none
    assert stage.latency_ci["p95"] == (3.0, None)
    assert stage.calls == {"mean": pytest.approx(7 / 3), "p50": 2.0, "max": 3.0}
    assert (stage.prompt_tokens_mean, stage.output_tokens_mean) == (150.0, 30.0)
    # the span: first task start 99.5 → last task end 119.5 = 20 s; 3 ok flows
    assert stage.duration_s == pytest.approx(20.0)
    assert stage.flows_per_s == pytest.approx(0.15)


def test_goodput_and_the_flow_slo_verdict(tmp_path: Path) -> None:
    (stage,) = analysed(tmp_path).stages
    # good: ok and latency ≤ 5 s → w0/1 (3.0) and w0/6 (1.0); w0/2 (6.0) is too slow
    assert stage.good == 2
    assert stage.goodput_per_s == pytest.approx(0.1)
    # attainment: 2 good of the 5 flows that ended other than cancelled
    assert stage.attainment == pytest.approx(0.4)
    checks = {c.key: c for c in stage.checks}
    assert checks["flow_e2e_p95"].value == pytest.approx(5.7) and not checks["flow_e2e_p95"].passed()
    assert checks["attainment"].value == pytest.approx(0.4) and not checks["attainment"].passed()
    assert stage.meets() is False
    # a looser SLO: p95 5.7 ≤ 6 and every ok flow is good: 3 of 5
    (loose,) = analysed(tmp_path / "loose", {"flow_e2e_p95": 6.0}).stages
    assert (loose.good, loose.attainment, loose.meets()) == (3, pytest.approx(0.6), True)
    assert loose.meets("conservative") is False  # no upper bound on a p95 of three flows


def test_without_a_flow_slo_good_means_ok(tmp_path: Path) -> None:
    result = analysed(tmp_path, {})
    (stage,) = result.stages
    assert (stage.good, stage.checks, stage.meets()) == (3, (), None)


def test_the_join_catches_the_missing_step_and_the_orphan_but_not_the_retry(tmp_path: Path) -> None:
    join = analysed(tmp_path).join
    assert (join.flows, join.exact, join.missing, join.extra, join.disordered) == (6, 5, 1, 0, 0)
    assert (join.orphan_records, join.orphan_flows, join.examples) == (1, 1, ("w0/6",))
    assert not join.is_exact


def test_the_join_catches_an_extra_and_a_disordered_flow(tmp_path: Path) -> None:
    recs = [
        flow_call("a", "turn", 0, 1.0, 2.0),
        flow_call("a", "turn", 0, 3.0, 4.0, seq=1),  # step 0 twice: extra
        flow_call("b", "turn", 1, 5.0, 6.0, seq=2),  # step 1 started first: disordered
        flow_call("b", "turn", 0, 7.0, 8.0, seq=3),
        flow_call("c", "turn", 0, 9.0, 10.0, seq=4),
        flow_call("c", "turn", 1, 10.0, 11.0, seq=5),
    ]
    flows = [flow("a", "ok", 0.0, 5.0, 1), flow("b", "ok", 4.0, 9.0, 2), flow("c", "ok", 9.0, 12.0, 2)]
    result = flows_of_run(write_flow_run(tmp_path / "run", recs, flows))
    assert result is not None
    join = result.join
    assert (join.exact, join.missing, join.extra, join.disordered, join.orphan_records) == (1, 0, 1, 1, 0)
    assert join.examples == ("a", "b")


def test_the_per_step_table(tmp_path: Path) -> None:
    steps = {s.step: s for s in analysed(tmp_path).steps}
    # in step order: embed (always 0), turn (mean index 4/6), answer (1)
    assert list(steps) == ["embed", "turn", "answer"]
    embed, turn, answer = steps["embed"], steps["turn"], steps["answer"]
    assert (embed.requests, embed.errors, embed.retries) == (3, 1, 0)
    assert embed.error_share == pytest.approx(1 / 3)
    assert (turn.requests, turn.errors, turn.retries) == (6, 1, 1)
    assert turn.ttft["p50"] == pytest.approx(0.1)
    assert turn.e2e["p50"] == pytest.approx(1.0) and turn.e2e["p95"] == pytest.approx(1.4)  # 1, 1, 1, 1, 1.5
    assert answer.cached_share == pytest.approx(0.75) and embed.cached_share is None


def test_scenario_errors_are_grouped_by_place_and_message(tmp_path: Path) -> None:
    result = analysed(tmp_path)
    assert [(e.where, e.detail, e.count) for e in result.errors] == [("my_flow.py:42", FLOW_ERROR, 1)]
    assert (result.error_flows, result.error_groups) == (1, 1)


def test_the_columnar_copy_gives_the_same_answer(tmp_path: Path) -> None:
    first = analysed(tmp_path)  # parsed from the JSON, the copy written
    run = tmp_path / "run"
    assert (run / "records.cache.parquet").exists()
    again = flows_of_run(run)
    assert again is not None and again.to_dict() == first.to_dict()


def test_a_run_without_flows_has_no_flow_analysis(tmp_path: Path) -> None:
    assert flows_of_run(write_run(tmp_path, jsonl(toml_records()))) is None


def test_an_open_loop_stage_widens_the_interval_by_sectioning(tmp_path: Path) -> None:
    # 400 one-call flows, latencies 0.001 … 0.4 s in start order: a trend the sections see
    recs = [flow_call(f"f{i}", "turn", 0, float(i), i + (i + 1) / 1000, seq=i) for i in range(400)]
    flows = [flow(f"f{i}", "ok", float(i), i + 0.5, 1) for i in range(400)]
    rate = [{"label": "s1", "start": 0.0, "target": {"kind": "rate", "rate": 1.0}}]
    closed = flows_of_run(write_flow_run(tmp_path / "closed", recs, flows))
    opened = flows_of_run(write_flow_run(tmp_path / "open", recs, flows, stages=rate))
    assert closed is not None and opened is not None
    low_c, high_c = closed.stages[0].latency_ci["p50"]
    low_o, high_o = opened.stages[0].latency_ci["p50"]
    assert low_c is not None and high_c is not None and low_o is not None and high_o is not None
    assert low_o < low_c and high_o > high_c


def test_a_429_without_a_detail_is_an_unspecified_limit(tmp_path: Path) -> None:
    # the example's 429 has no error_detail: the frame holds NaN there, which must not crash the summaries
    from analysis.summary import limit_type, summarize_stages

    assert limit_type(float("nan")) == limit_type(None) == "unspecified"
    from analysis import load_run

    recs, flows = flow_example()
    (stage,) = summarize_stages(load_run(write_flow_run(tmp_path / "run", recs, flows)).records)
    assert stage.rate_limits == {"unspecified": 1}
