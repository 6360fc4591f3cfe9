"""The simulator's scale as a client sees it over HTTP (a real server in a thread, sub-second delays): a request at
zero replicas held for the cold start, or refused with 503 and Retry-After, or answered 504 past the hold timeout;
replicas added under load. Times are only bounded from below (a slow machine is later, never earlier)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loadtest.sim.config import SimConfig
from loadtest.sim.server import SimServer
from tests.helpers import wait_for

COLD_S = 0.4


def chat(max_tokens: int = 4, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def scaled_to_zero(server: SimServer) -> bool:
    return bool(server.stats()["scaling"]["replicas"] == 0)


@pytest.fixture
def cold(request: pytest.FixtureRequest) -> Iterator[tuple[SimServer, httpx.Client]]:
    extra: dict[str, Any] = getattr(request, "param", {})
    config = SimConfig(scale_to_zero=True, scale_down_after_s=0.2, cold_start_s=COLD_S, **extra)
    with SimServer(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert wait_for(lambda: scaled_to_zero(server), timeout=5)
        yield server, client


def test_a_request_at_zero_is_held_for_the_cold_start_and_then_served(
    cold: tuple[SimServer, httpx.Client],
) -> None:
    server, client = cold
    t0 = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as response:
        headers_after = time.monotonic() - t0
        body = response.read().decode()
    assert response.status_code == 200 and body.endswith("data: [DONE]\n\n")
    assert headers_after >= COLD_S  # a held stream's headers wait for the replica
    scaling = server.stats()["scaling"]
    assert scaling["scale_ups_from_zero"] == 1 and scaling["requests_held"] == 1
    assert [n for _, n in scaling["history"]] == [1, 0, 1]
    t1 = time.monotonic()
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    assert time.monotonic() - t1 < COLD_S  # warm now


@pytest.mark.parametrize("cold", [{"cold_start_reply": "503"}], indirect=True)
def test_the_503_reply_refuses_at_once_with_retry_after(cold: tuple[SimServer, httpx.Client]) -> None:
    server, client = cold
    refused = client.post("/serving-endpoints/chat/completions", json=chat())
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"  # 0.4 s left, rounded up
    assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert wait_for(lambda: client.post("/v1/chat/completions", json=chat()).status_code == 200, timeout=5)
    assert server.stats()["scaling"]["requests_refused"] >= 1


@pytest.mark.parametrize("cold", [{"hold_timeout_s": 0.1}], indirect=True)
def test_a_request_held_past_the_hold_timeout_gets_504(cold: tuple[SimServer, httpx.Client]) -> None:
    server, client = cold
    response = client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 504
    assert "upstream request timeout" in response.json()["error"]["message"]
    assert server.stats()["scaling"]["requests_timed_out"] == 1
    assert wait_for(lambda: client.post("/v1/chat/completions", json=chat()).status_code == 200, timeout=5)


def test_replicas_are_added_one_per_period_while_requests_wait() -> None:
    config = SimConfig(replicas=3, max_batch=2, scale_out_s=0.2, slowdown=10.0)
    with SimServer(config) as server:
        assert server.stats()["scaling"]["replicas"] == 1  # autoscaling starts at the minimum
        stop = threading.Event()

        def user() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    client.post("/v1/chat/completions", json=chat(max_tokens=16))

        users = [threading.Thread(target=user) for _ in range(6)]
        for thread in users:
            thread.start()
        try:
            assert wait_for(lambda: server.stats()["scaling"]["replicas"] == 3, timeout=10)
            # the queue is shared out: 3 replicas x a batch of 2
            assert wait_for(lambda: server.stats()["running"] == 6, timeout=5)
        finally:
            stop.set()
            for thread in users:
                thread.join()
        history = server.stats()["scaling"]["history"]
        assert [n for _, n in history] == [1, 2, 3]
        assert history[2][0] - history[1][0] >= 0.2 - 1e-3  # one period between replicas at least
