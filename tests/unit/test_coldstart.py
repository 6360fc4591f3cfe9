"""The cold-start measures on hand-made records whose answers are worked out by hand (docs/metrics.md)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from analysis.coldstart import ColdStart, cold_start_bin_s, cold_starts, error_kind
from loadtest.rundir import StageWindow
from loadtest.spec.runspec import Stage
from reports.coldstart_text import cold_start_line, render_cold_starts, sparkline

NAN = math.nan
IDLE = Stage(kind="idle", duration_s=60.0, name="idle")
BURST = Stage(kind="concurrency", users=4, duration_s=6.0, name="burst")


def rec(start: float, end: float, *, status: int | None = 200, error: str | None = None,
        first: float = NAN, tokens: int = 0, stage: str = "burst") -> dict[str, Any]:  # fmt: skip
    return {
        "stage": stage,
        "started_at": start,
        "first_token_at": first,
        "ended_at": end,
        "status": status,
        "error_class": error,
        "error_detail": None if error is None else f"{error} {status}",
        "output_tokens": tokens,
        "ok": error is None,
    }


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


# A burst at t0 = 1000 whose endpoint answers 503 twice, a 504 and a client timeout before the first success
# (ended 1002.5, its first token 1002.2), one late 503 at 1003.05, then a steady 40 tok/s. Bins of 1 s from t0:
#   ended per bin   [2, 2, 2, 3, 2, 2]    failed per bin [2, 2, 0, 1, 0, 0]   error share [1, 1, 0, 1/3, 0, 0]
#   ok tok per bin  [0, 0, 20, 30, 40, 40]  plateau: mean of bins 3..5 (the window's second half) = 110/3
BURST_ROWS = [
    rec(1000.0, 1000.1, status=503, error="server_error"),
    rec(1000.2, 1000.3, status=503, error="server_error"),
    rec(1000.5, 1001.5, status=None, error="timeout"),
    rec(1000.4, 1001.2, status=504, error="server_error"),
    rec(1001.0, 1002.5, first=1002.2, tokens=10),
    rec(1001.1, 1002.8, first=1002.3, tokens=10),
    rec(1002.6, 1003.1, first=1002.7, tokens=10),
    rec(1002.9, 1003.05, status=503, error="server_error"),
    rec(1003.1, 1003.9, first=1003.2, tokens=20),
    rec(1003.5, 1004.5, first=1003.6, tokens=20),
    rec(1004.0, 1004.9, first=1004.1, tokens=20),
    rec(1004.6, 1005.5, first=1004.7, tokens=20),
    rec(1005.0, 1005.9, first=1005.1, tokens=20),
]
WINDOWS = [StageWindow(label="burst", start=999.95, window_end=1006.0)]


def only(found: list[ColdStart]) -> ColdStart:
    assert len(found) == 1
    return found[0]


def test_the_measures_of_a_burst_after_idle_are_exact() -> None:
    cs = only(cold_starts(frame(BURST_ROWS), [IDLE, BURST], WINDOWS, bin_s=1.0))
    assert (cs.stage, cs.after, cs.idle_s, cs.t0, cs.requests) == ("burst", "idle", 60.0, 1000.0, 13)
    assert cs.first_request.outcome == "HTTP 503"
    assert cs.first_request.ttft_s is None
    assert cs.first_request.e2e_s == pytest.approx(0.1)
    assert cs.first_token_s == pytest.approx(2.2)
    assert cs.first_success_s == pytest.approx(2.5)
    assert cs.errors_before_first_success == {"HTTP 503": 2, "HTTP 504": 1, "timeout": 1}
    assert cs.errors == 5
    assert cs.errors_settled_s == 4.0 and cs.errors_settled  # the late 503's bin [3, 4) is the last above 1 %
    assert cs.bin_s == 1.0 and cs.window_s == 6.0
    assert cs.ramp_unit == "output tok/s"
    assert cs.ramp == (0.0, 0.0, 20.0, 30.0, 40.0, 40.0)
    assert cs.ok_per_s == (0.0, 0.0, 2.0, 2.0, 2.0, 2.0)
    assert cs.errors_per_s == (2.0, 2.0, 0.0, 1.0, 0.0, 0.0)
    assert cs.plateau == pytest.approx(110 / 3)
    assert cs.time_to_90pct_s == 5.0  # 30 < 0.9 x 36.7 = 33; the bin [4, 5) is the first at 40
    data = cs.to_dict()
    assert data["first_request"] == {"outcome": "HTTP 503", "ttft_s": None, "e2e_s": pytest.approx(0.1)}
    assert data["ramp"] == [0.0, 0.0, 20.0, 30.0, 40.0, 40.0]


def test_only_a_stage_right_after_an_idle_stage_is_a_burst() -> None:
    warm = Stage(kind="concurrency", users=1, duration_s=5.0, name="warm")
    rows = [{**r, "stage": "warm"} for r in BURST_ROWS]
    assert cold_starts(frame(rows), [warm, BURST], bin_s=1.0) == []  # no idle stage before it
    assert cold_starts(frame(BURST_ROWS), [IDLE, BURST, warm], bin_s=1.0)[0].stage == "burst"
    assert cold_starts(frame(BURST_ROWS[:0] + rows), [IDLE, BURST], bin_s=1.0) == []  # a burst with no record


def test_cancelled_records_say_nothing_about_the_endpoint() -> None:
    rows = [rec(999.0, 1007.0, status=None, error="cancelled"), *BURST_ROWS]
    cs = only(cold_starts(frame(rows), [IDLE, BURST], WINDOWS, bin_s=1.0))
    assert cs.t0 == 1000.0 and cs.requests == 13 and cs.errors == 5


def test_a_warm_burst_has_no_errors_and_errors_that_never_stop_say_so() -> None:
    warm = [rec(1000.0 + i, 1000.5 + i, first=1000.1 + i, tokens=8) for i in range(6)]
    cs = only(cold_starts(frame(warm), [IDLE, BURST], WINDOWS, bin_s=1.0))
    assert cs.first_request.outcome == "ok" and cs.first_request.ttft_s == pytest.approx(0.1)
    assert cs.first_success_s == pytest.approx(0.5) and cs.errors_before_first_success == {}
    assert (cs.errors, cs.errors_settled_s, cs.errors_settled) == (0, None, True)
    assert cs.plateau == 8.0 and cs.time_to_90pct_s == 1.0
    failing = [rec(1000.0 + i, 1000.5 + i, status=503, error="server_error") for i in range(6)]
    cs = only(cold_starts(frame(failing), [IDLE, BURST], WINDOWS, bin_s=1.0))
    assert cs.first_success_s is None and cs.first_token_s is None
    assert cs.errors_before_first_success == {"HTTP 503": 6}  # no success: every error came before it
    assert (cs.errors_settled_s, cs.errors_settled) == (6.0, False)  # still failing in the window's last bin
    assert cs.plateau == 0.0 and cs.time_to_90pct_s is None
    assert cs.ramp_unit == "req/s"  # no output tokens at all


def test_the_default_bin_is_readable_and_at_least_the_median_request() -> None:
    assert cold_start_bin_s(frame(BURST_ROWS)) == 1.0  # median successful E2E 0.9 s
    slow = [rec(1000.0 + i, 1002.5 + i, first=1000.2 + i, tokens=4) for i in range(5)]
    assert cold_start_bin_s(frame(slow)) == 3.0  # 2.5 s → the next readable width
    cs = only(cold_starts(frame(slow), [IDLE, BURST]))
    assert cs.bin_s == 3.0 and cs.window_s == pytest.approx(6.5)  # no window: the last record's end


def test_error_kinds() -> None:
    assert error_kind(503, "server_error") == "HTTP 503"
    assert error_kind(429.0, "rate_limited") == "HTTP 429"
    assert error_kind(None, "timeout") == "timeout"
    assert error_kind(200, "stream_cut") == "stream_cut"


def test_analyze_prints_the_measures_and_the_ramp() -> None:
    cs = only(cold_starts(frame(BURST_ROWS), [IDLE, BURST], WINDOWS, bin_s=1.0))
    assert render_cold_starts([cs]).splitlines() == [
        "cold start (times from the burst's first request):",
        "  stage                            burst: 13 requests after idle (60 s without any)",
        "  first request                    HTTP 503 after 0.1 s",
        "  first token                      2.2 s",
        "  first success                    2.5 s",
        "  errors before the first success  4 (HTTP 503 × 2, HTTP 504 × 1, timeout × 1)",
        "  error rate                       ≤ 1 % from 4.0 s on (5 errors in the stage)",
        "  throughput ramp                  plateau 36.7 output tok/s; 90 % of it after 5.0 s (bins of 1 s)",
        "                                   ▁▁▅▆██",
    ]
    assert cold_start_line(cs) == (
        "cold start: burst after 60 s idle — first success after 2.5 s, 4 (HTTP 503 × 2, HTTP 504 × 1, "
        "timeout × 1) errors before it; 90 % of the plateau after 5.0 s"
    )
    assert sparkline([0.0] * 3) == "▁▁▁" and sparkline([1.0] * 61).endswith("█…")
