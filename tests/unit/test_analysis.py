"""Loading runs, per-stage / per-class summaries, goodput, token mismatch, and the ``analyze`` command."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from analysis import (
    class_slos,
    flat_gaps,
    good_mask,
    load_run,
    request_itl_percentile,
    summarize_classes,
    summarize_stages,
    token_mismatch,
)
from loadtest.cli.group import main
from loadtest.client.protocol import RequestClass
from loadtest.client.records import GAPS_FILE, RequestRecord
from loadtest.engine.conduct import Recorder
from tests.helpers import (
    SLO,
    jsonl,
    manifest_dict,
    records,
    refused,
    run_cli,
    stage_rows,
    write_rows_run,
    write_run,
)


def test_load_keeps_gaps_flat_and_skips_a_partial_last_line(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()) + b'{"run_id": "r1", "stage": "s1", "chunk_ga')
    data = load_run(run)
    assert data.skipped_lines == 1
    assert len(data.records) == 8
    values, lengths = flat_gaps(data.records["chunk_gaps"])
    assert lengths.tolist() == [3, 3, 0, 3, 0, 1, 0, 2]
    assert values.tolist() == [0.01, 0.02, 0.03] * 3 + [9.0, 0.5, 0.5]
    assert data.records["output_tokens"].dtype == "Int64"
    assert data.records["tpot"].iloc[0] == pytest.approx(0.08)


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    data = load_run(write_run(tmp_path, jsonl(records()).rstrip(b"\n")))
    assert data.skipped_lines == 0 and len(data.records) == 8


def test_a_corrupt_middle_line_falls_back_to_line_by_line(tmp_path: Path) -> None:
    lines = jsonl(records()[:2]) + b"{not json\n" + jsonl(records()[2:])
    data = load_run(write_run(tmp_path, lines))
    assert data.skipped_lines == 1 and len(data.records) == 8
    assert flat_gaps(data.records["chunk_gaps"])[1].tolist() == [3, 3, 0, 3, 0, 1, 0, 2]


def write_run_recorded(tmp_path: Path, recs: list[RequestRecord], name: str = "run") -> Path:
    """A run directory in the recorder's format 2: gaps in ``chunk_gaps.f32``, offsets on the lines."""
    run = write_run(tmp_path / name, b"")
    recorder = Recorder(run, "test")
    recorder.write(jsonl(recs[:3]))
    recorder.write(jsonl(recs[3:]))
    recorder.close()
    return run


def test_format_2_loads_to_the_same_metrics_as_inline_gaps(tmp_path: Path) -> None:
    inline = load_run(write_run(tmp_path / "a", jsonl(records())))
    side = load_run(write_run_recorded(tmp_path / "b", records()))
    assert (side.run_dir / GAPS_FILE).stat().st_size == 4 * 12
    assert side.records.drop(columns="chunk_gaps").equals(inline.records.drop(columns="chunk_gaps"))
    values, lengths = flat_gaps(side.records["chunk_gaps"])
    old_values, old_lengths = flat_gaps(inline.records["chunk_gaps"])
    assert values.dtype == np.float32 and old_values.dtype == np.float64
    assert lengths.tolist() == old_lengths.tolist() == [3, 3, 0, 3, 0, 1, 0, 2]
    assert values.tolist() == pytest.approx(old_values.tolist(), rel=1e-7)
    assert side.records["chunk_gaps"].isna().tolist() == inline.records["chunk_gaps"].isna().tolist()
    for new, old in zip(
        summarize_stages(side.records, ["s1", "s2"], slos=SLO) + summarize_classes(side.records, slos=SLO),
        summarize_stages(inline.records, ["s1", "s2"], slos=SLO)
        + summarize_classes(inline.records, slos=SLO),
        strict=True,
    ):
        assert replace(new, itl={}) == replace(old, itl={})
        assert [k for k, v in new.itl.items() if v is None] == [k for k, v in old.itl.items() if v is None]
        got = {k: v for k, v in new.itl.items() if v is not None}
        assert got == pytest.approx({k: old.itl[k] for k in got}, rel=1e-7)
        assert all(type(v) is float for v in got.values())  # JSON-ready Python floats, not numpy float32
    itl_slo = {"chat": {"itl_p99": 0.1}}
    assert good_mask(side.records, itl_slo).tolist() == good_mask(inline.records, itl_slo).tolist()


