"""The out-of-core analysis (``analysis.scan``) against the whole-frame one, its columnar copy of the records
(``analysis.columnar``) and the exact selection it uses for groups too big to hold (``analysis.selection``)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import analysis.columnar as columnar
import analysis.scan as scan
from analysis import capacity_from_run, class_slos, load_run, summarize_classes, summarize_stages
from analysis.scan import ScanResult, open_scan, summarize_scan
from analysis.selection import ExactPercentiles
from analysis.summary import PERCENTILES, StageSummary, percentiles
from loadtest.client.records import RECORDS_FILE, RequestRecord
from loadtest.engine.conduct import Recorder
from loadtest.rundir import RECORDS_CACHE
from tests.helpers import BASE, jsonl, manifest_dict

LIMITED = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit"
SLOS = {"chat": {"ttft_p95": 0.3, "itl_p50": 0.02}, "rag": {"e2e_p95": 2.0}, "batch": {}}


def synthetic(n: int, stages: int = 3, seed: int = 3) -> list[RequestRecord]:
    """``n`` records over ``stages`` stages one after the other and three classes (batch unstreamed), with 429s,
    other errors (some with gaps), records without usage and gaps of several lengths."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        stage = i * stages // n
        start = 1000.0 * stage + rng.uniform(0, 100)
        cls = ("chat", "rag", "batch")[int(rng.integers(0, 3))]
        ttft = float(rng.gamma(4.0, 0.05 * (stage + 1)))
        gaps = (
            tuple(float(g) for g in rng.gamma(8.0, 0.003, int(rng.integers(1, 9))))
            if cls != "batch"
            else None
        )
        rec = replace(
            BASE,
            seq=i,
            stage=f"s{stage}",
            request_class=cls,
            scheduled_at=start - float(rng.uniform(0, 0.01)),
            started_at=start,
            first_token_at=start + ttft,
            last_token_at=start + ttft + 0.5,
            ended_at=start + ttft + 0.5 + float(rng.uniform(0, 1)),
            prompt_tokens=int(rng.integers(10, 500)),
            output_tokens=int(rng.integers(1, 40)),
            client_output_tokens=int(rng.integers(1, 40)),
            chunk_gaps=gaps,
        )
        u = rng.uniform()
        if u < 0.05:
            rec = replace(rec, error_class="rate_limited", status=429, error_detail=LIMITED, retry_after_s=1.0 + u,
                          first_token_at=None, output_tokens=None, chunk_gaps=None)  # fmt: skip
        elif u < 0.07:
            rec = replace(rec, error_class="stream_cut", error_detail="cut")  # keeps its gaps
        elif u < 0.08:
            rec = replace(rec, token_source="client", output_tokens=None)
        out.append(rec)
    return out


def write(run: Path, recs: list[RequestRecord], stages: int = 3, inline: bool = False) -> Path:
    """A run directory of ``recs``: the recorder's format 2 (gaps in the side file), or inline gaps (format 1)."""
    run.mkdir(parents=True)
    labels = [f"s{i}" for i in range(stages)]
    manifest = manifest_dict(
        classes=SLOS,
        stage_labels=labels,
        stages=[{"label": s, "target": {"kind": "concurrency", "users": 2**i}} for i, s in enumerate(labels)],
    )
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    if inline:
        (run / RECORDS_FILE).write_bytes(jsonl(recs))
        return run
    recorder = Recorder(run, "test")
    for start in range(0, len(recs), 97):
        recorder.write(jsonl(recs[start : start + 97]))
    recorder.close()
    return run


def whole_frame(run: Path) -> dict[str, Any]:
    """What the whole-frame analysis gives (``load_run`` and the summaries on its frame)."""
    data = load_run(run)
    order, slos = data.manifest.stage_order, class_slos(data.manifest.spec.request_classes)
    return {
        "stages": tuple(summarize_stages(data.records, order, slos=slos)),
        "classes": tuple(summarize_classes(data.records, slos=slos, order=order)),
        "classes_by_stage": tuple(summarize_classes(data.records, slos=slos, by_stage=True, order=order)),
        "capacity": capacity_from_run(data),
        "skipped": data.skipped_lines,
        "requests": len(data.records),
    }


def scanned(run: Path) -> dict[str, Any]:
    found = open_scan(run)
    result = summarize_scan(
        found, class_slos(found.manifest.spec.request_classes), found.manifest.stage_order
    )
    return {
        "stages": result.stages,
        "classes": result.classes,
        "classes_by_stage": result.classes_by_stage,
        "capacity": result.capacity,
        "skipped": found.skipped_lines,
        "requests": found.requests,
    }


def test_the_scan_gives_exactly_what_the_whole_frame_gives(tmp_path: Path) -> None:
    run = write(tmp_path / "run", synthetic(3000))
    expected = whole_frame(run)
    assert expected["stages"][0].itl["p50"] is not None and expected["classes"][0].rate_limits
    assert scanned(run) == expected  # every field of every summary, capacity and its points: equal, not close


def same_but_means(
    got: tuple[StageSummary, ...], expected: tuple[StageSummary, ...], exact_means: bool
) -> None:
    """Equal summaries, but the means of the ITL (and of every latency unless ``exact_means``) only to rounding."""
    assert len(got) == len(expected)
    for new, old in zip(got, expected, strict=True):
        fields = ("ttft", "tpot", "itl", "e2e", "lag")
        blank: dict[str, float | None] = {}
        assert replace(new, ttft=blank, tpot=blank, itl=blank, e2e=blank, lag=blank) == replace(
            old, ttft=blank, tpot=blank, itl=blank, e2e=blank, lag=blank
        )
        for f in fields:
            a, b = getattr(new, f), getattr(old, f)
            assert {k: v for k, v in a.items() if k != "mean"} == {k: v for k, v in b.items() if k != "mean"}
            if (exact_means and f != "itl") or b["mean"] is None:
                assert a["mean"] == b["mean"]
            else:
                assert a["mean"] == pytest.approx(b["mean"], rel=1e-12)


