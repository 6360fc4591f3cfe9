"""A Python scenario's stages in the capacity analysis: an open-loop target in flows/s taken in requests/s (the
stage's requests per flow), and the flow SLO judged beside the steps' SLOs. Every answer worked out by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analysis import capacity, capacity_from_run, check_load, load_run
from analysis.frame import with_metrics
from analysis.load_check import in_requests, offered_short, requests_per_flow
from analysis.scan import open_scan, summarize_scan
from loadtest.client.records import RequestRecord
from loadtest.rundir import StageWindow
from loadtest.rundir.events import stage_windows
from loadtest.rundir.flows import FlowRecord
from reports.console import format_target
from tests.helpers import flow, flow_call, window, write_flow_run

LABEL = "poisson@3.00rps"
SLOS = {"turn": {"ttft_p95": 1.0}}


def flow_stage(flows: int, rate: float = 3.0, retries: int = 0) -> pd.DataFrame:
    """``flows`` flows of two calls, one arrival every 1 / ``rate`` s from 0 (each call on time, 0.1 s to its first
    token, 0.2 s long, the second 0.3 s after the first), and a 429 before the first call of the first ``retries``
    flows (attempt 0, retried at once): 2 × flows + retries records."""
    rows: list[dict[str, Any]] = []
    for k in range(flows):
        t = k / rate
        starts = ([(t, "rate_limited")] if k < retries else []) + [(t, None), (t + 0.3, None)]
        for start, error in starts:
            rows.append(
                {
                    "stage": LABEL,
                    "request_class": "turn",
                    "scheduled_at": start,
                    "started_at": start,
                    "first_token_at": None if error else start + 0.1,
                    "ended_at": start + 0.2,
                    "status": 429 if error else 200,
                    "error_class": error,
                    "error_detail": "quota" if error else None,
                    "prompt_tokens": None if error else 10,
                    "output_tokens": None if error else 20,
                    "client_output_tokens": None if error else 20,
                    "token_source": None if error else "usage",
                    "chunk_gaps": None,
                    "retry_after_s": None,
                }
            )
    df = pd.DataFrame(rows)
    for column in ("prompt_tokens", "output_tokens", "client_output_tokens"):
        df[column] = df[column].astype("Int64")
    df["first_token_at"] = df["first_token_at"].astype("float64")
    return with_metrics(df)


def meta(
    records: int, flows: int | None, window_s: float = 10.0, rate: float = 3.0, **end: Any
) -> StageWindow:
    """The stage's window: ``rate`` (flows/s when ``flows`` is given), sending 0 → ``window_s``."""
    raw = {
        "label": LABEL,
        "start": 0.0,
        "cpu_start_s": 0.0,
        "target": {"kind": "rate", "users": None, "rate": rate},
        "window_end": window_s,
        "end": window_s + 1,
        "cpu_end_s": 0.1,
        "records": records,
        "arrivals": end.pop("arrivals", flows),
        **end,
    }
    if flows is not None:
        raw["flows"] = flows
    return window(raw)


def test_requests_per_flow_counts_every_record_sent() -> None:
    # 30 flows of 2 calls and 4 retries: 64 records, 64 / 30 per flow; 3 flows/s are 6.4 req/s
    stage = meta(64, 30)
    assert requests_per_flow(stage) == pytest.approx(64 / 30)
    assert in_requests(stage, 3.0) == pytest.approx(6.4)
    # a stage of requests keeps its rate; a flow stage that ended no flow has none in requests
    assert in_requests(meta(64, None), 3.0) == 3.0
    assert requests_per_flow(meta(64, None)) is None
    assert in_requests(meta(0, 0), 3.0) is None


def test_the_window_carries_the_flows_only_when_the_stage_end_had_them() -> None:
    events = [
        {
            "event": "stage_start",
            "stage": "a",
            "t": 0.0,
            "cpu_s": 0.0,
            "target": {"kind": "rate", "rate": 3.0},
        },
        {"event": "stage_end", "stage": "a", "t": 10.0, "cpu_s": 1.0, "records": 64, "flows": 30},
        {
            "event": "stage_start",
            "stage": "b",
            "t": 10.0,
            "cpu_s": 1.0,
            "target": {"kind": "rate", "rate": 3.0},
        },
        {"event": "stage_end", "stage": "b", "t": 20.0, "cpu_s": 2.0, "records": 30},
    ]
    a, b = stage_windows(events)
    assert (a.flows, b.flows) == (30, None)
    assert a.to_dict()["flows"] == 30 and "flows" not in b.to_dict()  # old manifests are written as before
    assert window(a.to_dict()) == a and window(b.to_dict()) == b  # read back as written


