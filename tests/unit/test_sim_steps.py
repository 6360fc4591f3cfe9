"""How the simulator's application hands a step's tokens to the connections (:class:`loadtest.sim.app.App`): in
slices, one per turn of the event loop, the first tokens first, each stream's tokens in order even when a step ends
before the last one's writes are over. Driven by hand on an event loop that is not running: no sockets, no sleeps."""

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


def test_a_big_step_is_written_a_slice_per_turn_of_the_loop_and_the_next_step_is_planned_first(
    loop: asyncio.AbstractEventLoop,
) -> None:
    n = 3 * _SLICE + 5
    app, recorders = streams(loop, n, max_tokens=4)
    first_timer = app._timers[0]
    end_step(app)
    assert app._timers[0] is not None and app._timers[0] is not first_timer  # planned before any write
    written = [sum(len(r.frames) for r in recorders)]
    while app._pending[0] is not None:
        turn(loop)
        written.append(sum(len(r.frames) for r in recorders))
    assert written == [_SLICE, 2 * _SLICE, 3 * _SLICE, n]
    assert all(len(r.frames) == 1 for r in recorders)
    assert all(b'"role":"assistant"' in r.frames[0] for r in recorders[1:])  # first tokens
    assert b'"role"' not in recorders[0].frames[0]  # its second token, written last
    assert app.counters["tokens_emitted"] == n + 1
    assert len(app.step_writes) == 2  # (the test fires steps early: no order between due and written)
    assert len(app.first_tokens.rows) == n


def test_a_step_that_ends_before_the_last_ones_writes_are_over_writes_them_first(
    loop: asyncio.AbstractEventLoop,
) -> None:
    n = 2 * _SLICE + 1
    app, recorders = streams(loop, n, max_tokens=2)
    end_step(app)  # the first tokens: one slice written, the rest pending
    end_step(app)  # the last tokens, before the loop ever turned
    while app._pending[0] is not None:
        turn(loop)
    assert len(recorders[0].frames) == 1 and b'"finish_reason":"length"' in recorders[0].frames[0]
    for r in recorders[1:]:
        assert len(r.frames) == 2
        assert b'"role":"assistant"' in r.frames[0] and b'"finish_reason":"length"' in r.frames[1]
    assert app.counters["requests_completed"] == n and not app.jobs
    assert app._timers[0] is None  # nothing left to do: the replica is idle
