"""How the simulator's application hands a step's tokens to the connections (:class:`loadtest.sim.app.App`): the
first tokens at once, the others in slices, one per turn of the event loop, oldest step first, so each stream's
tokens are in order even when a step ends before the last one's writes are over. Driven by hand on an event loop
that is not running: no sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from loadtest.sim.app import _SLICE, App
from loadtest.sim.config import SimConfig
from loadtest.sim.http11 import Connection


class Recorder(asyncio.Transport):
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.frames.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def streams(loop: asyncio.AbstractEventLoop, n: int, max_tokens: int) -> tuple[App, list[Recorder]]:
    """An app with ``n`` streamed chat requests submitted to its one replica. The first started the replica's first
    step alone; that step is over (its token written, then forgotten): the other ``n − 1`` are admitted in the
    step in flight, the first decodes in it."""
    app = App(SimConfig(max_batch=512), loop)
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    )
    request = b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    recorders = []
    for _ in range(n):
        conn, transport = Connection(app), Recorder()
        conn.connection_made(transport)
        conn.data_received(request)
        recorders.append(transport)
    end_step(app)
    for r in recorders:
        r.frames.clear()  # the response heads, and the first request's first token
    return app, recorders


def end_step(app: App) -> None:
    """The replica's step timer fires now."""
    timer = app._timers[0]
    assert timer is not None
    timer.cancel()
    app._end_step(0)


def turn(loop: asyncio.AbstractEventLoop) -> None:
    """One turn of the event loop: the callbacks that are ready run (those they schedule wait for the next)."""
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_a_steps_first_tokens_are_written_at_once_and_its_other_tokens_a_slice_per_turn_of_the_loop(
    loop: asyncio.AbstractEventLoop,
) -> None:
    n = 3 * _SLICE + 5
    app, recorders = streams(loop, n, max_tokens=4)

    def written() -> int:
        return sum(len(r.frames) for r in recorders)

    end_step(app)  # n - 1 first tokens, and the first request's second token
    assert written() == n - 1  # every first token at once, however many
    assert all(b'"role":"assistant"' in r.frames[0] for r in recorders[1:]) and not recorders[0].frames
    turn(loop)
    assert written() == n and b'"role"' not in recorders[0].frames[0]
    before = app._timers[0]
    end_step(app)  # n decoders
    assert app._timers[0] is not None and app._timers[0] is not before  # the next step is planned first
    counts = [written() - n]
    while app._queue:
        turn(loop)
        counts.append(written() - n)
    assert counts == [_SLICE, 2 * _SLICE, 3 * _SLICE, n]
    assert app.counters["tokens_emitted"] == 1 + 2 * n
    assert len(app.step_writes) == 3  # (the test fires steps early: no order between due and written)
    assert len(app.first_tokens.rows) == n


def test_a_streams_tokens_are_written_in_order_when_steps_end_faster_than_the_loop_writes(
    loop: asyncio.AbstractEventLoop,
) -> None:
    n = 2 * _SLICE + 1
    app, recorders = streams(loop, n, max_tokens=3)
    end_step(app)  # the first tokens written; the first request's second token queued
    end_step(app)  # before the loop ever turned: every token queued behind it
    end_step(app)  # the last tokens, queued too
    while app._queue:
        turn(loop)
    assert len(recorders[0].frames) == 2 and b'"finish_reason":"length"' in recorders[0].frames[1]
    for r in recorders[1:]:
        assert len(r.frames) == 3
        assert b'"role":"assistant"' in r.frames[0]
        assert b'"finish_reason":null' in r.frames[1]
        assert b'"finish_reason":"length"' in r.frames[2]
    assert b'"finish_reason":null' in recorders[0].frames[0]
    assert app.counters["requests_completed"] == n and not app.jobs
    assert app._timers[0] is None  # nothing left to do: the replica is idle