def test_the_load_check_takes_a_flow_target_in_requests() -> None:
    # 30 flows at 3 flows/s over 10 s, 4 of them retried once: 64 requests sent in the window, target 6.4 req/s
    (load,) = check_load(flow_stage(30, retries=4), [meta(64, 30)])
    assert load.target_rps == pytest.approx(6.4)
    assert load.offered_rps == pytest.approx(6.4)
    assert (load.target_flows_per_s, load.flow_arrivals) == (3.0, 30)
    assert load.kept_up and offered_short(load) is None
    assert format_target(load) == ("3.00 flows/s (6.40 rps)", "6.40 rps")
    assert "target_flows_per_s" in load.to_dict()


def test_a_stage_of_requests_is_unchanged() -> None:
    (load,) = check_load(flow_stage(30), [meta(60, None)])
    assert (load.target_rps, load.target_flows_per_s, load.flow_arrivals) == (3.0, None, None)
    assert format_target(load) == ("3.00 rps", "6.00 rps")
    assert "target_flows_per_s" not in load.to_dict() and "flow_arrivals" not in load.to_dict()


def test_a_flow_generator_that_fell_behind_is_caught() -> None:
    # only 10 flows (20 requests) in the 10 s window of a 3 flows/s target (30 expected, 30 − 3 × √30 = 13.6): 2
    # requests per flow, so 6 req/s planned and 2 req/s offered — compared with the 3 flows/s as req/s, 2 of 3
    # looked like Poisson scatter (30 × 0.9 = 27 but 30 − 3 × √30 = 13.6 < 20)
    (load,) = check_load(flow_stage(10, rate=1.0), [meta(20, 10)])
    assert load.target_rps == pytest.approx(6.0)
    assert offered_short(load) == "offered 2 req/s of the 6 req/s planned (3 flows/s)"
    point = capacity(flow_stage(10, rate=1.0), [meta(20, 10)], SLOS).points[0]
    assert point.queue_growth and point.x_basis == "achieved"


def test_a_short_poisson_draw_of_flows_is_not_a_generator_behind() -> None:
    # 12 flows/s for 4 s: 48 flows expected (s.d. 6.9), 29 drawn — 2.7 s.d. low, within chance. In requests (96
    # expected, 58 sent) that read as 3.9 s.d. (√96 = 9.8), but a flow's 2 requests move together: in flows it is
    # 29 is not under 48 − 3 × 6.9 = 27.2 (the run that showed it: rag-flow -r 1,12 -d 4s)
    (load,) = check_load(flow_stage(29, rate=29 / 4), [meta(58, 29, window_s=4.0, rate=12.0)])
    # the last flow's second call is scheduled after the window (3.86 + 0.3 s): 56 of the 58 offered in it
    assert load.target_rps == pytest.approx(24.0) and load.offered_rps == pytest.approx(56 / 4)
    assert offered_short(load) is None
    point = capacity(flow_stage(29, rate=29 / 4), [meta(58, 29, window_s=4.0, rate=12.0)], SLOS).points[0]
    assert not point.queue_growth and point.x_basis == "target"
    # 26 flows is beyond chance: 26 < 27.2 and under 90 % (51 requests in the window: 12.75 req/s)
    (load,) = check_load(flow_stage(26, rate=26 / 4), [meta(52, 26, window_s=4.0, rate=12.0)])
    assert offered_short(load) == "offered 12.8 req/s of the 24 req/s planned (12 flows/s)"


def test_the_waited_share_is_over_flow_arrivals() -> None:
    # 150 flows (300 requests), 2 of them waited: 2 / 150 = 1.3 % > 1 % of arrivals (over requests, 0.67 %, it
    # would pass)
    (load,) = check_load(flow_stage(150), [meta(300, 150, window_s=50.0, no_free_user=2)])
    assert offered_short(load) is not None
    assert offered_short(load).startswith("2 of 150 arrivals (1.3%) waited")  # type: ignore[union-attr]
    # a token-rate stage's arrivals are flows too (its target is in tokens)
    tokens = {"kind": "tokens", "users": None, "rate": None, "tokens_per_min": 9000.0, "initial_rate": 3.0}
    (load,) = check_load(flow_stage(150), [meta(300, 150, window_s=50.0, no_free_user=2, target=tokens)])
    assert (load.flow_arrivals, load.target_flows_per_s, load.target_rps) == (150, None, None)
    assert offered_short(load) is not None


