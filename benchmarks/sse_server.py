"""A deliberately cheap OpenAI-style SSE server for measuring the load generator, not the server.

    python benchmarks/sse_server.py --port P --tokens 64 [--ttft-ms 0 --itl-ms 0] --truth FILE

Every chat request gets a vLLM-shaped stream of ``--tokens`` content chunks and a usage chunk. With zero delays the
whole response is written at once (the generator's ceiling test); with delays the chunks are paced by the event loop
and the server stamps ``time.time()`` right after writing the first content chunk — the server truth for TTFT. On
SIGTERM it writes ``{request_id: first_content_written_at}`` to ``--truth`` and exits. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import time
from typing import ClassVar

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"x-request-id: %s\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(obj: dict[str, object]) -> bytes:
    return chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


ROLE = event(
    {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
    }
)
TOKEN = event(
    {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": " tok"}, "logprobs": None, "finish_reason": None}],
    }
)
LAST = event(
    {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": " end"}, "logprobs": None, "finish_reason": "length"}],
    }
)


class Handler(asyncio.Protocol):
    ids = itertools.count(1)
    truth: ClassVar[dict[str, float]] = {}

    def __init__(self, tokens: int, ttft: float, itl: float) -> None:
        self.tokens, self.ttft, self.itl = tokens, ttft, itl
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.respond()

    def respond(self) -> None:
        assert self.transport is not None
        rid = str(next(self.ids)).encode()
        usage = event(
            {
                "id": "x",
                "choices": [],
                "usage": {
                    "prompt_tokens": 8,
                    "completion_tokens": self.tokens,
                    "total_tokens": 8 + self.tokens,
                },
            }
        )
        tail = usage + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        if self.ttft == 0 and self.itl == 0:
            self.transport.write(HEAD % rid + ROLE + TOKEN * (self.tokens - 1) + LAST + tail)
            return
        loop = asyncio.get_running_loop()
        transport = self.transport
        transport.write(HEAD % rid + ROLE)

        def send(i: int) -> None:
            if transport.is_closing():
                return
            transport.write(LAST + tail if i == self.tokens - 1 else TOKEN)
            if i == 0:
                Handler.truth[rid.decode()] = time.time()

        for i in range(self.tokens):
            loop.call_later(self.ttft + i * self.itl, send, i)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Handler(args.tokens, args.ttft_ms / 1000, args.itl_ms / 1000), "127.0.0.1", args.port
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    if args.truth:
        with open(args.truth, "w") as fh:
            json.dump(Handler.truth, fh)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--truth", default="")
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
