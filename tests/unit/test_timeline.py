"""The run over time, reduced for charts, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.timeline import histogram, quantile_curve, timeline


def frame(rows: list[tuple[float, float, int | None, str | None, str | None]]) -> pd.DataFrame:
    """(started, ended, output tokens, error class, error detail) per request."""
    started, ended, tokens, error, detail = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "started_at": started,
            "ended_at": ended,
            "output_tokens": pd.array(tokens, dtype="Int64"),
            "ok": [e is None for e in error],
            "error_class": error,
            "error_detail": detail,
        }
    )


OTPM = '{"error":{"type":"rate_limit_exceeded","limit_type":"output_tokens_per_minute"}}'


def test_rates_in_flight_and_errors_per_bin() -> None:
    records = frame(
        [
            (100.0, 102.0, 10, None, None),  # in flight over [0, 2)
            (100.5, 101.5, 20, None, None),  # over [0.5, 1.5)
            (101.0, 103.5, 30, None, None),  # over [1, 3.5)
            (102.0, 102.2, None, "server_error", "HTTP 503"),  # over [2, 2.2)
            (103.0, 103.1, None, "rate_limited", OTPM),  # over [3, 3.1)
        ]
    )
    line = timeline(records)
    assert line is not None
    assert line.start == 100.0 and line.bin_s == 1.0  # 3.5 s span: bins of a second
    np.testing.assert_allclose(line.t, [0.5, 1.5, 2.5, 3.5])
    # completions by the bin they ended in: 101.5 → 1, 102.0 → 2, 102.2 → 2, 103.1 → 3, 103.5 → 3
    np.testing.assert_allclose(line.completed_per_s, [0, 1, 2, 2])
    # output tokens of successful requests by their end's bin: 20 in bin 1, 10 in bin 2, 30 in bin 3
    np.testing.assert_allclose(line.output_tok_per_s, [0, 20, 10, 30])
    # mean in flight: bin 0 = 1 + 0.5; bin 1 = 1 + 0.5 + 1; bin 2 = 1 + 0.2; bin 3 = 0.5 + 0.1
    np.testing.assert_allclose(line.in_flight, [1.5, 2.5, 1.2, 0.6])
    assert set(line.errors_per_s) == {"server_error", "rate_limited"}
    np.testing.assert_allclose(line.errors_per_s["server_error"], [0, 0, 1, 0])
    np.testing.assert_allclose(line.rate_limited_per_s["output_tokens_per_minute"], [0, 0, 0, 1])


def test_no_timed_record_gives_no_timeline() -> None:
    records = frame([(np.nan, np.nan, None, "connection", "refused")])
    assert timeline(records) is None


def test_a_long_run_gets_wider_readable_bins() -> None:
    records = frame([(0.0, 1.0, 1, None, None), (3000.0, 3600.0, 1, None, None)])
    line = timeline(records, target_bins=120)
    assert line is not None and line.bin_s == 30.0 and len(line.t) == 120


def test_quantile_curve_is_exact_at_its_probabilities() -> None:
    values = np.array([4.0, 1.0, np.nan, 3.0, 2.0, 5.0])
    curve = quantile_curve(values, points=5)
    assert curve is not None
    p, v = curve
    np.testing.assert_allclose(p, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(v, [1, 2, 3, 4, 5])
    assert quantile_curve(np.array([np.nan])) is None


def test_histogram_shares_integer_bins_between_series() -> None:
    hist = histogram({"asked": np.array([10.0, 10, 12]), "served": np.array([11.0, np.nan, 13])}, bins=40)
    assert hist is not None
    np.testing.assert_allclose(hist.edges, [9.5, 10.5, 11.5, 12.5, 13.5])  # one bin per length 10..13
    assert hist.counts["asked"].tolist() == [2, 0, 1, 0]
    assert hist.counts["served"].tolist() == [0, 1, 0, 1]
    wide = histogram({"served": np.arange(0.0, 1000.0)}, bins=10)
    assert wide is not None and len(wide.edges) - 1 <= 11 and wide.counts["served"].sum() == 1000
    assert histogram({"served": np.array([np.nan])}) is None


@pytest.mark.parametrize("span", [0.2, 1.0, 59.0])
def test_bins_are_never_under_a_second(span: float) -> None:
    line = timeline(frame([(0.0, span, 1, None, None)]))
    assert line is not None and line.bin_s >= 1.0


def test_bins_can_be_asked_to_be_wider_than_a_request() -> None:
    records = frame([(0.0, 4.0, 1, None, None), (60.0, 64.0, 1, None, None)])
    line = timeline(records, min_bin_s=8.0)
    assert line is not None and line.bin_s == 10.0  # the first readable width of at least 8 s
