"""A Python scenario's stages in the capacity analysis: an open-loop target in flows/s taken in requests/s (the
stage's requests per flow). Every answer worked out by hand."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from analysis import capacity, check_load
from analysis.frame import with_metrics
from analysis.load_check import in_requests, offered_short, requests_per_flow
from loadtest.rundir import StageWindow
from loadtest.rundir.events import stage_windows
from reports.console import format_target
from tests.helpers import window

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


def meta(records: int, flows: int | None, window_s: float = 10.0, **end: Any) -> StageWindow:
    """The stage's window: rate 3 (flows/s when ``flows`` is given), sending 0 → ``window_s``."""
    raw = {
        "label": LABEL,
        "start": 0.0,
        "cpu_start_s": 0.0,
        "target": {"kind": "rate", "users": None, "rate": 3.0},
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
    # only 15 flows (30 requests) in the 10 s window of a 3 flows/s target: 2 requests per flow, so 6 req/s
    # planned and 3 req/s offered — compared with the 3 flows/s as req/s it looked on target
    (load,) = check_load(flow_stage(15, rate=1.5), [meta(30, 15)])
    assert load.target_rps == pytest.approx(6.0)
    assert offered_short(load) == "offered 3 req/s of the 6 req/s planned (3 flows/s)"
    point = capacity(flow_stage(15, rate=1.5), [meta(30, 15)], SLOS).points[0]
    assert point.queue_growth and point.x_basis == "achieved"


def test_the_waited_share_is_over_flow_arrivals() -> None:
    # 150 flows (300 requests), 2 of them waited: 2 / 150 = 1.3 % > 1 % of arrivals (over requests, 0.67 %, it
    # would pass)
    (load,) = check_load(flow_stage(150), [meta(300, 150, window_s=50.0, no_free_user=2)])
    assert offered_short(load) is not None
    assert offered_short(load).startswith("2 of 150 arrivals (1.3%) waited")  # type: ignore[union-attr]


def test_x_star_of_a_flow_stage_is_its_target_in_requests() -> None:
    # 64 sent, 60 ok: X = 6.4 req/s × 60 / 64 = 6.0 (on its flow rate read as req/s it was 3 × 60 / 64 = 2.81)
    result = capacity(flow_stage(30, retries=4), [meta(64, 30)], SLOS, max_error_share=0.1)
    (point,) = result.points
    assert point.target_rate == pytest.approx(6.4)
    assert point.x_basis == "target" and point.x_req_per_s == pytest.approx(6.0)
    assert result.max_rps == pytest.approx(6.0)
    assert not point.queue_growth
