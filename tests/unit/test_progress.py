"""The live progress of a run: the model over a run directory written by hand, with a fake clock; the line it
makes; and how the line is drawn on a terminal and in a log."""

from __future__ import annotations

import io
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from loadtest.client.clock import FakeClock
from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.client.records import RequestRecord, dump_record
from loadtest.engine.conduct import Recorder
from loadtest.errors import ConfigError
from loadtest.runner.live import INTERVAL_ENV, LiveLine, fit, watch
from loadtest.runner.progress import LineTail, ProgressSnapshot, RunMedian, RunProgress, describe
from loadtest.spec.runspec import RunSpec, Stage, SweepPlan
from tests.helpers import BASE

T0 = 1000.0
OTPM = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace output tokens per minute rate limit"


def spec(stages: tuple[Stage, ...] = (), sweep: SweepPlan | None = None) -> RunSpec:
    return RunSpec(
        run_id="r1",
        name="test",
        out_dir="runs/r1",
        endpoint=EndpointSpec(base_url="http://127.0.0.1:9/v1", model="m"),
        request_classes=(RequestClass(),),
        stages=stages,
        sweep=sweep,
    )


TWO = spec(
    (Stage(kind="concurrency", users=1, duration_s=8.0), Stage(kind="concurrency", users=4, duration_s=8.0))
)


def ok(stage: str, started: float, ttft: float, ended: float, tokens: int) -> RequestRecord:
    return replace(
        BASE,
        stage=stage,
        started_at=started,
        scheduled_at=started,
        first_token_at=started + ttft,
        ended_at=ended,
        output_tokens=tokens,
    )


def failed(stage: str, ended: float, error: str, detail: str | None = None) -> RequestRecord:
    status = 429 if error == "rate_limited" else None
    return replace(
        BASE,
        stage=stage,
        ended_at=ended,
        first_token_at=None,
        status=status,
        error_class=error,  # type: ignore[arg-type]
        error_detail=detail,
        output_tokens=None,
    )


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def event(run_dir: Path, kind: str, t: float, **fields: Any) -> None:
    append(run_dir / "events.jsonl", orjson.dumps({"event": kind, "t": t, "cpu_s": 0.0, **fields}) + b"\n")


def records(run_dir: Path, *recs: RequestRecord) -> None:
    append(run_dir / "records.jsonl", b"".join(dump_record(r) for r in recs))


# -- the tail ----------------------------------------------------------------------------------------------------


def test_the_tail_reads_complete_lines_once_and_waits_for_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    tail = LineTail(path)
    assert tail.read() == b""  # no file yet
    path.write_bytes(b'{"a":1}\n{"b":')
    assert tail.read() == b'{"a":1}\n'
    assert tail.read() == b""  # the half-written line is not read
    append(path, b"2}\n")
    assert tail.read() == b'{"b":2}\n'
    assert tail.offset == path.stat().st_size


# -- the model ---------------------------------------------------------------------------------------------------


