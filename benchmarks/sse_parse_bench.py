"""What does parsing one streamed response cost the engine? (run by hand; results go in docs/performance.md)

    taskset -c 1 python benchmarks/sse_parse_bench.py [--against REV] [--chunks 64] [--repeat 7]

Times :func:`loadtest.client.sse.consume_sse` over a vLLM-shaped stream of ``--chunks`` content chunks (a role
chunk, the content chunks, a finish chunk, a usage chunk, ``[DONE]``), best of ``--repeat`` × 1,000 parses, with
and without collecting the text (a sampled request collects it). Then what the engine does: the stream's bytes fed
to :class:`loadtest.client.sse.SseParser` as reads — one read per event (a paced server: a chunk per packet) and the
whole stream in one read (the ceiling benchmark's server writes it at once) — and the HTTP chunked framing removed
from the same reads first (:class:`loadtest.client.http1.BodyReader`, this tree only). With ``--against REV`` the
same stream goes through that git revision's ``loadtest/client/sse.py`` too, alternated with this tree's, so the
ratio is measured side by side in one process on one core.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'


def stream(chunks: int) -> list[bytes]:
    lines = [CHUNK + b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}']
    lines += [CHUNK + b'"delta":{"content":" tok%d"},"finish_reason":null}]}' % i for i in range(chunks)]
    lines.append(CHUNK + b'"delta":{},"finish_reason":"length"}]}')
    lines.append(
        b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}' % (chunks, chunks + 10)
    )
    lines.append(b"data: [DONE]")
    return lines


def module_at(rev: str, where: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:loadtest/client/sse.py"], check=True, capture_output=True
    ).stdout
    path = where / "sse_at_rev.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("sse_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sse_at_rev"] = module
    spec.loader.exec_module(module)
    return module


def best_us(module: ModuleType, lines: list[bytes], repeat: int, collect: bool) -> float:
    def parse() -> None:
        module.consume_sse(iter(lines), time.perf_counter, content=[] if collect else None)

    return min(timeit.repeat(parse, number=1000, repeat=repeat)) * 1000.0  # µs per parse


def best_feed_us(module: ModuleType, reads: list[bytes], repeat: int) -> float:
    def parse() -> None:
        feed = module.SseParser(time.perf_counter).feed
        for read in reads:
            if feed(read):
                break

    return min(timeit.repeat(parse, number=1000, repeat=repeat)) * 1000.0  # µs per parse


def best_framing_us(reads: list[bytes], repeat: int) -> float:
    from loadtest.client.http1 import BodyReader

    def deframe() -> None:
        feed = BodyReader(BodyReader.CHUNKED).feed
        for read in reads:
            feed(read)

    return min(timeit.repeat(deframe, number=1000, repeat=repeat)) * 1000.0  # µs per stream


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", metavar="REV", help="also time this git revision's parser")
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    import loadtest.client.sse as current

    lines = stream(args.chunks)
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("this tree", current)]
        if args.against:
            trees.append((args.against, module_at(args.against, Path(tmp))))
        for round_ in range(2):  # alternated, twice
            for name, module in trees:
                plain = best_us(module, lines, args.repeat, collect=False)
                text = best_us(module, lines, args.repeat, collect=True)
                print(
                    f"round {round_ + 1}  {name:>12}: {plain:6.1f} µs per {args.chunks}-chunk stream, "
                    f"{text:6.1f} µs collecting its text"
                )
                if hasattr(module, "SseParser"):
                    events = [line + b"\n\n" for line in lines]
                    paced = best_feed_us(module, events, args.repeat)
                    whole = best_feed_us(module, [b"".join(events)], args.repeat)
                    print(
                        f"round {round_ + 1}  {name:>12}: {paced:6.1f} µs fed a read per event, "
                        f"{whole:6.1f} µs fed in one read"
                    )
                if module is current:
                    chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in (line + b"\n\n" for line in lines)]
                    framed_paced = best_framing_us(chunks, args.repeat)
                    framed_whole = best_framing_us([b"".join(chunks) + b"0\r\n\r\n"], args.repeat)
                    print(
                        f"round {round_ + 1}  {name:>12}: {framed_paced:6.1f} µs de-framing a chunk per read, "
                        f"{framed_whole:6.1f} µs in one read"
                    )


if __name__ == "__main__":
    main()