def test_x_star_of_a_flow_stage_is_its_target_in_requests() -> None:
    # 64 sent, 60 ok: X = 6.4 req/s × 60 / 64 = 6.0 (on its flow rate read as req/s it was 3 × 60 / 64 = 2.81)
    result = capacity(flow_stage(30, retries=4), [meta(64, 30)], SLOS, max_error_share=0.1)
    (point,) = result.points
    assert point.target_rate == pytest.approx(6.4)
    assert point.x_basis == "target" and point.x_req_per_s == pytest.approx(6.0)
    assert result.max_rps == pytest.approx(6.0)
    assert not point.queue_growth


# -- the flow SLO binds --------------------------------------------------------------------------------------------


def two_stage_flow_run(tmp_path: Path, flow_slo: dict[str, float]) -> Path:
    """Two closed-loop stages of 20 flows of two ``turn`` calls (TTFT 0.1 s: within the step's 1 s SLO in both).
    s1: flow k at 1000 + k, calls [t, t + 1], [t + 1, t + 2]: latency 2 s, 40 requests over 1000 → 1021: 40 / 21
    req/s. s2: flow k at 2000 + k / 2, calls [t, t + 4], [t + 4, t + 8]: latency 8 s, 40 requests over 2000 →
    2017.5: 40 / 17.5 req/s."""
    recs: list[RequestRecord] = []
    flows: list[FlowRecord] = []
    for label, t0, gap, call in (("s1", 1000.0, 1.0, 1.0), ("s2", 2000.0, 0.5, 4.0)):
        for k in range(20):
            fid, t = f"{label}/{k}", t0 + k * gap
            recs += [
                flow_call(fid, "turn", 0, t, t + call, stage=label, seq=len(recs)),
                flow_call(fid, "turn", 1, t + call, t + 2 * call, stage=label, seq=len(recs) + 1),
            ]
            flows.append(flow(fid, "ok", t, t + 2 * call, 2, stage=label))
    stages = [{"label": "s1"}, {"label": "s2"}]
    return write_flow_run(tmp_path / "run", recs, flows, flow_slo, stages=stages, classes=SLOS)


def test_a_stage_that_breaks_the_flow_slo_is_not_compliant(tmp_path: Path) -> None:
    run = two_stage_flow_run(tmp_path, {"flow_e2e_p95": 5.0})
    result = capacity_from_run(load_run(run))
    s1, s2 = result.points
    assert [c.key for c in s2.checks] == ["ttft_p95", "flow_e2e_p95", "errors"]
    assert s1.meets() and not s2.meets()
    assert all(c.passed() for c in s2.checks if not c.is_flow)  # the steps met their SLO
    # f = (5 − 2) / (8 − 2) = 0.5 between 40 / 21 and 40 / 17.5 req/s
    assert result.max_rps == pytest.approx((40 / 21 + 40 / 17.5) / 2)
    assert "s2 (failed on flow_e2e_p95 (flow SLO))" in result.basis
    assert (result.limit, result.limit_detail) == ("server", "flow SLO flow_e2e_p95 from s2")
    # analyze and the report read the run out of core: the same verdict
    scanned = summarize_scan(open_scan(run), None, ["s1", "s2"]).capacity
    assert scanned is not None
    assert (scanned.max_rps, scanned.basis, scanned.limit_detail) == (
        result.max_rps,
        result.basis,
        result.limit_detail,
    )


def test_without_a_flow_slo_the_steps_decide(tmp_path: Path) -> None:
    result = capacity_from_run(load_run(two_stage_flow_run(tmp_path, {})))
    assert all(p.meets() for p in result.points)
    assert [c.key for c in result.points[1].checks] == ["ttft_p95", "errors"]
    assert result.max_rps == pytest.approx(40 / 17.5)
    assert result.limit is None


def test_a_flow_attainment_that_fails_names_the_flow_slo(tmp_path: Path) -> None:
    # within 5 s: every flow of s1, none of s2 — attainment 1 then 0 against 0.9
    run = two_stage_flow_run(tmp_path, {"flow_e2e_p95": 5.0, "attainment": 0.9})
    result = capacity_from_run(load_run(run))
    keys = [c.key for c in result.points[1].checks]
    assert keys == ["ttft_p95", "flow_e2e_p95", "flow_attainment", "errors"]
    assert result.limit_detail == "flow SLO flow_e2e_p95, flow_attainment from s2"


def test_the_report_verdict_says_the_flow_slo_bound(tmp_path: Path) -> None:
    from reports.html import render_html

    document = render_html([two_stage_flow_run(tmp_path, {"flow_e2e_p95": 5.0})])
    assert "max SLO-compliant throughput: 2.10 req/s" in document  # (40 / 21 + 40 / 17.5) / 2 = 2.095
    assert "flow SLO: flow_e2e_p95 ≤ 5,000 ms" in document
    assert "binding limit: server — flow SLO flow_e2e_p95 from s2" in document
