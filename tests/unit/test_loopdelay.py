"""The engine's event-loop delay (:mod:`loadtest.engine.loopdelay`) with fake clocks and fake sleeps: the histogram's
buckets and percentiles, the monitor, the fold over workers into ``stage_end``, and the burn test hook."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadtest.client.clock import FakeClock
from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.engine.conduct import Conductor, Recorder
from loadtest.engine.loopdelay import (
    BURN_ENV,
    DelayHistogram,
    LoopMonitor,
    _bucket,
    _upper_us,
    burn_forever,
    burn_seconds,
    worst_worker,
)
from loadtest.spec.runspec import RunSpec, Stage

NONE = {"loop_delay_p50_s": None, "loop_delay_p99_s": None, "loop_delay_max_s": None}


class Done(Exception):
    """Raised by a fake sleep or yield to end a loop that runs until killed."""


def test_buckets_are_exact_below_256_us_and_within_1_in_128_above() -> None:
    assert [_bucket(us) for us in (0, 1, 255)] == [0, 1, 255]
    assert [_upper_us(b) for b in (0, 1, 255)] == [0, 1, 255]
    assert (_bucket(256), _upper_us(_bucket(256))) == (256, 257)  # 256…257 share a bucket
    assert _upper_us(_bucket(1000)) == 1003  # 1000…1003
    assert _bucket((1 << 36) - 1) == 3839  # the last of the 3,840 buckets
    buckets = [_bucket(us) for us in range(70_000)]
    assert {b - a for a, b in itertools.pairwise(buckets)} == {0, 1}  # in order, none skipped
    for us in (*range(70_000), *range(70_000, 1 << 36, 9_973_331)):
        assert us <= _upper_us(_bucket(us)) <= us + us // 128


def test_percentiles_are_nearest_rank_exact_below_256_us() -> None:
    hist = DelayHistogram()
    for us in range(100, 0, -1):
        hist.add(us / 1e6)
    assert hist.count == 100
    assert hist.summary() == {
        "loop_delay_p50_s": 50e-6,
        "loop_delay_p99_s": 99e-6,
        "loop_delay_max_s": 100e-6,
    }
    assert hist.percentile(100) == 100e-6
    assert hist.percentile(0.001) == 1e-6  # rank 1 at least


def test_a_percentile_is_its_bucket_s_upper_bound_but_never_above_the_maximum() -> None:
    hist = DelayHistogram()
    for _ in range(99):
        hist.add(0.001)
    hist.add(0.05)
    assert hist.summary() == {
        "loop_delay_p50_s": 0.001003,  # 1,000 µs lies in 1,000…1,003: reported as 1,003, never below the truth
        "loop_delay_p99_s": 0.001003,
        "loop_delay_max_s": 0.05,
    }
    alone = DelayHistogram()
    alone.add(0.001)
    assert alone.percentile(99) == 0.001  # the bucket says 1,003 µs, the maximum 1,000 µs


def test_negative_lateness_counts_as_zero_and_memory_is_fixed() -> None:
    hist = DelayHistogram()
    assert hist.summary() == NONE
    buckets = len(hist._counts)
    hist.add(-0.002)
    assert hist.summary() == {"loop_delay_p50_s": 0.0, "loop_delay_p99_s": 0.0, "loop_delay_max_s": 0.0}
    for i in range(200_000):  # a long stage: more samples, the same buckets
        hist.add((i % 5000) / 1e6)
    hist.add(1e9)  # 31 years: counted as the last bucket's bound
    assert (buckets, len(hist._counts), hist.count) == (3840, 3840, 200_002)
    assert hist.max_us == (1 << 36) - 1


def test_the_monitor_records_how_late_each_sleep_woke() -> None:
    clock = FakeClock(start=100.0)
    late = iter([0.0001, 0.0002, 0.0, 0.05])

    def sleep(seconds: float) -> None:
        try:
            clock.now += seconds + next(late)
        except StopIteration:
            raise Done from None

    monitor = LoopMonitor(clock, sleep, interval=0.01)
    with pytest.raises(Done):
        monitor.run_forever()
    assert monitor.histogram.count == 4
    assert monitor.histogram.summary() == {
        "loop_delay_p50_s": 0.0001,
        "loop_delay_p99_s": 0.05,
        "loop_delay_max_s": 0.05,
    }


def test_the_worst_worker_gives_the_stage_s_loop_delay() -> None:
    reports: list[dict[str, Any]] = [
        {"loop_delay_p50_s": 0.001, "loop_delay_p99_s": 0.002, "loop_delay_max_s": 0.010},
        {"loop_delay_p50_s": 0.003, "loop_delay_p99_s": 0.030, "loop_delay_max_s": 0.031},
        {"loop_delay_p50_s": 0.0005, "loop_delay_p99_s": 0.001, "loop_delay_max_s": 0.050},
        {**NONE},  # a worker whose stage was too short for one sample
        {"worker": "an older worker: no loop delay at all"},
    ]
    assert worst_worker(reports) == {
        "loop_delay_p50_s": 0.003,  # the worst worker's (largest p99) …
        "loop_delay_p99_s": 0.030,
        "loop_delay_max_s": 0.050,  # … and the largest maximum of all
    }
    assert worst_worker(reports[3:]) == NONE
    assert worst_worker([]) == NONE


def test_the_stage_end_event_carries_the_worst_worker_s_loop_delay(tmp_path: Path) -> None:
    spec = RunSpec(
        run_id="r1",
        name="test",
        out_dir=str(tmp_path),
        endpoint=EndpointSpec(base_url="http://127.0.0.1:9/v1", model="m"),
        request_classes=(RequestClass(name="chat"),),
        stages=(Stage(kind="concurrency", users=2, duration_s=1.0),),
    )

    class NoWait:
        def is_set(self) -> bool:
            return False

        def wait(self, timeout: float | None = None) -> bool:
            return False

    class TwoWorkers(Conductor):
        def open(self, stage: Stage, index: int) -> None:
            pass

        def deal(self, seq: int, due: float, n: int) -> None:
            pass

        def close(self) -> list[dict[str, Any]]:
            common = {"dropped": 0, "no_free_user": 0, "inflight": 0, "drained": True}
            return [
                {**common, "cpu_share": 0.5, "loop_delay_p50_s": 0.001, "loop_delay_p99_s": 0.004,
                 "loop_delay_max_s": 0.090},
                {**common, "cpu_share": 0.97, "loop_delay_p50_s": 0.008, "loop_delay_p99_s": 0.041,
                 "loop_delay_max_s": 0.060},
            ]  # fmt: skip

    recorder = Recorder(tmp_path, "master")
    TwoWorkers(spec, recorder, NoWait()).run_stage(spec.stages[0], 0)
    recorder.close()
    (end,) = [e for e in map(orjson.loads, (tmp_path / "events.jsonl").read_bytes().splitlines())
              if e["event"] == "stage_end"]  # fmt: skip
    assert {k: end[k] for k in ("worker_cpu_share_max", *NONE, "workers")} == {
        "worker_cpu_share_max": 0.97,
        "loop_delay_p50_s": 0.008,
        "loop_delay_p99_s": 0.041,
        "loop_delay_max_s": 0.090,
        "workers": 2,
    }


def test_the_burn_hook_reads_milliseconds_and_refuses_anything_else() -> None:
    assert burn_seconds({}) is None
    assert burn_seconds({BURN_ENV: " "}) is None
    assert burn_seconds({BURN_ENV: "50"}) == 0.05
    assert burn_seconds({BURN_ENV: "2.5"}) == 0.0025
    for bad in ("0", "-5", "fifty", "nan", "inf"):
        with pytest.raises(
            ValueError, match=f"^{BURN_ENV} must be a number of milliseconds > 0, not '{bad}'$"
        ):
            burn_seconds({BURN_ENV: bad})


def test_the_burner_holds_the_clock_for_its_burn_between_yields() -> None:
    clock = FakeClock(start=0.0, step=0.001)  # every read moves 1 ms: the busy loop's own time
    yielded_at: list[float] = []

    def yield_() -> None:
        yielded_at.append(clock.now)
        if len(yielded_at) == 3:
            raise Done

    with pytest.raises(Done):
        burn_forever(0.005, clock, yield_)
    # each burn reads the clock once for its end, then until it is reached: 5 ms without a yield, three times
    assert yielded_at == pytest.approx([0.006, 0.012, 0.018])