def test_format_2_with_a_partial_last_line_and_orphan_gaps(tmp_path: Path) -> None:
    run = write_run_recorded(tmp_path, records())
    with (run / GAPS_FILE).open("ab") as side:  # gaps of a record whose line never made it (a crash)
        side.write(np.array([5.0, 5.0], dtype="<f4").tobytes())
    with (run / "records.jsonl").open("ab") as fh:
        fh.write(b'{"run_id":"r1","stage":"s1","gap_offset":12,"gap_co')
    data = load_run(run)
    assert data.skipped_lines == 1 and len(data.records) == 8
    values, lengths = flat_gaps(data.records["chunk_gaps"])
    assert lengths.tolist() == [3, 3, 0, 3, 0, 1, 0, 2]
    assert values.tolist() == pytest.approx([0.01, 0.02, 0.03] * 3 + [9.0, 0.5, 0.5], rel=1e-7)


def test_format_2_gaps_out_of_order_missing_or_behind_a_corrupt_line(tmp_path: Path) -> None:
    run = write_run_recorded(tmp_path, records())
    lines = (run / "records.jsonl").read_bytes().splitlines(keepends=True)
    last = orjson.loads(lines[-1])
    last["gap_offset"] = 11  # its two gaps would run past the end of the side file
    lines[-1] = orjson.dumps(last) + b"\n"
    # the first line behind a corrupt one, so the offsets jump, and the second and first swapped
    (run / "records.jsonl").write_bytes(b"{corrupt\n" + b"".join([lines[1], lines[0], *lines[2:]]))
    data = load_run(run)
    assert data.skipped_lines == 1 and len(data.records) == 8
    assert data.records["seq"].tolist() == [1, 0, 2, 3, 4, 5, 6, 7]
    values, lengths = flat_gaps(data.records["chunk_gaps"])
    assert lengths.tolist() == [3, 3, 0, 3, 0, 1, 0, 0]
    assert data.records["chunk_gaps"].isna().tolist() == [False, False, True, False, True, False, True, True]
    assert values.tolist() == pytest.approx([0.01, 0.02, 0.03] * 3 + [9.0], rel=1e-7)
    (run / GAPS_FILE).unlink()  # no side file at all: every record without gaps, still no exception
    assert flat_gaps(load_run(run).records["chunk_gaps"])[1].sum() == 0


def test_goodput_needs_success_and_every_slo_of_the_class(tmp_path: Path) -> None:
    data = load_run(write_run(tmp_path, jsonl(records())))
    good = good_mask(data.records, SLO)
    assert good.tolist() == [True, False, False, True, False, False, True, True]
    (s1, s2) = summarize_stages(data.records, ["s1", "s2"], slos=SLO)
    assert s1.good == 2 and s1.attainment == pytest.approx(2 / 6)
    assert s1.duration_s == pytest.approx(3.0)
    assert s1.goodput_rps == pytest.approx(2 / 3.0)
    assert s1.req_per_s == pytest.approx(4 / 3.0)
    assert s1.total_tok_per_s == pytest.approx((4 * 20 + 4 * 11) / 3.0)
    assert s1.errors == {"rate_limited": 1, "stream_cut": 1}
    assert s1.rate_limits == {"output_tokens_per_minute": 1}
    assert s1.retry_after_p50_s == pytest.approx(2.0)
    # ITL from successful streamed requests only: the stream_cut's 9 s gap is left out
    assert s1.itl["max"] == pytest.approx(0.03)
    assert s2.good == 2 and s2.attainment == 1.0


def test_itl_slo_is_checked_on_each_requests_own_percentile() -> None:
    values = np.array([0.01, 0.02, 0.03, 0.5, 0.5, 0.1])
    lengths = np.array([3, 0, 2, 1])
    got = request_itl_percentile(values, lengths, 50)
    assert got[0] == pytest.approx(0.02) and np.isnan(got[1])
    assert got[2] == pytest.approx(0.5) and got[3] == pytest.approx(0.1)


def test_request_itl_percentiles_several_at_once_and_for_one_length() -> None:
    values = np.array([0.01, 0.02, 0.03, 0.5, 0.5, 0.1])
    lengths = np.array([3, 0, 2, 1])
    both = request_itl_percentile(values, lengths, (50, 99))
    assert both.shape == (2, 4)
    np.testing.assert_array_equal(both[0], request_itl_percentile(values, lengths, 50))
    np.testing.assert_array_equal(both[1], request_itl_percentile(values, lengths, 99))
    # every row with gaps of one length: the block is a view of the values, same answer as gathering it
    same = np.array([0.04, 0.01, 0.02, 0.5, 0.3, 0.1])
    got = request_itl_percentile(same, np.array([0, 3, 0, 3]), (0, 50, 100))
    np.testing.assert_array_equal(got[:, [1, 3]], [[0.01, 0.1], [0.02, 0.3], [0.04, 0.5]])
    assert np.isnan(got[:, [0, 2]]).all()


