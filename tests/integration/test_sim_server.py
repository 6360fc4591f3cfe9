"""The simulator as a real HTTP server (in a thread, port 0), driven by httpx."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from loadtest.errors import PortInUseError
from loadtest.model.predict import predict_closed_loop
from loadtest.model.roofline import decode_step_s
from loadtest.sim.config import SimConfig
from loadtest.sim.server import SimServer
from loadtest.sim.tokens import EMBEDDING_DIM
from tests.helpers import wait_for

TOKEN = "s3cret-token-value"


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(SimConfig(replicas=2, endpoint_name="sim-llama", seed=5)) as sim:
        yield sim


@pytest.fixture
def client(server: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def chat(content: str = "Say hello", max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        **extra,
    }


def sse_events(response: httpx.Response) -> list[Any]:
    """The JSON of each ``data:`` event, and the literal ``"[DONE]"``; asserts the event framing."""
    text = response.read().decode()
    assert text.endswith("\n\n")
    events: list[Any] = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_chat_is_shaped_like_vllm(client: httpx.Client, include_usage: bool) -> None:
    body = chat(
        "The quick brown fox, jumps!", 6, stream=True, stream_options={"include_usage": include_usage}
    )
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"].startswith("chatcmpl-") for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    role = chunks[0]["choices"][0]
    assert role == {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    }
    usage = [c for c in chunks if not c["choices"]]
    content = [c["choices"][0] for c in chunks[1:] if c["choices"]]
    assert len(content) == 6
    assert all(c["delta"]["content"].startswith(" ") and len(c["delta"]["content"]) > 1 for c in content)
    assert [c["finish_reason"] for c in content] == [None] * 5 + ["length"]
    if include_usage:
        assert chunks[-1] is usage[0] and len(usage) == 1
        assert usage[0]["usage"] == {
            "prompt_tokens": 7,
            "completion_tokens": 6,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
    else:
        assert usage == [] and all("usage" not in c for c in chunks)


def test_non_streaming_usage_follows_the_prompt_token_rule(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},  # 4 tokens: You are terse .
        {"role": "user", "content": [{"type": "text", "text": "Hello, world!"}]},  # 4 tokens
    ]
    response = client.post("/v1/chat/completions", json={"messages": messages, "max_completion_tokens": 3})
    assert response.status_code == 200 and response.headers["x-request-id"]
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 3,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 3
    default = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert default.json()["usage"]["completion_tokens"] == 16


def test_completions_stream_and_whole(client: httpx.Client) -> None:
    prompt = " ".join(["word"] * 50)
    whole = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 4}).json()
    assert whole["object"] == "text_completion" and whole["id"].startswith("cmpl-")
    assert whole["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 4,
        "total_tokens": 54,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert len(whole["choices"][0]["text"].split()) == 4
    body = {"prompt": prompt, "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/completions", json=body) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0] for e in events[:-1] if e["choices"]]
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert len(texts) == 4 and texts[-1]["finish_reason"] == "length" and texts[0]["finish_reason"] is None
    assert events[-2]["usage"]["completion_tokens"] == 4
    ids = client.post("/v1/completions", json={"prompt": [1, 2, 3, 4, 5], "max_tokens": 1}).json()
    assert ids["usage"]["prompt_tokens"] == 5


def test_embeddings(client: httpx.Client) -> None:
    body = client.post("/v1/embeddings", json={"input": ["one two three", "four"], "model": "m"}).json()
    assert body["object"] == "list" and body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == EMBEDDING_DIM and d["object"] == "embedding" for d in body["data"])
    again = client.post("/v1/embeddings", json={"input": "one two three"}).json()
    assert again["data"][0]["embedding"] == body["data"][0]["embedding"]


def test_databricks_paths(client: httpx.Client, server: SimServer) -> None:
    inv = "/serving-endpoints/sim-llama/invocations"
    assert client.post(inv, json=chat()).json()["object"] == "chat.completion"
    assert client.post(inv, json={"prompt": "a b", "max_tokens": 2}).json()["object"] == "text_completion"
    assert client.post(inv, json={"input": "a b"}).json()["object"] == "list"
    bad = client.post(inv, json={"max_tokens": 2})
    assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST"
    assert client.post("/serving-endpoints/other/invocations", json=chat()).status_code == 404
    ok = client.post("/serving-endpoints/chat/completions", json={**chat(), "model": "sim-llama"})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 8
    wrong = client.post("/serving-endpoints/chat/completions", json={**chat(), "model": "nope"})
    assert wrong.status_code == 404 and wrong.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    endpoint = client.get("/api/2.0/serving-endpoints/sim-llama").json()
    assert endpoint["name"] == "sim-llama"
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    entity = endpoint["config"]["served_entities"][0]
    chunk = entity["throughput_chunk_size"]
    assert chunk > 0 and chunk == server.stats()["throughput_chunk_size"]
    assert entity["min_provisioned_throughput"] == entity["max_provisioned_throughput"] == 2 * chunk
    assert client.get("/api/2.0/serving-endpoints/other").status_code == 404


def test_models_metrics_health(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["data"][0]["id"] == "llama-3.1-8b" and models["data"][0]["max_model_len"] == 131072
    assert client.get("/health").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0] for line in metrics.text.splitlines() if line and not line.startswith("#")}
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:request_success_total"} <= names
    assert "vllm:generation_tokens_total" in names


def test_errors(client: httpx.Client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.headers["x-request-id"]
    assert client.get("/v1/chat/completions").status_code == 405
    assert client.post("/v1/models").status_code == 405
    cases = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"messages": []}),
        orjson.dumps({"messages": [{"content": "no role"}]}),
        orjson.dumps(chat(max_tokens=0)),
        orjson.dumps(chat(max_tokens=True)),
        orjson.dumps(chat(stream="yes")),
        orjson.dumps(chat(max_tokens=200_000)),  # beyond the 131072-token context
        orjson.dumps({"prompt": ["a", "b"], "max_tokens": 1}),
    ]
    for content in cases:
        response = client.post(
            "/v1/chat/completions" if b"prompt" not in content else "/v1/completions", content=content
        )
        assert response.status_code == 400, content
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]


def test_bearer_token() -> None:
    with SimServer(SimConfig(api_token=TOKEN)) as sim, httpx.Client(base_url=sim.url) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = c.post("/v1/chat/completions", json=chat(), headers=headers)
            assert response.status_code == 401
            assert TOKEN not in response.text and response.json()["error"]["type"] == "authentication_error"
        assert c.get("/api/2.0/serving-endpoints/sim-llama").status_code == 401
        good = c.post("/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200
        assert c.get("/health").status_code == 200
        assert TOKEN not in repr(sim.config)


def test_stats_count_requests(server: SimServer, client: httpx.Client) -> None:
    before = server.stats()
    for _ in range(3):
        client.post("/v1/completions", json={"prompt": "x", "max_tokens": 5})
    client.get("/nope")
    after = client.get("/sim/stats").json()
    assert after["requests_received"] - before["requests_received"] == 5  # includes this GET
    assert after["requests_completed"] - before["requests_completed"] == 3
    assert after["tokens_emitted"] - before["tokens_emitted"] == 15
    assert after["by_path"]["/v1/completions"] - before["by_path"].get("/v1/completions", 0) == 3
    assert after["by_status"]["404"] - before["by_status"].get("404", 0) == 1
    assert after["running"] == after["waiting"] == 0


def test_timings_give_each_first_token_as_the_model_meant_it_and_the_loop_lateness() -> None:
    """``/sim/timings`` (open, like ``/sim/stats``): a stream's row has the model's TTFT (fixed slots: the prefill
    time, from arrival) and a write at or after it, streamed or not; the loop monitor ticks."""
    config = SimConfig(slots=2, prefill_ms=30.0, tpot_ms=1.0, api_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with SimServer(config) as sim, httpx.Client(base_url=sim.url, timeout=30) as c:
        ids = []
        for stream in (True, False):
            response = c.post("/v1/chat/completions", json=chat(max_tokens=3, stream=stream), headers=auth)
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
        assert wait_for(lambda: c.get("/sim/stats").json()["loop_lag"]["samples"] >= 3)
        timings = c.get("/sim/timings").json()
    rows = {row[0]: row[1:] for row in timings["first_tokens"]["rows"]}
    assert timings["first_tokens"]["columns"] == ["request_id", "arrived", "due", "written"]
    assert set(rows) == set(ids)
    for arrived, due, written in rows.values():
        # the slot was free: TTFT = the prefill (plus the microseconds from arrival to submit)
        assert 0.030 <= due - arrived < 0.035
        assert due <= written <= timings["now"]
    lags = timings["loop_lag"]
    assert len(lags) >= 3 and timings["loop_lag_interval_s"] == 0.01
    assert all(t <= timings["now"] and late >= 0 for t, late in lags)


def test_concurrent_streams_are_batched(server: SimServer) -> None:
    async def one(c: httpx.AsyncClient, n: int) -> int:
        body = chat(max_tokens=n, stream=True)
        async with c.stream("POST", "/v1/chat/completions", json=body) as response:
            text = (await response.aread()).decode()
        return text.count('"content":"') - 1  # minus the role chunk

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            return await asyncio.gather(*(one(c, 10 + i) for i in range(16)))

    steps_before = server.stats()["steps"]
    assert asyncio.run(main()) == [10 + i for i in range(16)]
    assert server.stats()["steps"] - steps_before < 16 * 10  # one step serves many streams


def test_disconnect_drops_the_sequence(server: SimServer) -> None:
    before = server.stats()["requests_cancelled"]
    with (
        httpx.Client(base_url=server.url) as c,
        c.stream("POST", "/v1/chat/completions", json=chat(max_tokens=5000, stream=True)) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    assert wait_for(lambda: server.stats()["running"] == 0)
    assert server.stats()["requests_cancelled"] == before + 1


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=str(port)):
            SimServer(SimConfig(port=port)).start()


def test_single_stream_gap_matches_the_batch_one_decode_step() -> None:
    config = SimConfig(architecture="llama-3.3-70b", gpu="a100", tp=4)
    prompt_tokens, n = 3, 30
    with SimServer(config) as sim, httpx.Client(base_url=sim.url, timeout=30) as c:
        stamps: list[float] = []
        body = chat("hello big model", n, stream=True)
        with c.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if '"content":"' in line and '"role"' not in line:
                    stamps.append(time.perf_counter())
    assert len(stamps) == n
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    expected = decode_step_s(config.deployment(), 1, prompt_tokens + n / 2)
    assert statistics.fmean(gaps) == pytest.approx(expected, rel=0.30)


def test_foreground_entry_point_announces_and_stops_on_sigterm() -> None:
    code = (
        "import sys\n"
        "from loadtest.sim.config import SimConfig\nfrom loadtest.sim.server import run_sim_foreground\n"
        "run_sim_foreground(SimConfig(port=0), sys.stdout)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:") and line.endswith("\n")
            url = line.split()[-1]
            assert (
                httpx.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def raw_exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_pipelined_requests_are_answered_in_order_and_close_is_honoured(server: SimServer) -> None:
    body = orjson.dumps({"prompt": "a b c", "max_tokens": 2})
    post = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    last = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(server.port, post + post + last)
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert (
        reply.index(b"text_completion") < reply.rindex(b"text_completion") < reply.index(b"connection: close")
    )


def test_malformed_requests_get_400_and_the_connection_closes(server: SimServer) -> None:
    reply = raw_exchange(server.port, b"NONSENSE\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ") and b"invalid_request_error" in reply
    reply = raw_exchange(server.port, b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 411 ")


@pytest.mark.slow
def test_closed_loop_over_http_matches_the_prediction() -> None:
    """Clients that all start at once, over real sockets: the burst orbit of ``predict_closed_loop``. Their prompts
    are identical and the prediction models no prefix cache, so the simulator runs without one."""
    config = SimConfig(architecture="llama-3.1-8b", gpu="h100", prefix_cache_tokens=0)
    clients, p, n, duration = 8, 128, 64, 3.0
    body = orjson.dumps(
        {"messages": [{"role": "user", "content": "w " * p}], "max_tokens": n, "stream": True}
    )
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (
        len(body),
        body,
    )
    records: list[tuple[float, float, float]] = []

    async def user(port: int, stop: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (sent := time.perf_counter()) < stop:
            writer.write(request)
            first, tail = 0.0, b""
            while tail != b"0\r\n\r\n":
                data = await reader.read(65536)
                assert data
                if not first and b'"content":"' in data.replace(b'"content":""', b""):
                    first = time.perf_counter()
                tail = (tail + data)[-5:]
            records.append((sent, first, time.perf_counter()))
        writer.close()

    async def main(port: int) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(user(port, start + duration) for _ in range(clients)))
        return start

    with SimServer(config) as sim:
        start = asyncio.run(main(sim.port))
    steady = [r for r in records if r[0] > start + 1.0]
    predicted = predict_closed_loop(config.serving_config(), clients, p, n, start="burst")
    assert statistics.fmean(r[1] - r[0] for r in steady) == pytest.approx(predicted.ttft_s, rel=0.10)
    assert statistics.fmean(r[2] - r[0] for r in steady) == pytest.approx(predicted.e2e_s, rel=0.10)
    tpot = statistics.fmean((r[2] - r[1]) / (n - 1) for r in steady)
    assert predicted.tpot_s is not None and tpot == pytest.approx(predicted.tpot_s, rel=0.10)


def test_embedding_architecture_serves_embeddings_only() -> None:
    with (
        SimServer(SimConfig(architecture="bge-large", gpu="a100")) as sim,
        httpx.Client(base_url=sim.url) as c,
    ):
        body = c.post("/v1/embeddings", json={"input": ["a b c"] * 3}).json()
        assert len(body["data"]) == 3 and body["usage"]["prompt_tokens"] == 9
        refused = c.post("/v1/chat/completions", json=chat())
        assert refused.status_code == 400 and "embedding" in refused.json()["error"]["message"]
        assert c.get("/api/2.0/serving-endpoints/sim-llama").json()["task"] == "llm/v1/embeddings"
