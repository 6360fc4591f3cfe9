"""Prefix reuse over HTTP: a conversation's second turn is served partly from the replica's prefix cache, the usage
says how much, the project's client records it, and the first token comes earlier by the model's prefill time of
the cached tokens."""

from __future__ import annotations

import statistics
from typing import Any

import httpx
import pytest

from loadtest.client.clock import EpochClock
from loadtest.client.execute import Capture, RecordContext, execute_request
from loadtest.client.httpx_transport import HttpxTransport
from loadtest.client.protocol import EndpointSpec, RequestClass, build_request
from loadtest.client.records import RequestRecord
from loadtest.model.roofline import prefill_s
from loadtest.sim.config import SimConfig
from loadtest.sim.prefix import BLOCK_SIZE
from loadtest.sim.server import SimServer

CTX = RecordContext(run_id="r", stage="concurrency@1", endpoint="sim", worker="w")
P = 1000  # turn 1's prompt tokens: one word each
REPEATS = 5


def turn1() -> list[dict[str, Any]]:
    return [{"role": "user", "content": " ".join(f"w{i}" for i in range(P))}]


def turn2(k: int) -> list[dict[str, Any]]:
    """Turn 1, the answer (its first word differs with ``k``, inside turn 1's partial last block, so no turn 2
    caches another's blocks) and a new question: 1,007 tokens."""
    return [
        *turn1(),
        {"role": "assistant", "content": f"a{k} b c d"},
        {"role": "user", "content": "and then?"},
    ]


def send(
    client: httpx.Client,
    url: str,
    messages: list[dict[str, Any]],
    output_tokens: int = 2,
    capture: Capture | None = None,
) -> RequestRecord:
    endpoint = EndpointSpec(base_url=url + "/v1", model="m")
    request = build_request(endpoint, RequestClass(output_tokens=output_tokens), messages)
    records: list[RequestRecord] = []
    clock = EpochClock()
    execute_request(
        HttpxTransport(client),
        request,
        {},
        clock,
        CTX,
        seq=0,
        scheduled_at=clock(),
        emit=records.append,
        capture=capture,
    )
    (record,) = records
    assert record.ok and record.first_token_at is not None, record.error_detail
    return record


def model_ttft(client: httpx.Client, records: list[RequestRecord]) -> list[float]:
    """``due − arrived`` of each record's request (``/sim/timings``): the model's TTFT."""
    rows = {row[0]: row for row in client.get("/sim/timings").json()["first_tokens"]["rows"]}
    return [rows[r.server_request_id][2] - rows[r.server_request_id][1] for r in records]


def ttft(record: RequestRecord) -> float:
    assert record.first_token_at is not None
    return record.first_token_at - record.started_at


def run(config: SimConfig) -> tuple[RequestRecord, list[RequestRecord], list[float]]:
    """Turn 1, then the second turns one at a time (one replica, no other load)."""
    with SimServer(config) as sim, httpx.Client(base_url=sim.url, timeout=30) as client:
        first = send(client, sim.url, turn1())
        seconds = [send(client, sim.url, turn2(k)) for k in range(REPEATS)]
        return first, seconds, model_ttft(client, seconds)


@pytest.mark.slow
def test_prefix_reuse_lowers_the_second_turns_ttft_by_the_prefill_of_the_cached_tokens() -> None:
    cached_config = SimConfig(seed=1)
    off_config = SimConfig(seed=1, prefix_cache_tokens=0)
    dep = cached_config.deployment()
    first, seconds, model_on = run(cached_config)
    _, seconds_off, model_off = run(off_config)
    cached = P // BLOCK_SIZE * BLOCK_SIZE  # 992: turn 1's full blocks
    prompt2 = seconds[0].prompt_tokens
    assert prompt2 == P + 7
    assert (first.prompt_tokens, first.cached_tokens) == (P, 0)
    assert [r.cached_tokens for r in seconds] == [cached] * REPEATS
    assert [r.cached_tokens for r in seconds_off] == [None] * REPEATS  # no prefix cache: usage says nothing
    # the model's TTFT of an idle replica is one step: c0 + the prefill of the uncached tokens (the microseconds
    # from arrival to submit on top)
    for value in model_on:
        assert 0 <= value - (dep.c0_s + prefill_s(dep, prompt2, cached)) < 1e-3
    for value in model_off:
        assert 0 <= value - (dep.c0_s + prefill_s(dep, prompt2)) < 1e-3
    # measured by the client: the difference is the prefill time of the cached tokens (25.2 ms; measured 25.3, 25.7,
    # 26.9), within the TTFT tolerance of the simulator's HTTP tests (docs/simulator.md: ±10 % + 3 ms)
    saved = statistics.median(ttft(r) for r in seconds_off) - statistics.median(ttft(r) for r in seconds)
    expected = prefill_s(dep, cached)
    assert saved == pytest.approx(expected, abs=0.10 * expected + 3e-3)
    assert prefill_s(dep, prompt2) - prefill_s(dep, prompt2, cached) == pytest.approx(prefill_s(dep, cached))


