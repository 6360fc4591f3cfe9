"""The recorder's disk form of records: chunk gaps in ``chunk_gaps.f32``, offsets on the line; read back with
``read_records``."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadtest.client.records import GAPS_FILE, RequestRecord, dump_record, read_records
from loadtest.engine.conduct import Recorder
from loadtest.engine.sweep import StageObservation
from tests.helpers import BASE as ANALYSIS_BASE

BASE = replace(
    ANALYSIS_BASE, output_tokens=4, client_output_tokens=4, max_tokens=4, chunk_gaps=(0.1, 0.02, 0.003)
)
FAILED = replace(BASE, seq=1, error_class="rate_limited", status=429, first_token_at=None, chunk_gaps=None)


def batches() -> list[list[RequestRecord]]:
    return [
        [BASE, FAILED],
        [replace(BASE, seq=2, chunk_gaps=(1 / 3,) * 5), replace(BASE, seq=3, chunk_gaps=None)],  # unstreamed
        [replace(BASE, seq=4, chunk_gaps=(7.999999, 1e-6))],
    ]


def record(run_dir: Path, groups: list[list[RequestRecord]]) -> Recorder:
    rec = Recorder(run_dir, "test")
    for group in groups:
        rec.write(b"".join(dump_record(r) for r in group))  # a worker's forwarded batch
    rec.close()
    return rec


def test_gaps_go_to_the_side_file_and_the_line_points_at_them(tmp_path: Path) -> None:
    rec = record(tmp_path, batches())
    assert (rec.records, rec.errors) == (5, 1)
    lines = [orjson.loads(line) for line in (tmp_path / "records.jsonl").read_bytes().splitlines()]
    assert [line["seq"] for line in lines] == [0, 1, 2, 3, 4]
    assert all("chunk_gaps" not in line for line in lines)
    assert [(line["gap_offset"], line["gap_count"]) for line in lines] == [
        (0, 3),
        (None, None),
        (3, 5),
        (None, None),
        (8, 2),
    ]
    side = np.fromfile(tmp_path / GAPS_FILE, dtype="<f4")
    expected = [0.1, 0.02, 0.003] + [1 / 3] * 5 + [7.999999, 1e-6]
    assert side.tolist() == np.array(expected, dtype=np.float32).tolist()


def test_read_records_joins_the_gaps_back_within_float32_precision(tmp_path: Path) -> None:
    sent = [r for group in batches() for r in group]
    record(tmp_path, batches())
    got = list(read_records(tmp_path))
    assert [replace(r, chunk_gaps=None) for r in got] == [replace(r, chunk_gaps=None) for r in sent]
    for r, s in zip(got, sent, strict=True):
        if s.chunk_gaps is None:
            assert r.chunk_gaps is None
        else:
            assert r.chunk_gaps == pytest.approx(s.chunk_gaps, rel=1e-7)
            assert r.chunk_gaps is not None and all(type(g) is float for g in r.chunk_gaps)
    assert got[4].chunk_gaps is not None and abs(got[4].chunk_gaps[0] - 7.999999) < 1e-6  # < 1 µs below 8 s


def test_read_records_tolerates_a_crash(tmp_path: Path) -> None:
    record(tmp_path, batches())
    with (tmp_path / GAPS_FILE).open("ab") as side:
        side.write(
            struct.pack("<2f", 0.5, 0.5)
        )  # orphan gaps: written, then the process died before the line
    with (tmp_path / "records.jsonl").open("ab") as fh:
        fh.write(b'{"run_id":"r1","stage":"s1","gap_off')
    assert [r.seq for r in read_records(tmp_path)] == [0, 1, 2, 3, 4]


def test_read_records_gives_no_gaps_for_a_line_pointing_past_the_side_file(tmp_path: Path) -> None:
    record(tmp_path, batches())
    size = (tmp_path / GAPS_FILE).stat().st_size
    with (tmp_path / GAPS_FILE).open("r+b") as side:
        side.truncate(size - 4)  # the last record's second gap is gone
    got = list(read_records(tmp_path))
    assert got[4].chunk_gaps is None and got[2].chunk_gaps is not None


def test_read_records_reads_format_1_inline_gaps(tmp_path: Path) -> None:
    (tmp_path / "records.jsonl").write_bytes(dump_record(BASE) + dump_record(FAILED))
    assert list(read_records(tmp_path)) == [BASE, FAILED]


def test_the_recorder_still_feeds_the_stage_observation(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "test")
    rec.stage_label = "s1"
    rec.observation = StageObservation([], [], [], [])
    rec.write(dump_record(BASE) + dump_record(FAILED) + dump_record(replace(BASE, seq=9, stage="s0")))
    rec.close()
    assert rec.observation.ok == 1 and rec.observation.classes == ["chat"]


def test_a_line_that_is_not_json_is_kept_as_it_came(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "test")
    rec.write(b"{not json\n" + dump_record(BASE))
    rec.close()
    assert (tmp_path / "records.jsonl").read_bytes().splitlines()[0] == b"{not json"
    assert rec.records == 2
