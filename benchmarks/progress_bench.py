"""What does the live progress line cost the CLI process? (run by hand; results go in docs/performance.md)

    python benchmarks/progress_bench.py [--lines 200000] [--per-poll 1000] [--repeat 5]

Writes ``--lines`` records through the engine's own :class:`~loadtest.engine.conduct.Recorder` (the disk form the
progress reads: 64 chunk gaps moved to the side file, about 3 % errors, half of them 429s naming a quota), then
replays the run as the CLI sees it: the file grows by ``--per-poll`` lines between polls (1,000 lines per 0.2 s
poll is 5,000 req/s), and after every poll the line's snapshot is taken (the CLI takes one per second). Reports the
CPU time (``time.process_time``) per 10,000 lines, best and median of ``--repeat`` replays.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.client.clock import FakeClock  # noqa: E402
from loadtest.client.protocol import EndpointSpec, RequestClass  # noqa: E402
from loadtest.client.records import RECORDS_FILE, RequestRecord, dump_record  # noqa: E402
from loadtest.engine.conduct import Recorder  # noqa: E402
from loadtest.rundir import EVENTS_FILE  # noqa: E402
from loadtest.runner.progress import RunProgress, describe  # noqa: E402
from loadtest.spec.runspec import RunSpec, Stage  # noqa: E402

T0 = 1.7e9
LABEL = "concurrency@64"
LIMITED = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace output tokens per minute rate limit"
BASE = RequestRecord(
    run_id="bench",
    stage=LABEL,
    request_class="chat",
    endpoint="http://127.0.0.1:8000/v1/chat/completions",
    worker="local-1",
    seq=0,
    scheduled_at=T0,
    started_at=T0,
    first_token_at=T0,
    last_token_at=T0,
    ended_at=T0,
    status=200,
    error_class=None,
    error_detail=None,
    retry_after_s=None,
    prompt_tokens=512,
    output_tokens=128,
    token_source="usage",
    client_output_tokens=128,
    max_tokens=128,
    finish_reason="length",
    chunk_gaps=None,
    server_request_id="req-000000",
)


def write_run(run_dir: Path, lines: int, rate: float) -> None:
    """``lines`` records over ``lines / rate`` seconds, through the recorder."""
    rng = random.Random(3)
    rec = Recorder(run_dir, "bench")
    for seq in range(lines):
        end = T0 + seq / rate
        ttft = rng.gammavariate(4.0, 0.05)
        r = replace(
            BASE,
            seq=seq,
            scheduled_at=end - 1.5,
            started_at=end - 1.5,
            first_token_at=end - 1.5 + ttft,
            last_token_at=end - 0.001,
            ended_at=end,
            chunk_gaps=tuple(rng.uniform(0.005, 0.02) for _ in range(64)),
            server_request_id=f"req-{seq:06d}",
        )
        roll = rng.random()
        if roll < 0.015:
            r = replace(r, status=429, error_class="rate_limited", error_detail=LIMITED, first_token_at=None,
                        output_tokens=None, chunk_gaps=None)  # fmt: skip
        elif roll < 0.03:
            r = replace(r, error_class="stream_cut", error_detail="the stream ended early")
        rec.write(dump_record(r))
    rec.close()


def replay(source: bytes, per_poll: int, rate: float, spec: RunSpec) -> tuple[float, int]:
    """CPU seconds to poll (and snapshot) the whole of ``source`` as it grows by ``per_poll`` lines."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        start = b'{"event":"stage_start","t":%r,"stage":"%s","duration_s":3600.0}\n' % (T0, LABEL.encode())
        (run_dir / EVENTS_FILE).write_bytes(start)
        clock = FakeClock(start=T0)
        progress = RunProgress(spec, run_dir, clock)
        out = (run_dir / RECORDS_FILE).open("ab")
        pos, cpu = 0, 0.0
        while pos < len(source):
            end = pos
            for _ in range(per_poll):
                nxt = source.find(b"\n", end) + 1
                if nxt == 0:
                    end = len(source)
                    break
                end = nxt
            out.write(source[pos:end])
            out.flush()
            pos = end
            clock.advance(per_poll / rate)
            t = time.process_time()
            progress.poll()
            describe(progress.snapshot())
            cpu += time.process_time() - t
        out.close()
        return cpu, progress.lines_read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--per-poll", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rate = args.per_poll / 0.2
    spec = RunSpec(
        run_id="bench",
        name="bench",
        out_dir="",
        endpoint=EndpointSpec(base_url="http://127.0.0.1:8000/v1", model="m"),
        request_classes=(RequestClass(),),
        stages=(Stage(kind="concurrency", users=64, duration_s=3600.0),),
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp), args.lines, rate)
        source = (Path(tmp) / RECORDS_FILE).read_bytes()
    per_line = len(source) / args.lines
    print(
        f"{args.lines:,} lines, {per_line:.0f} bytes each; {args.per_poll:,} lines per poll ({rate:,.0f} req/s)"
    )
    costs = []
    for _ in range(args.repeat):
        cpu, read = replay(source, args.per_poll, rate, spec)
        assert read == args.lines, (read, args.lines)
        costs.append(cpu / args.lines * 10_000 * 1000)
    print(
        f"CPU per 10,000 lines: best {min(costs):.1f} ms, median {statistics.median(costs):.1f} ms "
        f"({min(costs) / 10:.2f} µs per line); at {rate:,.0f} req/s that is "
        f"{min(costs) / 1000 * rate / 10_000:.1%} of a core"
    )


if __name__ == "__main__":
    main()