ANSWER = 40  # turn 1's answer, one token a word: prompt + answer = 1,040 tokens, 65 full blocks


def conversation(client: httpx.Client, url: str, k: int) -> RequestRecord:
    """A two-turn conversation (its first word differs with ``k``, so no conversation caches another's blocks):
    turn 2 sends turn 1's answer back as a flow does (the streamed chunks joined) and asks again; its record."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"k{k} " + " ".join(f"w{i}" for i in range(1, P))}
    ]
    capture = Capture(content=[])
    first = send(client, url, messages, ANSWER, capture)
    assert (first.prompt_tokens, first.output_tokens) == (P, ANSWER)
    messages.append({"role": "assistant", "content": "".join(capture.content or ())})
    messages.append({"role": "user", "content": "and then?"})
    return send(client, url, messages)


def run_conversations(config: SimConfig) -> tuple[list[RequestRecord], list[float]]:
    """Two-turn conversations one at a time (one replica, no other load): the second turns and their model TTFT."""
    with SimServer(config) as sim, httpx.Client(base_url=sim.url, timeout=30) as client:
        seconds = [conversation(client, sim.url, k) for k in range(REPEATS)]
        return seconds, model_ttft(client, seconds)


@pytest.mark.slow
def test_the_second_turn_hits_through_the_first_answer() -> None:
    cached_config = SimConfig(seed=1)
    dep = cached_config.deployment()
    seconds, model_on = run_conversations(cached_config)
    seconds_off, model_off = run_conversations(SimConfig(seed=1, prefix_cache_tokens=0))
    cached = (
        (P + ANSWER) // BLOCK_SIZE * BLOCK_SIZE
    )  # 1,040: 65 full blocks through the answer (prompt alone: 992)
    prompt2 = P + ANSWER + 3  # "and then?" is 3 tokens
    assert [r.prompt_tokens for r in seconds] == [r.prompt_tokens for r in seconds_off] == [prompt2] * REPEATS
    assert [r.cached_tokens for r in seconds] == [cached] * REPEATS
    for value in model_on:
        assert 0 <= value - (dep.c0_s + prefill_s(dep, prompt2, cached)) < 1e-3
    for value in model_off:
        assert 0 <= value - (dep.c0_s + prefill_s(dep, prompt2)) < 1e-3
    # measured by the client, with the tolerance of the test above
    saved = statistics.median(ttft(r) for r in seconds_off) - statistics.median(ttft(r) for r in seconds)
    expected = prefill_s(dep, cached)
    assert saved == pytest.approx(expected, abs=0.10 * expected + 3e-3)


def test_usage_stats_and_metrics_report_the_prefix_cache() -> None:
    with SimServer(SimConfig()) as sim, httpx.Client(base_url=sim.url, timeout=30) as client:
        body = {"messages": turn1(), "max_tokens": 2}
        whole = client.post("/v1/chat/completions", json=body).json()
        assert whole["usage"] == {
            "prompt_tokens": P,
            "total_tokens": P + 2,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        text = client.post("/v1/chat/completions", json=stream).text
        assert '"usage":{"prompt_tokens":1000,"total_tokens":1002,"completion_tokens":2,' in text
        assert '"prompt_tokens_details":{"cached_tokens":992}}' in text  # same prompt: all but the last block
        completion = client.post("/v1/completions", json={"prompt": "x y", "max_tokens": 1}).json()
        assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
        embedding = client.post("/v1/embeddings", json={"input": "x y"}).json()
        assert "prompt_tokens_details" not in embedding["usage"]
        stats = client.get("/sim/stats").json()["prefix_cache"]
        assert {k: stats[k] for k in ("block_size", "blocks", "queries", "hits")} == {
            "block_size": 16,
            "blocks": P // 16,
            "queries": 2 * P + 2 + 2,  # the embeddings input (2 tokens) is looked up too, and misses
            "hits": 992,
        }
        metrics = client.get("/metrics").text
        assert 'vllm:prefix_cache_hits_total{model_name="llama-3.1-8b"} 992' in metrics
        assert f'vllm:prefix_cache_queries_total{{model_name="llama-3.1-8b"}} {2 * P + 4}' in metrics
    with (
        SimServer(SimConfig(prefix_cache_tokens=0)) as sim,
        httpx.Client(base_url=sim.url, timeout=30) as client,
    ):
        whole = client.post("/v1/chat/completions", json={"messages": turn1(), "max_tokens": 2}).json()
        assert "prompt_tokens_details" not in whole["usage"]
        assert client.get("/sim/stats").json()["prefix_cache"] == {}
        assert "prefix_cache" not in client.get("/metrics").text