def test_a_stage_s_counts_rates_and_exact_ttft_median(tmp_path: Path) -> None:
    clock = FakeClock(start=T0 - 2.0)
    progress = RunProgress(TWO, tmp_path, clock)
    clock.now = T0 - 1.0
    progress.poll()
    assert progress.snapshot() == ProgressSnapshot("starting", 0, 2, False, None, 1.0, None)
    event(tmp_path, "stage_start", T0, stage="concurrency@1", duration_s=8.0)
    records(
        tmp_path,
        ok("concurrency@1", T0, 0.25, T0 + 1.0, 10),
        ok("concurrency@1", T0 + 0.5, 0.5, T0 + 2.0, 20),
        ok("concurrency@1", T0 + 1.0, 0.125, T0 + 3.0, 30),
        failed("concurrency@1", T0 + 3.5, "rate_limited", OTPM),
        failed("concurrency@1", T0 + 4.0, "stream_cut", "cut"),
    )
    clock.now = T0 + 4.0
    progress.poll()
    # 3 successes ended in the 4 s since the stage began: 0.75 req/s, 60 tokens / 4 s; TTFTs 0.25, 0.5, 0.125
    assert progress.snapshot() == ProgressSnapshot(
        phase="running",
        index=1,
        planned_stages=2,
        may_stop_early=False,
        stage="concurrency@1",
        elapsed_s=4.0,
        planned_s=8.0,
        requests=5,
        errors=2,
        rate_limited=1,
        limit="OTPM",
        req_per_s=0.75,
        output_tok_per_s=15.0,
        ttft_p50_s=0.25,
    )
    clock.now = T0 + 7.0  # the window is the last 5 s, (T0 + 2, T0 + 7]: only the third success
    snap = progress.snapshot()
    assert (snap.req_per_s, snap.output_tok_per_s, snap.requests) == (0.2, 6.0, 5)
    # a line written half-way is not read until it is complete
    line = dump_record(ok("concurrency@1", T0 + 6.0, 0.375, T0 + 6.5, 40))
    append(tmp_path / "records.jsonl", line[:100])
    progress.poll()
    assert progress.snapshot().requests == 5
    append(tmp_path / "records.jsonl", line[100:])
    progress.poll()
    snap = progress.snapshot()
    assert (snap.requests, snap.req_per_s, snap.output_tok_per_s) == (6, 0.4, 14.0)
    assert snap.ttft_p50_s == (0.25 + 0.375) / 2  # even count: the mean of the two middle values
    assert progress.lines_read == 6


def test_no_rates_in_a_stage_s_first_second(tmp_path: Path) -> None:
    clock = FakeClock(start=T0)
    progress = RunProgress(TWO, tmp_path, clock)
    event(tmp_path, "stage_start", T0, stage="concurrency@1", duration_s=8.0)
    records(tmp_path, ok("concurrency@1", T0, 0.125, T0 + 0.5, 10))
    clock.now = T0 + 0.9
    progress.poll()
    snap = progress.snapshot()
    assert (snap.requests, snap.req_per_s, snap.output_tok_per_s, snap.ttft_p50_s) == (1, None, None, 0.125)


def test_phases_follow_the_events_and_a_new_stage_starts_from_zero(tmp_path: Path) -> None:
    clock = FakeClock(start=T0)
    progress = RunProgress(TWO, tmp_path, clock)
    event(tmp_path, "stage_start", T0, stage="concurrency@1", duration_s=8.0)
    records(tmp_path, ok("concurrency@1", T0, 0.25, T0 + 1.0, 10))
    event(tmp_path, "stage_window_end", T0 + 8.0, stage="concurrency@1")
    clock.now = T0 + 10.5
    progress.poll()
    snap = progress.snapshot()
    assert (snap.phase, snap.draining_s) == ("draining", 2.5)
    assert describe(snap)[0] == "stage 1/2 concurrency@1 8s/8s draining 2s"
    event(tmp_path, "stage_end", T0 + 9.0, stage="concurrency@1", records=1)
    progress.poll()
    assert progress.snapshot().phase == "done"
    # the engine wrote the next stage's first record before the poll saw its start event
    records(tmp_path, ok("concurrency@4", T0 + 9.0, 0.5, T0 + 9.75, 20))
    progress.poll()
    event(tmp_path, "stage_start", T0 + 9.0, stage="concurrency@4", duration_s=8.0)
    clock.now = T0 + 11.0
    progress.poll()
    snap = progress.snapshot()
    assert (snap.phase, snap.index, snap.stage, snap.elapsed_s) == ("running", 2, "concurrency@4", 2.0)
    assert (snap.requests, snap.req_per_s, snap.ttft_p50_s) == (1, 0.5, 0.5)


