"""What the simulator's documents say while it scales, on a fake clock and an event loop that never runs (no
server, no sleeps): requests held for a cold start are waiting in ``/metrics`` (``vllm:num_requests_waiting``) and
``/sim/stats``; the endpoint document shows ``scale_to_zero_enabled`` as the simulator models it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest

from loadtest.client.clock import FakeClock
from loadtest.sim.app import App
from loadtest.sim.config import SimConfig
from loadtest.sim.documents import metrics_text
from loadtest.sim.http11 import Connection

CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})


class _Transport(asyncio.Transport):
    """Keeps what the server wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(app: App) -> tuple[Connection, _Transport]:
    conn, transport = Connection(app), _Transport()
    conn.connection_made(transport)
    return conn, transport


def post_chat(conn: Connection) -> None:
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-length: {len(CHAT)}\r\n\r\n"
    conn.data_received(head.encode() + CHAT)


def waiting(app: App) -> float:
    """``vllm:num_requests_waiting`` as ``/metrics`` says it."""
    text = metrics_text(app.model, app.snapshot()).decode()
    [line] = [x for x in text.splitlines() if x.startswith("vllm:num_requests_waiting{")]
    return float(line.rpartition(" ")[2])


def test_requests_held_for_a_cold_start_are_waiting_until_a_replica_takes_them(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = FakeClock(start=0.0)
    config = SimConfig(scale_to_zero=True, scale_down_after_s=10.0, cold_start_s=15.0, chunks=2)
    app = App(config, loop, clock)
    clock.now = 10.0
    app._scale_tick()  # idle for scale_down_after_s: zero replicas
    assert app.snapshot()["scaling"]["replicas"] == 0
    conns = [connect(app) for _ in range(3)]
    for conn, _ in conns:
        post_chat(conn)  # each is held: no replica to take it
    assert all(not transport.sent for _, transport in conns)  # nothing answered yet
    stats = app.snapshot()
    assert (stats["waiting"], stats["running"], stats["scaling"]["held_now"]) == (3, 0, 3)
    assert waiting(app) == 3.0
    conns[0][0].connection_lost(None)  # a client gives up: no longer waiting
    assert (app.snapshot()["waiting"], waiting(app)) == (2, 2.0)
    clock.now = 25.0  # the cold start is over: both replicas take the two held requests
    app._scale_tick()
    stats = app.snapshot()
    assert (stats["waiting"], stats["running"], stats["scaling"]["held_now"]) == (0, 2, 0)
    assert waiting(app) == 0.0
    app.cancel_timers()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SimConfig(scale_to_zero=True, chunks=2), True),
        (SimConfig(chunks=2), False),
        (SimConfig(chunk_size=970, min_provisioned_throughput=0, max_provisioned_throughput=1_940), False),
        (SimConfig(architecture="llama-4-maverick", scale_to_zero=True), True),
    ],
    ids=["band-scale-to-zero", "band-fixed", "band-from-0-without-scaling", "model-units-scale-to-zero"],
)
def test_the_endpoint_document_shows_scale_to_zero_as_simulated(
    loop: asyncio.AbstractEventLoop, config: SimConfig, expected: bool
) -> None:
    app = App(config, loop, FakeClock(start=0.0))
    [entity] = app.endpoint("llama-pt")["config"]["served_entities"]
    assert entity["scale_to_zero_enabled"] is expected
    app.cancel_timers()


def test_a_pay_per_token_endpoint_shows_no_scale_to_zero(loop: asyncio.AbstractEventLoop) -> None:
    app = App(SimConfig(mode="ppt"), loop, FakeClock(start=0.0))
    [entity] = app.endpoint("databricks-llama")["config"]["served_entities"]
    assert "scale_to_zero_enabled" not in entity
