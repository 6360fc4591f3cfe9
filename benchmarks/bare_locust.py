"""The baseline the generator is measured against: bare Locust, as a careful user would write an LLM test with it.

    locust -f benchmarks/bare_locust.py --headless -u 64 -r 64 -t 8s --host http://127.0.0.1:PORT --only-summary

A ``FastHttpUser`` (geventhttpclient, Locust's fastest client) posts a streamed chat completion and reads the raw
stream line by line (``readline()`` on the response: Locust's own ``iter_lines`` reads 1 KiB blocks and stamps
tokens up to a block late), stamping ``time.time()`` when a line arrives and ``json.loads``-ing every ``data:`` line;
the first chunk with text is the first token. No records, no gaps kept: only what the benchmark compares (requests,
first-token times, the server's request id). At the end it writes ``{"requests": [[request_id, started_at,
first_token_at, ended_at, ok], ...], "cpu_s": ..., "wall_s": ...}`` to ``$BARE_LOCUST_OUT`` (run by
``benchmarks/generator_bench.py --baseline``; not part of the toolkit).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from locust import FastHttpUser, constant, events, task

BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    "max_tokens": int(os.environ.get("BARE_LOCUST_TOKENS", "64")),
    "stream": True,
}
DONE: list[tuple[str | None, float, float | None, float, bool]] = []
STARTED = {"wall": 0.0, "cpu": 0.0}


class Bare(FastHttpUser):
    wait_time = constant(0)

    @task
    def chat(self) -> None:
        first = None
        ok = False
        started = time.time()
        with self.client.post(
            "/v1/chat/completions", json=BODY, stream=True, catch_response=True
        ) as response:
            raw: Any = response._response  # geventhttpclient's response: readline() as bytes arrive
            rid = response.headers.get("x-request-id") if response.headers else None
            while raw is not None:
                line = raw.readline(b"\n")
                if not line:
                    break
                now = time.time()
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    ok = True
                    break
                chunk = json.loads(payload)
                choices = chunk.get("choices") or ()
                if first is None and choices and (choices[0].get("delta") or {}).get("content"):
                    first = now
            if not ok:
                response.failure("stream did not end with [DONE]")
        DONE.append((rid, started, first, time.time(), ok))


def _start(**_kwargs: Any) -> None:
    STARTED.update(wall=time.monotonic(), cpu=time.process_time())


def _write(**_kwargs: Any) -> None:
    out = os.environ.get("BARE_LOCUST_OUT")
    if out:
        result = {
            "requests": DONE,
            "cpu_s": time.process_time() - STARTED["cpu"],
            "wall_s": time.monotonic() - STARTED["wall"],
        }
        with open(out, "w") as fh:
            json.dump(result, fh)


events.test_start.add_listener(_start)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_write)  # type: ignore[no-untyped-call]
