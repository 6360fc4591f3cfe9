"""The executor over httpx.MockTransport with a fake clock: every outcome becomes exactly one classified record."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from loadtest.client.clock import FakeClock
from loadtest.client.execute import RecordContext, execute_request, parse_retry_after
from loadtest.client.httpx_transport import HttpxTransport
from loadtest.client.protocol import EndpointSpec, RequestClass, build_request
from loadtest.client.records import RequestRecord, dump_record, load_record

ENDPOINT = EndpointSpec(base_url="http://sim.test/v1", model="m")
CTX = RecordContext(run_id="r1", stage="concurrency@1", endpoint="e", worker="w")
SECRET = "dapi0123456789abcdefSECRET"


def sse(
    events: list[tuple[float, bytes]], clock: FakeClock, tail: Callable[[], None] | None = None
) -> Iterator[bytes]:
    base = clock.now
    for at, payload in events:
        clock.now = base + at
        yield b"data: " + payload + b"\n\n"
    if tail is not None:
        tail()


def chunk(text: str | None, finish: str | None = None) -> bytes:
    return orjson.dumps(
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    )


def run(
    handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock, cls: RequestClass | None = None
) -> tuple[RequestRecord, list[RequestRecord]]:
    emitted: list[RequestRecord] = []
    request = build_request(ENDPOINT, cls or RequestClass(output_tokens=3), "hello world")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        record = execute_request(
            HttpxTransport(client),
            request,
            {"Authorization": f"Bearer {SECRET}"},
            clock,
            CTX,
            seq=7,
            scheduled_at=clock.now - 0.004,
            emit=emitted.append,
        )
    return record, emitted


def stream_response(body: Iterator[bytes], **headers: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream", **headers}, content=body)


def test_streamed_success_with_usage() -> None:
    clock = FakeClock(start=50.0)
    events = [
        (0.1, chunk("")),
        (0.2, chunk(" a")),
        (0.25, chunk(" b")),
        (0.3, chunk(" c", "length")),
        (0.31, orjson.dumps({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}})),
        (0.32, b"[DONE]"),
    ]
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(orjson.loads(request.content))
        return stream_response(sse(events, clock), **{"x-request-id": "req-9"})

    record, emitted = run(handler, clock)
    assert emitted == [record]
    assert seen["stream"] is True
    assert seen["stream_options"] == {"include_usage": True}
    assert record.ok
    assert record.status == 200
    assert record.started_at == pytest.approx(50.0)
    assert record.first_token_at == pytest.approx(50.2)
    assert record.last_token_at == pytest.approx(50.3)
    assert record.ended_at == pytest.approx(50.32)
    assert record.scheduled_at == pytest.approx(49.996)
    assert (record.prompt_tokens, record.output_tokens, record.token_source) == (2, 3, "usage")
    assert record.client_output_tokens == 3
    assert record.chunk_gaps == pytest.approx((0.05, 0.05))
    assert record.server_request_id == "req-9"
    assert record.seq == 7
    assert record.stage == "concurrency@1"


def test_missing_usage_falls_back_to_client_count() -> None:
    clock = FakeClock()
    events = [(0.1, chunk(" a")), (0.2, chunk(" b", "stop")), (0.3, b"[DONE]")]
    record, _ = run(lambda r: stream_response(sse(events, clock)), clock)
    assert record.ok
    assert record.output_tokens == 2
    assert record.token_source == "client"


def test_databricks_429_is_rate_limited_with_retry_after() -> None:
    body = {
        "error": {
            "message": "Rate limit exceeded: ITPM limit of 200,000 tokens reached",
            "type": "rate_limit_exceeded",
            "code": 429,
            "limit_type": "input_tokens_per_minute",
            "retry_after": 15,
        }
    }
    record, _ = run(lambda r: httpx.Response(429, json=body), FakeClock())
    assert record.error_class == "rate_limited"
    assert record.status == 429
    assert record.retry_after_s == 15.0
    assert record.error_detail is not None
    assert "input_tokens_per_minute" in record.error_detail


def test_retry_after_header_wins_and_error_code_body() -> None:
    body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded workspace QPS rate limit"}
    record, _ = run(lambda r: httpx.Response(429, json=body, headers={"Retry-After": "3"}), FakeClock())
    assert record.retry_after_s == 3.0
    assert record.error_detail == "HTTP 429: REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, "server_error"), (503, "server_error"), (400, "client_error"), (404, "client_error")],
)
def test_http_errors_are_classified(status: int, expected: str) -> None:
    record, _ = run(lambda r: httpx.Response(status, text="nope"), FakeClock())
    assert record.error_class == expected
    assert record.status == status


def test_error_body_echoing_the_token_is_redacted() -> None:
    record, _ = run(lambda r: httpx.Response(401, text=f"bad token Bearer {SECRET}"), FakeClock())
    assert SECRET not in (record.error_detail or "")
    assert SECRET not in dump_record(record).decode()


def test_an_error_body_echoing_the_bare_token_loses_it_too() -> None:
    record, _ = run(
        lambda r: httpx.Response(401, text=f"unknown key ({SECRET}) for this workspace"), FakeClock()
    )
    assert record.error_detail == "HTTP 401: unknown key (***) for this workspace"


def test_connection_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    record, _ = run(handler, FakeClock())
    assert record.error_class == "connection"
    assert record.status is None


def test_timeout_mid_stream() -> None:
    clock = FakeClock()

    def stall() -> None:
        raise httpx.ReadTimeout("timed out")

    record, _ = run(lambda r: stream_response(sse([(0.1, chunk(" a"))], clock, stall)), clock)
    assert record.error_class == "timeout"
    assert record.first_token_at == pytest.approx(record.started_at + 0.1)  # the one chunk that came
    assert record.output_tokens == 1


def test_stream_cut_without_finish() -> None:
    clock = FakeClock()
    record, _ = run(lambda r: stream_response(sse([(0.1, chunk(" a")), (0.2, chunk(" b"))], clock)), clock)
    assert record.error_class == "stream_cut"


def test_connection_reset_mid_stream() -> None:
    clock = FakeClock()

    def reset() -> None:
        raise httpx.RemoteProtocolError("peer closed connection")

    record, _ = run(lambda r: stream_response(sse([(0.1, chunk(" a"))], clock, reset)), clock)
    assert record.error_class == "stream_cut"


def test_json_answer_to_a_stream_request_is_protocol_error() -> None:
    record, _ = run(lambda r: httpx.Response(200, json={"choices": []}), FakeClock())
    assert record.error_class == "protocol"


def test_non_streamed_request() -> None:
    body = {
        "choices": [{"index": 0, "message": {"content": "x y z"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3},
    }
    record, _ = run(lambda r: httpx.Response(200, json=body), FakeClock(), RequestClass(stream=False))
    assert record.ok
    assert record.first_token_at is None
    assert record.output_tokens == 3
    assert record.finish_reason == "length"
    assert record.cached_tokens is None  # the server said nothing about its prefix cache


def test_cached_tokens_reach_the_record_streamed_and_not() -> None:
    clock = FakeClock(start=10.0)
    usage = {"prompt_tokens": 40, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 32}}
    events = [
        (0.1, chunk(" a", "length")),
        (0.11, orjson.dumps({"choices": [], "usage": usage})),
        (0.12, b"[DONE]"),
    ]
    record, _ = run(lambda r: stream_response(sse(events, clock)), clock)
    assert record.ok and (record.prompt_tokens, record.cached_tokens) == (40, 32)
    body = {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "length"}], "usage": usage}
    record, _ = run(lambda r: httpx.Response(200, json=body), FakeClock(), RequestClass(stream=False))
    assert record.ok and (record.prompt_tokens, record.cached_tokens) == (40, 32)


def test_cancellation_still_emits_a_record() -> None:
    clock = FakeClock()

    def interrupt() -> None:
        raise KeyboardInterrupt

    emitted: list[RequestRecord] = []
    request = build_request(ENDPOINT, RequestClass(), "hi")
    handler = lambda r: stream_response(sse([(0.1, chunk(" a"))], clock, interrupt))  # noqa: E731
    with httpx.Client(transport=httpx.MockTransport(handler)) as client, pytest.raises(KeyboardInterrupt):
        execute_request(
            HttpxTransport(client), request, {}, clock, CTX, seq=1, scheduled_at=0.0, emit=emitted.append
        )
    assert len(emitted) == 1
    assert emitted[0].error_class == "cancelled"


def test_record_round_trip() -> None:
    clock = FakeClock()
    events = [(0.1, chunk(" a")), (0.2, chunk(" b", "stop")), (0.3, b"[DONE]")]
    record, _ = run(lambda r: stream_response(sse(events, clock)), clock)
    assert load_record(dump_record(record)) == record


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None, {"retry_after": 2}) == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after(None, None) is None