def test_a_sweep_shows_an_upper_bound_until_it_stops(tmp_path: Path) -> None:
    clock = FakeClock(start=T0)
    sweep = spec(sweep=SweepPlan(points=3, duration_s=10.0, max_concurrency=64))
    progress = RunProgress(sweep, tmp_path, clock)
    event(tmp_path, "stage_start", T0, stage="concurrency@1", duration_s=10.0)
    progress.poll()
    snap = progress.snapshot()
    assert (snap.index, snap.planned_stages, snap.may_stop_early, snap.planned_s) == (1, 5, True, 10.0)
    assert describe(snap)[0] == "stage 1/≤5 concurrency@1 0s/10s"
    event(tmp_path, "stage_end", T0 + 10.0, stage="concurrency@1")
    event(tmp_path, "stage_start", T0 + 10.0, stage="concurrency@64", duration_s=10.0)
    event(tmp_path, "stage_end", T0 + 20.0, stage="concurrency@64")
    event(tmp_path, "sweep_stopped", T0 + 20.0, reason="no headroom")
    progress.poll()
    snap = progress.snapshot()
    assert (snap.index, snap.planned_stages, snap.may_stop_early) == (2, 2, False)


def test_the_model_reads_what_the_recorder_writes(tmp_path: Path) -> None:
    """The disk form (gaps moved to the side file) from the engine's own recorder."""
    rec = Recorder(tmp_path, "w")
    rec.write(dump_record(replace(ok("s1", T0, 0.25, T0 + 1.0, 11), chunk_gaps=(0.1, 0.2))))
    rec.write(dump_record(failed("s1", T0 + 1.5, "rate_limited", '{"limit_type": "queries_per_second"}')))
    rec.close()
    event(tmp_path, "stage_start", T0, stage="s1", duration_s=4.0)
    one = spec((Stage(kind="concurrency", users=1, duration_s=4.0, name="s1"),))
    progress = RunProgress(one, tmp_path, FakeClock(T0 + 2.0))
    progress.poll()
    snap = progress.snapshot()
    assert (snap.requests, snap.errors, snap.rate_limited, snap.limit) == (2, 1, 1, "QPS")
    assert snap.req_per_s == 0.5


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_the_running_median_is_numpy_s(n: int) -> None:
    rng = random.Random(n)
    values = [rng.lognormvariate(-2, 1) for _ in range(n)] + [0.5] * (n // 3)  # ties too
    rng.shuffle(values)
    median = RunMedian()
    for v in values:
        median.add(v)
    assert len(median) == len(values)
    assert median.median() == float(np.median(values))
    assert RunMedian().median() is None


# -- the line ----------------------------------------------------------------------------------------------------


def test_the_line_s_parts() -> None:
    snap = ProgressSnapshot(
        "running", 2, 3, False, "concurrency@4", 65.4, 120.0, 1234, 15, 12, "OTPM", 3.456, 1234.5, 0.0221
    )
    assert describe(snap) == [
        "stage 2/3 concurrency@4 1m05s/2m00s",
        "1,234 req, 15 errors, 12 429s (OTPM)",
        "3.46 req/s",
        "1,234 out tok/s",
        "TTFT p50 22.1 ms",
    ]
    draining = replace(snap, phase="draining", requests=0, errors=0, rate_limited=0, limit=None)
    assert describe(replace(draining, req_per_s=None, ttft_p50_s=None, draining_s=12.0))[:2] == [
        "stage 2/3 concurrency@4 2m00s/2m00s draining 12s",
        "0 req, 0 errors, 0 429s",
    ]
    assert describe(replace(draining, req_per_s=None))[2] == "– req/s"
    starting = ProgressSnapshot("starting", 0, None, False, None, 2.5, None)
    assert describe(starting) == ["stage 0/? starting the load engine (2s)"]


def test_fit_drops_whole_parts_from_the_end() -> None:
    parts = ["stage 1/1 s 1s/8s", "3 req", "2.00 req/s"]
    assert fit(parts, None) == "  stage 1/1 s 1s/8s · 3 req · 2.00 req/s"
    assert fit(parts, 30) == "  stage 1/1 s 1s/8s · 3 req"
    assert fit(parts, 10) == "  stage 1/"


def test_on_a_terminal_the_line_is_rewritten_in_place_once_a_second() -> None:
    out, clock = io.StringIO(), FakeClock(start=0.0)
    live = LiveLine(out, tty=True, interval_s=1.0, clock=clock, width=lambda: 40)
    live.begin()
    assert live.due()
    live.show(["stage 1/2 s 0s/8s", "0 req"])
    clock.advance(0.5)
    assert not live.due()
    clock.advance(0.5)
    assert live.due()
    live.show(["stage 1/2 s 1s/8s", "12 req", "a part too long for 40 columns"])
    echoed: list[str] = []
    live.echo_through(echoed.append)("  s: 12 requests")
    assert echoed == ["  s: 12 requests"]
    assert live.due()  # wiped by the echo: drawn again on the next tick
    live.clear()  # nothing on screen: nothing written
    drawn = ["\r  stage 1/2 s 0s/8s · 0 req", "\r  stage 1/2 s 1s/8s · 12 req", "\r" + " " * 28 + "\r"]
    assert out.getvalue() == "".join(drawn)


def test_in_a_log_a_full_line_every_interval() -> None:
    out, clock = io.StringIO(), FakeClock(start=0.0)
    live = LiveLine(out, tty=False, interval_s=10.0, clock=clock, width=lambda: 20)
    live.begin()
    assert not live.due()  # not a line at the start of a log: the first after one interval
    clock.advance(10.0)
    assert live.due()
    live.show(["stage 1/2 s 10s/30s", "40 req", "4.00 req/s"])
    live.echo_through(lambda line: print(line, file=out))("  s: 90 requests")
    assert not live.due()
    assert out.getvalue() == "  stage 1/2 s 10s/30s · 40 req · 4.00 req/s\n  s: 90 requests\n"


def test_a_closed_stream_does_not_stop_the_run() -> None:
    out = io.StringIO()
    live = LiveLine(out, tty=True, interval_s=1.0, clock=FakeClock())
    out.close()
    live.show(["x"])  # no exception
    assert not live.due()


def test_the_log_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert LiveLine.for_stderr({}).interval_s == 10.0
    assert LiveLine.for_stderr({INTERVAL_ENV: "500ms"}).interval_s == 0.5
    with pytest.raises(ConfigError, match=INTERVAL_ENV):
        LiveLine.for_stderr({INTERVAL_ENV: "soon"})


def test_watch_reads_on_every_tick_and_draws_when_due(tmp_path: Path) -> None:
    out, clock = io.StringIO(), FakeClock(start=T0)
    live = LiveLine(out, tty=False, interval_s=1.0, clock=clock)
    tick = watch(live, TWO, tmp_path, clock)
    event(tmp_path, "stage_start", T0, stage="concurrency@1", duration_s=8.0)
    tick()
    assert out.getvalue() == ""
    records(
        tmp_path, ok("concurrency@1", T0, 0.25, T0 + 1.0, 10), ok("concurrency@1", T0 + 1, 0.25, T0 + 2, 10)
    )
    clock.now = T0 + 2.0
    tick()
    assert out.getvalue() == (
        "  stage 1/2 concurrency@1 2s/8s · 2 req, 0 errors, 0 429s · 1.00 req/s · 10.0 out tok/s · TTFT p50 250 ms\n"
    )
    event(tmp_path, "stage_window_end", T0 + 8.0, stage="concurrency@1")
    event(tmp_path, "stage_end", T0 + 8.5, stage="concurrency@1")
    clock.now = T0 + 9.0
    tick()  # a finished stage is not shown again
    assert out.getvalue().count("\n") == 1