def test_gaps_too_many_to_hold_give_the_same_percentiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write(tmp_path / "run", synthetic(3000))
    expected = whole_frame(run)
    monkeypatch.setattr(scan, "IN_MEMORY_GAPS", 100)  # every stage and class through the two-pass selection
    monkeypatch.setattr(scan, "_PASS_GAPS", 50)  # the second pass in many pieces
    got = scanned(run)
    same_but_means(got["stages"], expected["stages"], exact_means=True)
    same_but_means(got["classes"], expected["classes"], exact_means=True)
    assert got["classes_by_stage"] == expected["classes_by_stage"] and got["capacity"] == expected["capacity"]


def test_interleaved_stages_keep_their_percentiles(tmp_path: Path) -> None:
    recs = synthetic(2000)
    order = np.random.default_rng(0).permutation(len(recs))  # the stages' records mixed through the file
    run = write(tmp_path / "run", [recs[i] for i in order])
    found = open_scan(run)
    assert found.interleaved
    expected = whole_frame(run)
    got = scanned(run)
    assert got["stages"] == expected["stages"] and got["capacity"] == expected["capacity"]
    same_but_means(got["classes"], expected["classes"], exact_means=False)


def test_inline_gaps_an_interrupted_run_and_records_without_a_stage(tmp_path: Path) -> None:
    recs = synthetic(600)
    lines = jsonl(recs[:300]) + b'{"run_id":"r1","request_class":"chat"}\n' + jsonl(recs[300:])
    run = write(tmp_path / "inline", [], inline=True)
    (run / RECORDS_FILE).write_bytes(lines + b'{"run_id":"r1","stage":"s2","chunk_ga')  # cut mid-write
    expected = whole_frame(run)
    assert expected["skipped"] == 2 and expected["requests"] == 600
    assert scanned(run) == expected
    side = write(tmp_path / "side", recs)
    with (side / RECORDS_FILE).open("ab") as fh:
        fh.write(b'{"run_id":"r1","stage":"s1","gap_offset":9')
    expected = whole_frame(side)
    assert expected["skipped"] == 1 and scanned(side) == expected


def test_the_columnar_copy_is_written_once_and_again_when_the_records_change(tmp_path: Path) -> None:
    recs = synthetic(400)
    run = write(tmp_path / "run", recs[:300])
    first = load_run(run)
    cache = run / RECORDS_CACHE
    stamp = cache.stat().st_mtime_ns
    again = load_run(run)
    assert cache.stat().st_mtime_ns == stamp  # read, not written again
    assert again.records.equals(first.records) and len(again.records) == 300
    recorder = Recorder(run, "test")  # the run goes on: more records, more gaps
    recorder.write(jsonl(recs[300:]))
    recorder.close()
    more = load_run(run)
    assert len(more.records) == 400 and cache.stat().st_mtime_ns != stamp
    cache.write_bytes(b"not parquet")  # a broken copy is written again, never an error
    os.utime(run / RECORDS_FILE)
    assert load_run(run).records.equals(more.records)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_a_run_directory_that_cannot_be_written_is_read_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write(tmp_path / "run", synthetic(500))
    expected = whole_frame(run)
    (run / RECORDS_CACHE).unlink()

    def refuse(records: Path, cache: Path) -> columnar.Cache:
        if cache.parent == run:
            raise PermissionError(13, "Permission denied", str(cache))
        return written(records, cache)

    written = columnar.write_cache
    monkeypatch.setattr(columnar, "write_cache", refuse)
    monkeypatch.setattr(scan, "write_cache", refuse)
    assert whole_frame(run) == expected
    assert scanned(run) == expected  # from a copy in a temporary directory
    assert not (run / RECORDS_CACHE).exists()


def test_a_run_without_records_scans_to_nothing(tmp_path: Path) -> None:
    run = write(tmp_path / "run", [], inline=True)
    found = open_scan(run)
    result = summarize_scan(found)
    assert found.requests == 0 and result == ScanResult((), (), (), result.capacity)
    assert result.capacity is not None and result.capacity.points == ()


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).gamma(8.0, 0.002, 20_001),
        np.full(1000, 0.01),
        np.array([3.0]),
        np.array([-1.5, 2.0, -0.25, np.nan, 7.0, 0.0]),
        np.random.default_rng(2).normal(0.0, 1.0, 5000),
        np.array([np.nan, np.nan]),
        np.array([]),
    ],
)
def test_the_two_pass_selection_is_the_in_memory_one(values: np.ndarray) -> None:
    values = values.astype("float32")
    exact = ExactPercentiles(PERCENTILES)
    pieces = np.array_split(values, 7)
    for piece in pieces:
        exact.count(piece)
    for piece in reversed(pieces):  # any order
        exact.refine(piece)
    got, expected = exact.result(), percentiles(values.copy(), in_place=True)
    assert {k: v for k, v in got.items() if k != "mean"} == {k: v for k, v in expected.items() if k != "mean"}
    if expected["mean"] is None:
        assert got["mean"] is None
    else:
        assert got["mean"] == pytest.approx(expected["mean"], rel=1e-12)
