"""``loadtest export``: the records as Parquet (gaps kept, read back equal) and CSV (gaps summarised, exact values),
written where a user expects, never over a file without ``--force``; bad input is one line and a non-zero exit."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from loadtest.cli.group import main
from loadtest.client.records import RECORD_FIELDS, RequestRecord, dump_record, read_records
from loadtest.engine.conduct import Recorder
from reports.export import DERIVED_COLUMNS, ITL_COLUMNS
from tests.helpers import BASE, jsonl, manifest_dict, records, refused, run_cli, write_run

OK = replace(
    BASE,
    seq=0,
    scheduled_at=99.5,
    started_at=100.0,
    first_token_at=100.25,
    last_token_at=101.5,
    ended_at=101.75,
    output_tokens=5,
    client_output_tokens=4,
    max_tokens=5,
    chunk_gaps=(0.25, 0.5, 0.75),
    server_request_id="req-1",
)
LIMITED = replace(
    BASE,
    seq=1,
    request_class="batch",
    first_token_at=None,
    last_token_at=None,
    ended_at=100.5,
    status=429,
    error_class="rate_limited",
    error_detail='HTTP 429: slow down, "please"',
    retry_after_s=2.0,
    prompt_tokens=None,
    output_tokens=None,
    token_source=None,
    client_output_tokens=None,
    finish_reason=None,
    chunk_gaps=None,
)


def export(*args: str) -> int:
    return main(["export", *args])


def recorded_run(tmp_path: Path, recs: list[RequestRecord]) -> Path:
    """A format-2 run directory written by the recorder: the gaps in chunk_gaps.f32."""
    run = write_run(tmp_path, b"")
    rec = Recorder(run, "w0")
    rec.write(b"".join(dump_record(r) for r in recs))
    rec.close()
    return run


@pytest.mark.parametrize("layout", ["inline gaps (format 1)", "side file (format 2)"])
def test_parquet_reads_back_as_the_records_with_their_gaps(tmp_path: Path, layout: str) -> None:
    recs = records()
    run = write_run(tmp_path, jsonl(recs)) if layout.startswith("inline") else recorded_run(tmp_path, recs)
    assert export(str(run), "--format", "parquet") == 0
    table = pq.read_table(run / "records.parquet")
    names = [n for n in RECORD_FIELDS if n != "chunk_gaps"]
    assert table.column_names == [*names, *DERIVED_COLUMNS, *ITL_COLUMNS, "chunk_gaps"]
    assert table.schema.field("chunk_gaps").type == pa.list_(pa.float32())
    assert table.schema.metadata[b"loadtest.export"] == b"1"
    rows = table.to_pylist()
    assert len(rows) == len(recs)
    for row, rec in zip(rows, recs, strict=True):
        assert {n: row[n] for n in names} == {n: getattr(rec, n) for n in names}
        if rec.chunk_gaps is None:
            assert row["chunk_gaps"] is None and row["gap_count"] == 0 and row["itl_p50_s"] is None
        else:
            assert row["chunk_gaps"] == np.array(rec.chunk_gaps, dtype=np.float32).tolist()
            assert row["gap_count"] == len(rec.chunk_gaps)
            assert row["itl_max_s"] == pytest.approx(max(rec.chunk_gaps), rel=1e-7)
        assert row["ok"] is rec.ok
        assert row["e2e_s"] == pytest.approx(rec.ended_at - rec.started_at)
    # what read_records gives back from the run directory itself
    if layout.startswith("side"):
        assert [r["chunk_gaps"] for r in rows] == [
            list(r.chunk_gaps) if r.chunk_gaps is not None else None for r in read_records(run)
        ]


def test_csv_columns_and_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, jsonl([OK, LIMITED]))
    assert export(str(run), "--format", "csv") == 0
    assert capsys.readouterr().err == f"wrote 2 records to {run / 'records.csv'}\n"
    header, first, second, end = (run / "records.csv").read_text().split("\n")
    assert header.split(",") == [
        f'"{n}"' for n in (*(n for n in RECORD_FIELDS if n != "chunk_gaps"), *DERIVED_COLUMNS, *ITL_COLUMNS)
    ]
    assert first.split(",") == (
        '"r1","s1","chat","http://x/v1/chat/completions","w0",0,'
        "99.5,100,100.25,101.5,101.75,200,,,,20,5,"
        '"usage",4,5,"length","req-1",0,,,,,'  # no asked prompt length, no flow
        # ok, ttft, from intended, tpot = (1.75 − 0.25) / 4, e2e, lag
        "true,0.25,0.75,0.375,1.75,0.5,"
        # 3 gaps: mean, p50, p99 (0.5 + 0.98 × 0.25), max
        "3,0.5,0.5,0.745,0.75"
    ).split(",")
    assert second == (
        '"r1","s1","batch","http://x/v1/chat/completions","w0",1,'
        '100,100,,,100.5,429,"rate_limited","HTTP 429: slow down, ""please""",2,,,,,11,,,0,,,,,'
        "false,,,,0.5,0,"
        "0,,,,"
    )
    assert end == ""
    table = pa_csv.read_csv(io.BytesIO((run / "records.csv").read_bytes()))
    assert table.column("itl_p99_s").to_pylist() == [0.745, None]


def test_csv_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, jsonl([OK]))
    assert export(str(run), "--format", "csv", "-o", "-") == 0
    out, err = capsys.readouterr()
    assert out.startswith('"run_id","stage"') and out.count("\n") == 2 and err == ""
    assert not (run / "records.csv").exists()


def test_an_existing_file_is_replaced_only_with_force(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl([OK]))
    out = tmp_path / "mine.csv"
    out.write_text("keep me")
    proc = run_cli("export", str(run), "--format", "csv", "-o", str(out))
    refused(proc, 2, f"{out} exists (--force replaces it)")
    assert out.read_text() == "keep me"
    assert export(str(run), "--format", "csv", "-o", str(out), "--force") == 0
    assert out.read_text().startswith('"run_id"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv", "run"]  # no temporary file left


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--format", "parquet", "-o", "-"), 2, "parquet is binary: give a file to write it to (-o FILE)"),
        (("--format", "xlsx"), 2, "Invalid value for '--format'"),
        (("--format", "csv", "-o", "/no/such/dir/x.csv"), 2, "cannot write /no/such/dir/x.csv"),
    ],
)
def test_bad_options_are_one_line(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    run = write_run(tmp_path, jsonl([OK]))
    refused(run_cli("export", str(run), *args), code, message)


def test_a_missing_or_empty_run_is_one_line(tmp_path: Path) -> None:
    refused(run_cli("export", str(tmp_path / "nope"), "--format", "csv"), 2, "no run directory at")
    empty = write_run(tmp_path, b"")
    refused(run_cli("export", str(empty), "--format", "parquet"), 98, "has no records")
    assert not (empty / "records.parquet").exists()


def test_a_run_without_samples_or_gaps_still_exports(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_bytes(__import__("orjson").dumps(manifest_dict()))
    (run / "records.jsonl").write_bytes(dump_record(replace(OK, chunk_gaps=None)))
    assert export(str(run), "--format", "parquet") == 0
    (row,) = pq.read_table(run / "records.parquet").to_pylist()
    assert row["chunk_gaps"] is None and row["gap_count"] == 0 and row["itl_mean_s"] is None
