"""Capacity analysis on hand-built stages with known answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import capacity, fit_linear, predict, predict_latency
from analysis.frame import with_metrics
from tests.helpers import stage_rows, window, windows

SLOS = {"chat": {"ttft_p95": 1.0}}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["output_tokens"] = df["output_tokens"].astype("Int64")
    df["client_output_tokens"] = df["client_output_tokens"].astype("Int64")
    df["prompt_tokens"] = df["prompt_tokens"].astype("Int64")
    df["first_token_at"] = df["first_token_at"].astype("float64")
    return with_metrics(df)


def five_stages() -> pd.DataFrame:
    # 400 requests per stage; durations give 10..50 req/s; p95 TTFT 0.2, 0.4, 0.8, 1.2, 2.0 s
    rows: list[dict[str, Any]] = []
    for i, (rps, ttft) in enumerate([(10, 0.2), (20, 0.4), (30, 0.8), (40, 1.2), (50, 2.0)]):
        rows += stage_rows(f"s{i + 1}", 400, 400 / rps, ttft, t0=1000.0 * i)
    return frame(rows)


def test_slo_crossing_between_stages_is_interpolated_linearly() -> None:
    result = capacity(five_stages(), [f"s{i}" for i in range(1, 6)], SLOS)
    assert [p.meets() for p in result.points] == [True, True, True, False, False]
    # f = (1.0 − 0.8) / (1.2 − 0.8) = 0.5 between 30 and 40 req/s
    assert result.max_rps == pytest.approx(35.0)
    assert result.max_output_tok_per_s == pytest.approx(35.0 * 101)  # 101 tokens per request
    assert result.interpolated
    assert "s3" in result.basis and "s4" in result.basis and "ttft_p95" in result.basis
    # identical values in a stage: the percentile CI collapses onto the point
    assert result.max_rps_ci == (pytest.approx(35.0), pytest.approx(35.0))
    assert result.saturation_rps == pytest.approx(50.0)
    assert result.saturation_stage == "s5"
    assert result.limit == "server"
    assert "ttft_p95" in result.limit_detail and "s4" in result.limit_detail


def test_a_short_baseline_without_a_bound_does_not_leave_x_star_unbounded() -> None:
    # s0: 5 requests, too few to bound a p95; s1 passes on its bound; s2 breaks the SLO
    rows = stage_rows("s0", 5, 5.0, 0.2) + stage_rows("s1", 300, 15.0, 0.6, t0=1000.0)
    rows += stage_rows("s2", 300, 10.0, 1.4, t0=2000.0)
    result = capacity(frame(rows), ["s0", "s1", "s2"], SLOS)
    assert result.points[0].checks[0].ci_high is None and result.points[0].meets()
    # f = (1.0 − 0.6) / (1.4 − 0.6) = 0.5 between 20 and 30 req/s, for the point and the (collapsed) bounds
    assert result.max_rps == pytest.approx(25.0)
    assert result.max_rps_ci == (pytest.approx(25.0), pytest.approx(25.0))
    # with nothing more loaded that meets the SLOs on its bounds, an unbounded stage stays a failure
    alone = capacity(
        frame(stage_rows("s0", 5, 5.0, 0.2) + stage_rows("s2", 300, 10.0, 1.4, t0=2000.0)), ["s0", "s2"], SLOS
    )
    # (the point: f = (1.0 − 0.2) / (1.4 − 0.2) = 2/3 between 1 and 30 req/s)
    assert alone.max_rps == pytest.approx(1.0 + 29.0 * 2 / 3) and alone.max_rps_ci[0] is None


def test_percentile_ci_brackets_the_point_and_is_conservative() -> None:
    rng = np.random.default_rng(1)
    rows: list[dict[str, Any]] = []
    for i, (rps, scale) in enumerate([(10, 0.2), (20, 0.4), (30, 0.6), (40, 1.2)]):
        rows += stage_rows(f"s{i}", 300, 300 / rps, rng.uniform(0, 2 * scale, 300), t0=1000.0 * i)
    result = capacity(frame(rows), [f"s{i}" for i in range(4)], SLOS)
    low, high = result.max_rps_ci
    assert result.max_rps is not None and low is not None and high is not None
    assert low < result.max_rps < high
    check = result.points[2].checks[0]
    assert check.key == "ttft_p95" and check.ci_low is not None and check.ci_high is not None
    assert check.ci_low < check.value < check.ci_high  # type: ignore[operator]


def test_all_stages_passing_gives_a_lower_bound_and_none_passing_gives_none() -> None:
    records = five_stages()
    relaxed = capacity(records, [f"s{i}" for i in range(1, 6)], {"chat": {"ttft_p95": 5.0}})
    assert relaxed.max_rps == pytest.approx(50.0) and not relaxed.interpolated
    assert "lower bound" in relaxed.basis
    assert relaxed.limit is None
    strict = capacity(records, [f"s{i}" for i in range(1, 6)], {"chat": {"ttft_p95": 0.1}})
    assert strict.max_rps is None and "no stage" in strict.basis


def test_429s_before_latency_breaks_make_the_quota_binding() -> None:
    detail = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit"
    rows: list[dict[str, Any]] = []
    for i, (rps, limited) in enumerate([(10, 0), (20, 0), (30, 120), (40, 200)]):
        rows += stage_rows(f"s{i}", 400, 400 / rps, 0.2, t0=1000.0 * i)
        rows[-400:] = stage_rows(
            f"s{i}",
            400,
            400 / rps,
            0.2,
            t0=1000.0 * i,
            error_class="rate_limited",
            errors=limited,
            detail=detail,
        )
    result = capacity(frame(rows), [f"s{i}" for i in range(4)], SLOS)
    assert result.limit == "quota"
    assert "queries_per_second" in result.limit_detail and "s2" in result.limit_detail
    assert result.points[2].limit_types == {"queries_per_second": 120}
    # s1 passes; s2 fails on its error share alone, all 429s, and got 21 of the 30 req/s it sent through: the
    # quota held it back, so its ceiling is what s2 got through
    assert result.max_rps == pytest.approx(280 / 400 * 30)
    assert result.basis.startswith("quota ceiling") and not any(p.latency_broken for p in result.points)
    # the same share of 5xx is not a quota: interpolated, f = 0.01 / 0.30 → 20 + f × (21 − 20)
    rows = [{**r, "error_class": "server_error"} if r["error_class"] else r for r in rows]
    result = capacity(frame(rows), [f"s{i}" for i in range(4)], SLOS)
    assert result.limit == "server" and result.max_rps == pytest.approx(20.0 + (0.01 / 0.30) * 1.0)


def test_linear_tpot_data_gives_exact_fit() -> None:
    t0, t1 = 0.010, 0.002
    rows: list[dict[str, Any]] = []
    for i, users in enumerate([4, 8, 16, 32]):
        tpot = t0 + t1 * users
        e2e = 0.1 + 100 * tpot  # 101 output tokens
        rows += stage_rows(f"c{users}", users, e2e, 0.1, t0=1000.0 * i)
    result = capacity(frame(rows), ["c4", "c8", "c16", "c32"], {})
    fit = result.tpot_fit
    assert fit is not None
    assert fit.t0 == pytest.approx(t0) and fit.t1 == pytest.approx(t1)
    assert fit.r2 == pytest.approx(1.0)
    assert (fit.x_min, fit.x_max) == (
        pytest.approx(4.0),
        pytest.approx(32.0),
    )  # Little's law in-flight = users
    near = predict(result, 3.0)  # measured 2.1–4.3 req/s, the fit saturates at 5 req/s
    assert near is not None and not near.extrapolated and near.e2e_s is not None
    assert near.concurrency == pytest.approx(3.0 * near.e2e_s)  # Little's law holds in the prediction
    measured_max = max(p.req_per_s or 0 for p in result.points)
    far = predict(result, 2.5 * measured_max)
    assert far is not None and far.extrapolated


def test_predict_latency_solves_littles_law_and_stops_at_saturation() -> None:
    fit = fit_linear([1.0, 2.0], [0.011, 0.012])
    assert fit is not None
    assert (fit.t0, fit.t1) == (pytest.approx(0.01), pytest.approx(0.001))
    got = predict_latency(fit, 2.0, ttft_s=0.1, output_tokens=101, measured_rates=[1.0, 3.0])
    # C = 2 (0.1 + 0.01·100) / (1 − 2·0.001·100) = 2.75; TPOT = 0.01275; E2E = 1.375
    assert got.concurrency == pytest.approx(2.75)
    assert got.tpot_s == pytest.approx(0.01275)
    assert got.e2e_s == pytest.approx(1.375)
    assert not got.extrapolated
    assert predict_latency(fit, 7.0, 0.1, 101, [1.0, 3.0]).extrapolated
    assert predict_latency(fit, 0.4, 0.1, 101, [1.0, 3.0]).extrapolated
    saturated = predict_latency(fit, 10.0, 0.1, 101, [1.0, 3.0])
    assert saturated.concurrency is None and "saturation" in saturated.note


def test_fit_needs_two_distinct_points() -> None:
    assert fit_linear([4.0, 4.0], [0.1, 0.2]) is None
    assert fit_linear([4.0, None], [0.1, 0.2]) is None


def test_knee_is_where_throughput_stops_paying_for_latency() -> None:
    rows: list[dict[str, Any]] = []
    # (req/s, e2e): throughput flattens after the third stage while latency climbs
    for i, (n, duration) in enumerate([(10, 1.0), (22, 1.1), (39, 1.3), (93, 3.0), (189, 6.0)]):
        rows += stage_rows(f"k{i}", n, duration, 0.05, t0=1000.0 * i)
    result = capacity(frame(rows), [f"k{i}" for i in range(5)], {})
    assert result.knee_stage == "k2"
    assert result.knee_rps == pytest.approx(30.0)


def test_attainment_slo_uses_good_over_all() -> None:
    rows: list[dict[str, Any]] = []
    ttfts = [np.r_[np.full(95, 0.2), np.full(5, 2.0)], np.r_[np.full(80, 0.2), np.full(20, 2.0)]]
    for i, ttft in enumerate(ttfts):
        rows += stage_rows(f"a{i}", 100, 10.0, ttft, t0=1000.0 * i)
    slos = {"chat": {"ttft_p50": 1.0, "attainment": 0.9}}
    result = capacity(frame(rows), ["a0", "a1"], slos)
    att = [next(c for c in p.checks if c.key == "attainment") for p in result.points]
    assert [a.value for a in att] == [pytest.approx(0.95), pytest.approx(0.80)]
    assert [p.meets() for p in result.points] == [True, False]
    assert att[0].ci_low is not None and att[0].ci_low < 0.95 and not att[0].passed("conservative")


def test_a_stray_429_does_not_make_the_quota_binding() -> None:
    rows: list[dict[str, Any]] = []
    for i, (rps, ttft) in enumerate([(10, 0.2), (20, 0.4), (30, 2.0)]):
        # one 429 in 400 (0.25 %) in every stage: under the 1 % error budget
        rows += stage_rows(f"s{i}", 400, 400 / rps, ttft, t0=1000.0 * i, error_class="rate_limited", errors=1)
    result = capacity(frame(rows), ["s0", "s1", "s2"], SLOS)
    assert result.points[0].rate_limited == 1
    assert result.limit == "server" and "s2" in result.limit_detail


def test_a_token_rate_stage_that_falls_behind_its_rate_is_queue_growth() -> None:
    rows = stage_rows("t0", 400, 400 / 10, 0.2) + stage_rows("t1", 400, 400 / 12, 0.2, t0=1000.0)
    stages = [
        {"label": "t0", "target": {"kind": "tokens", "tokens_per_min": 60_000, "initial_rate": 10.0}},
        {"label": "t1", "target": {"kind": "tokens", "tokens_per_min": 120_000, "initial_rate": 20.0}},
    ]
    result = capacity(frame(rows), windows(stages), SLOS)
    assert [p.queue_growth for p in result.points] == [False, True]  # 12 req/s sent of the 20 it set out at
    assert result.limit == "server" and "queue growth" in result.limit_detail


@pytest.mark.parametrize("n", [3, 20, 59, 60, 500, 4001])
@pytest.mark.parametrize("q", [50.0, 90.0, 95.0, 99.0])
def test_percentile_ci_is_scipys_quantile_test_interval(n: int, q: float) -> None:
    from scipy import stats  # type: ignore[import-untyped]

    from analysis.stage_points import percentile_ci

    values = np.random.default_rng(n).lognormal(0.0, 1.0, n)
    point, low, high = percentile_ci(values, q)
    assert point == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    ci = stats.quantile_test(values, q=point, p=q / 100).confidence_interval(0.95)
    assert (low, high) == (
        None if np.isnan(ci.low) else pytest.approx(ci.low, rel=1e-12),
        None if np.isnan(ci.high) else pytest.approx(ci.high, rel=1e-12),
    )


def test_stages_are_ordered_by_offered_load_not_by_the_manifest() -> None:
    # an automatic sweep: baseline, saturation probe, then rates between (manifest order); TTFT grows with load
    rows = stage_rows("c1", 100, 100 / 5, 0.1) + stage_rows("c128", 400, 400 / 50, 2.0, t0=1000.0)
    rows += stage_rows("r20", 200, 200 / 20, 0.3, t0=2000.0) + stage_rows(
        "r35", 350, 350 / 35, 0.9, t0=3000.0
    )
    stages = [
        {"label": "c1", "target": {"kind": "concurrency", "users": 1}},
        {"label": "c128", "target": {"kind": "concurrency", "users": 128}},
        {"label": "r20", "target": {"kind": "rate", "rate": 20.0}},
        {"label": "r35", "target": {"kind": "rate", "rate": 35.0}},
    ]
    result = capacity(frame(rows), windows(stages), SLOS)
    assert [p.stage for p in result.points] == ["c1", "r20", "r35", "c128"]
    # r35 passes (0.9 s), c128 fails (2.0 s): f = (1 − 0.9) / (2 − 0.9), between 35 and 50 req/s
    assert result.max_rps == pytest.approx(35 + (0.1 / 1.1) * 15)


def test_open_loop_rates_are_over_the_sending_window_not_the_drain() -> None:
    # 40 requests sent at 4 req/s over a 10 s window; each takes 5 s, so the last ends 5 s after the window
    rows = []
    for i in range(40):
        t = 1000.0 + i * 0.25
        (row,) = stage_rows("r4", 1, 5.0, 0.2, t0=t)
        rows.append(row)
    meta = {"label": "r4", "start": 1000.0, "window_end": 1010.0, "target": {"kind": "rate", "rate": 4.0}}
    (point,) = capacity(frame(rows), [window(meta)], SLOS).points
    assert point.req_per_s == pytest.approx(4.0) and point.sent_per_s == pytest.approx(4.0)
    assert not point.queue_growth  # over first start → last end it would read 40 / 14.75 s = 2.7 req/s
    assert point.concurrency == pytest.approx(20.0)  # Little: 4 req/s × 5 s


def test_a_quota_ceiling_needs_the_other_errors_within_the_share() -> None:
    detail = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit"
    rows = stage_rows("s0", 400, 400 / 10, 0.2)
    # s1: 20 429s and 20 server errors of 400 (5 % other errors): not a quota ceiling, interpolate
    s1 = stage_rows("s1", 400, 400 / 20, 0.2, t0=1000.0, error_class="rate_limited", errors=20, detail=detail)
    s1[20:40] = stage_rows("s1", 20, 400 / 20, 0.2, t0=1000.0, error_class="server_error", errors=20)
    result = capacity(frame(rows + s1), ["s0", "s1"], SLOS)
    assert result.basis.startswith("interpolated")  # the 429s still make the quota the binding limit (first)


def test_all_failed_is_not_a_latency_verdict_and_cancelled_records_do_not_count() -> None:
    rows = stage_rows("s0", 100, 10.0, 0.2) + stage_rows(
        "s1", 100, 10.0, 0.2, t0=1000.0, error_class="server_error", errors=100
    )
    result = capacity(frame(rows), ["s0", "s1"], SLOS)
    assert not result.points[1].latency_broken and "errors other than 429" in result.limit_detail
    cancelled = stage_rows("s0", 100, 10.0, 0.2) + stage_rows(
        "s0", 50, 10.0, 0.2, t0=5.0, error_class="cancelled", errors=50
    )
    (point,) = capacity(frame(cancelled), ["s0"], SLOS).points
    assert point.requests == 100 and point.meets()


def test_a_lower_bound_has_no_upper_ci() -> None:
    result = capacity(frame(stage_rows("s0", 400, 40.0, 0.2)), ["s0"], SLOS)
    assert result.max_rps == pytest.approx(10.0) and result.max_rps_ci[1] is None


def test_429s_from_bursts_below_the_quota_are_interpolated_not_a_ceiling() -> None:
    # Poisson at 15 req/s against a QPS-20 quota: bursts get 11 % 429s, yet 15 req/s got through — not held back
    detail = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit"
    rows = stage_rows("r5", 100, 20.0, 0.2)
    rows += stage_rows("r15", 340, 20.0, 0.2, t0=1000.0, error_class="rate_limited", errors=40, detail=detail)
    stages = [
        {"label": "r5", "target": {"kind": "rate", "rate": 5.0}},
        {"label": "r15", "target": {"kind": "rate", "rate": 15.0}},
    ]
    result = capacity(frame(rows), windows(stages), SLOS)
    assert result.basis.startswith("interpolated") and result.max_rps is not None and result.max_rps < 15.0


# -- open-loop stages: X* on the target rate, intervals by sectioning ---------------------------------------------


def open_rows(
    label: str, ttfts: list[float], window_s: float, t0: float, lag: float = 0.0, failed: int = 0
) -> list[dict[str, Any]]:
    """One request per TTFT, started evenly over ``window_s`` from ``t0`` in that order (``lag`` after it was
    due), each 1 s long; the first ``failed`` of them server errors."""
    rows = []
    for i, ttft in enumerate(ttfts):
        start = t0 + i * window_s / len(ttfts)
        (row,) = stage_rows(label, 1, 1.0, ttft, t0=start, error_class="server_error", errors=int(i < failed))
        rows.append({**row, "scheduled_at": start - lag})
    return rows


def rate_window(label: str, rate: float, t0: float, window_s: float, kind: str = "rate") -> dict[str, Any]:
    target = {"kind": kind, "rate": rate} if kind == "rate" else {"kind": kind, "initial_rate": rate}
    return {"label": label, "start": t0, "window_end": t0 + window_s, "target": target}


def test_an_open_loop_sweep_is_interpolated_on_its_target_rates() -> None:
    # r20 sent 230 requests in its 10 s window (23/s realised), 2 of them failed; r30 sent 330 (33/s), none failed;
    # TTFT p95 0.6 s then 1.4 s: f = (1 − 0.6) / (1.4 − 0.6) = 0.5
    rows = open_rows("r20", [0.6] * 230, 10.0, 0.0, failed=2) + open_rows("r30", [1.4] * 330, 10.0, 1000.0)
    stages = windows([rate_window("r20", 20.0, 0.0, 10.0), rate_window("r30", 30.0, 1000.0, 10.0)])
    result = capacity(frame(rows), stages, SLOS)
    a, b = result.points
    assert (a.x_basis, b.x_basis) == ("target", "target")
    assert a.req_per_s == pytest.approx(22.8) and a.x_req_per_s == pytest.approx(20 * 228 / 230)
    assert a.x_output_tok_per_s == pytest.approx(20 * 228 * 101 / 230)
    assert b.x_req_per_s == pytest.approx(30.0)
    # X* = 19.826 + 0.5 × (30 − 19.826) on the target rates; on the realised ones it would be 22.8 + 0.5 × 10.2
    assert result.max_rps == pytest.approx(20 * 228 / 230 + 0.5 * (30 - 20 * 228 / 230))
    assert result.basis.startswith("interpolated") and "on their target rates" in result.basis
    assert result.to_dict()["points"][0]["x_basis"] == "target"


def test_a_stage_whose_generator_fell_behind_is_taken_at_its_achieved_rate() -> None:
    rows = open_rows("r20", [0.6] * 230, 10.0, 0.0) + open_rows("r30", [1.4] * 330, 10.0, 1000.0, lag=0.05)
    stages = windows([rate_window("r20", 20.0, 0.0, 10.0), rate_window("r30", 30.0, 1000.0, 10.0)])
    result = capacity(frame(rows), stages, SLOS)
    # r30's lag p99 is 50 ms, over the 25 ms bound: its arrivals were not the target's, so its achieved 33 req/s
    assert [p.x_basis for p in result.points] == ["target", "achieved"]
    assert result.points[1].x_req_per_s == pytest.approx(33.0)
    assert result.max_rps == pytest.approx(20 + 0.5 * 13)
    assert "on r20's target rate and r30's achieved rate: the generator did not keep up" in result.basis
    # a token-rate stage follows its controller, and a closed-loop stage has no target: both achieved
    tokens = windows([rate_window("r20", 20.0, 0.0, 10.0, kind="tokens"), {"label": "r30"}])
    assert [p.x_basis for p in capacity(frame(rows), tokens, SLOS).points] == ["achieved", "achieved"]


def test_sectioned_interval_arithmetic() -> None:
    from analysis.sections import percentile_sections, section_of, sectioned_ci, share_sections

    # S² = (0.04 + 0.01 + 0 + 0.01 + 0.04) / 4 = 0.025; half-width t₄ · S / √5 = 2.7764 × 0.15811 / 2.2361
    low, high = sectioned_ci(1.0, [0.8, 0.9, 1.0, 1.1, 1.2]) or (0.0, 0.0)
    assert (low, high) == (pytest.approx(1.0 - 0.19632, abs=1e-5), pytest.approx(1.0 + 0.19632, abs=1e-5))
    assert sectioned_ci(1.0, [0.8, None, 1.0, 1.1, 1.2]) is None
    # by start time, five equal sections; ties keep their order
    assert section_of(np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0, 9.0, 8.0, 7.0, 6.0])).tolist() == [
        2, 0, 1, 1, 2, 0, 4, 4, 3, 3,
    ]  # fmt: skip
    sections = np.repeat(np.arange(5), 40)
    values = np.tile(np.r_[np.zeros(38), np.ones(2)], 5)
    # p95 of each section's 40 values: 0 + (39 × 0.95 − 37) × 1 = 0.05
    assert percentile_sections(values, sections, 95) == pytest.approx((0.05,) * 5)
    assert percentile_sections(values[:195], sections[:195], 95) is None  # the last section is 35 < 40 values
    assert share_sections(values.astype(bool), sections, 0.95) == pytest.approx((0.05,) * 5)


def test_x_stars_interval_spans_its_sections() -> None:
    # r10: 200 requests over 20 s, TTFT 0.5 s; r20: 200 over 10 s, its five sections at 1.3 … 1.7 s (p95 1.7)
    b = [1.3 + 0.1 * k for k in range(5) for _ in range(40)]
    rows = open_rows("r10", [0.5] * 200, 20.0, 0.0) + open_rows("r20", b, 10.0, 1000.0)
    stages = windows([rate_window("r10", 10.0, 0.0, 20.0), rate_window("r20", 20.0, 1000.0, 10.0)])
    result = capacity(frame(rows), stages, SLOS)
    check = result.points[1].checks[0]
    # r20's p95 is 1.7 (the top 40 values) and its order-statistic interval collapses there; its sections' p95s
    # 1.3 … 1.7 give S² = (0.16 + 0.09 + 0.04 + 0.01) / 4 = 0.075, half-width 2.7764 × 0.27386 / √5 = 0.34004
    assert check.value == pytest.approx(1.7) and check.sections == pytest.approx((1.3, 1.4, 1.5, 1.6, 1.7))
    half = pytest.approx(0.34004, abs=1e-5)
    assert (1.7 - (check.ci_low or 0.0), (check.ci_high or 0.0) - 1.7) == (half, half)
    # X* = 10 + 10 × 0.5 / 1.2; per section 10 + 10 × 0.5 / (b_k − 0.5) = 16.25, 15.556, 15, 14.545, 14.167:
    # S² = Σ (X*_k − X*)² / 4 = 1.77679, half-width 2.7764 × 1.33297 / √5 = 1.65509 — wider than the verdicts'
    # [10 + 5 / 1.54004, 10 + 5 / 0.85996] = [13.247, 15.814]
    x = 10 + 5 / 1.2
    assert result.max_rps == pytest.approx(x)
    assert result.max_rps_ci == (pytest.approx(x - 1.65509, abs=1e-4), pytest.approx(x + 1.65509, abs=1e-4))
    assert "5 sections" in result.basis


def test_an_open_loop_stage_too_short_to_section_has_no_percentile_bounds() -> None:
    # 199 requests: a p95 needs sections of 40 (two values above it in each), so 200
    rows = open_rows("r20", [0.6] * 199, 10.0, 0.0)
    (point,) = capacity(frame(rows), windows([rate_window("r20", 20.0, 0.0, 10.0)]), SLOS).points
    check = point.checks[0]
    assert check.value == pytest.approx(0.6) and (check.ci_low, check.ci_high) == (None, None)
    assert point.meets() and not point.meets("conservative")