def test_itl_slo_in_goodput(tmp_path: Path) -> None:
    slo = {"chat": {"itl_p99": 0.1}}
    data = load_run(write_run(tmp_path, jsonl(records()), slo=slo))
    good = good_mask(data.records, class_slos([RequestClass(name="chat", slo=slo["chat"])]))
    # only the last chat request has slow gaps (0.5 s); unstreamed requests cannot break an ITL SLO
    assert good.tolist() == [True, True, True, True, False, False, True, False]


def test_token_mismatch_counts_successful_records_with_both_counts(tmp_path: Path) -> None:
    data = load_run(write_run(tmp_path, jsonl(records())))
    assert token_mismatch(data.records) == (6, 1)
    (s1, _) = summarize_stages(data.records, ["s1", "s2"], slos=SLO)
    assert (s1.mismatch_checked, s1.mismatch_count) == (4, 1)
    assert s1.mismatch_share == pytest.approx(0.25)


def test_per_class_summaries(tmp_path: Path) -> None:
    data = load_run(write_run(tmp_path, jsonl(records())))
    chat_batch = summarize_classes(data.records, slos=SLO)
    assert [(s.stage, s.request_class) for s in chat_batch] == [("*", "batch"), ("*", "chat")]
    batch, chat = chat_batch
    assert batch.requests == 1 and batch.duration_s == pytest.approx(2.0)
    assert chat.requests == 7 and chat.duration_s == pytest.approx(3.0 + 2.0)  # its two stages' durations
    both = summarize_classes(data.records, slos=SLO, by_stage=True, order=["s1", "s2"])
    assert [(s.stage, s.request_class, s.requests) for s in both] == [
        ("s1", "chat", 6),
        ("s2", "batch", 1),
        ("s2", "chat", 1),
    ]
    assert both[1].duration_s == pytest.approx(2.0)  # the stage's duration


def test_analyze_json_table_csv_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, jsonl(records()))
    assert main(["analyze", str(run), "--format", "json", "--by", "stage,class"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["slos"] == SLO
    assert [s["request_class"] for s in payload["summaries"]] == ["chat", "batch", "chat"]
    # saturation is the stage with the most completed requests a second: s1 finishes 4 of its 6 (seq 4 and 5 fail)
    # in 3 s (100.0 → 103.0), 1.33 req/s; s2 its 2 in 2 s (200.0 → 202.0), 1.0 req/s
    assert (payload["capacity"]["saturation_stage"], payload["capacity"]["saturation_rps"]) == (
        "s1",
        pytest.approx(4 / 3),
    )
    assert main(["analyze", str(run)]) == 0
    table = capsys.readouterr().out
    assert "goodput" in table and "max SLO-compliant throughput" in table and "binding limit" in table
    out = tmp_path / "summary.csv"
    assert main(["analyze", str(run), "--format", "csv", "--by", "class", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["request_class"] for r in rows] == ["batch", "chat"]
    assert float(rows[1]["ttft_p50_s"]) == pytest.approx(0.2)
    assert rows[1]["errors_rate_limited"] == "1"


def test_analyze_bad_run_dir_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run directory" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("[1, 2")
    assert main(["analyze", str(tmp_path / "bad")]) == 2


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_percentiles_match_numpys_linear_method(n: int) -> None:
    from analysis import percentiles

    x = np.random.default_rng(n).gamma(2.0, 0.01, n)
    x_with_nan = np.concatenate((x, [np.nan]))
    got = percentiles(x_with_nan)
    assert [got["p50"], got["p90"], got["p95"], got["p99"]] == pytest.approx(
        np.percentile(x, [50, 90, 95, 99])
    )
    assert got["max"] == x.max() and got["mean"] == pytest.approx(x.mean())
    assert percentiles(np.array([np.nan]))["p50"] is None


def test_analyze_predicts_latency_at_untested_rates(tmp_path: Path) -> None:
    # 8 then 24 requests of 5 s each: 1.6 and 4.8 req/s, two points (in flight 8 and 24) for the TPOT fit
    rows = stage_rows("s0", 8, 5.0, 0.2, out_tokens=100) + stage_rows(
        "s1", 24, 5.0, 1.0, out_tokens=100, t0=100.0
    )
    manifest = manifest_dict(stage_labels=(), stages=[{"label": "s0"}, {"label": "s1"}])
    run = str(write_rows_run(tmp_path / "run", rows, manifest, prompt_tokens=10, worker="w"))
    table = run_cli("analyze", run, "--predict", "3,100")
    assert table.returncode == 0, table.stderr
    assert "within the measured range" in table.stdout and "EXTRAPOLATED" in table.stdout
    out = orjson.loads(run_cli("analyze", run, "--format", "json", "--predict", "3").stdout)
    (prediction,) = out["predictions"]
    assert prediction["rate_rps"] == 3 and not prediction["extrapolated"] and prediction["e2e_s"] > 0
    bad = run_cli("analyze", run, "--predict", "-3")
    refused(bad, 2, "--predict")
