"""SSE parsing and timing over lists of byte lines and a fake clock: no server, no sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from loadtest.client.clock import FakeClock
from loadtest.client.sse import consume_sse, count_text_tokens, parse_completion_body


def chat_chunk(content: str | None, finish: str | None = None, *, space: bool = False) -> bytes:
    obj = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": finish}],
    }
    text = orjson.dumps(obj) if not space else orjson.dumps(obj).replace(b'":', b'": ')
    return b"data: " + text + b"\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    obj = {
        "id": "chatcmpl-1",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }
    return b"data: " + orjson.dumps(obj) + b"\n"


def timed(lines: list[tuple[float, bytes]], clock: FakeClock) -> Iterator[bytes]:
    """Yield each line after moving the clock to its arrival time (seconds after start)."""
    start = clock.now
    for at, line in lines:
        clock.now = start + at
        yield line
        yield b"\n"  # SSE event separator


def vllm_stream(
    n_tokens: int, itl: float, ttft: float, include_usage: bool = True
) -> list[tuple[float, bytes]]:
    lines = [
        (
            ttft * 0.5,
            b'data: {"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            b'"logprobs":null,"finish_reason":null}]}\n',
        )
    ]
    for i in range(n_tokens):
        finish = "length" if i == n_tokens - 1 else None
        lines.append((ttft + i * itl, chat_chunk(f" w{i}", finish)))
    end = ttft + (n_tokens - 1) * itl
    if include_usage:
        lines.append((end + 0.001, usage_chunk(10, n_tokens)))
    lines.append((end + 0.002, b"data: [DONE]\n"))
    return lines


def test_first_token_is_first_nonempty_content_and_gaps_are_exact() -> None:
    clock = FakeClock(start=100.0)
    out = consume_sse(timed(vllm_stream(5, itl=0.02, ttft=0.3), clock), clock)
    assert out.first_token_at == pytest.approx(100.3)
    assert out.last_token_at == pytest.approx(100.3 + 4 * 0.02)
    assert out.content_chunks == 5
    assert out.gaps == pytest.approx([0.02] * 4)
    assert (out.prompt_tokens, out.completion_tokens) == (10, 5)
    assert out.finish_reason == "length"
    assert out.saw_done
    assert out.complete
    assert out.error is None


def test_llamacpp_null_content_first_chunk_is_not_a_token() -> None:
    clock = FakeClock()
    lines = [
        (0.1, chat_chunk(None)),
        (0.2, chat_chunk("Hi")),
        (0.25, chat_chunk("!", "stop")),
        (0.26, b"data: [DONE]\n"),
    ]
    out = consume_sse(timed(lines, clock), clock)
    assert out.first_token_at == pytest.approx(clock.now - 0.26 + 0.2)
    assert out.content_chunks == 2
    assert out.completion_tokens is None  # no usage chunk: the caller falls back to the client count


def test_null_or_missing_content_after_the_first_token_is_not_a_token() -> None:
    # found by tests/unit/test_sse_fuzz.py: a byte-check fast path (since removed) counted these as tokens
    clock = FakeClock()
    lines = [
        (0.1, chat_chunk("Hi")),
        (0.2, chat_chunk(None)),
        (0.25, chat_chunk(None, space=True)),
        (0.3, b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":null}]}\n'),
        (0.4, chat_chunk("!", "stop")),
    ]
    out = consume_sse(timed(lines, clock), clock)
    assert out.content_chunks == 2 and out.gaps == pytest.approx([0.3])


def test_spaced_json_and_empty_content_chunks_are_not_counted() -> None:
    clock = FakeClock()
    lines = [
        (0.1, chat_chunk("a", space=True)),
        (0.2, chat_chunk("", space=True)),
        (0.3, chat_chunk("b")),
        (0.4, chat_chunk(None, "stop", space=True)),
    ]
    out = consume_sse(timed(lines, clock), clock)
    assert out.content_chunks == 2
    assert out.finish_reason == "stop"
    assert out.complete
    assert not out.saw_done


def test_reasoning_content_counts_as_tokens() -> None:
    clock = FakeClock()
    chunk = (
        b'data: {"choices":[{"index":0,"delta":{"content":null,"reasoning_content":"think"},'
        b'"finish_reason":null}]}\n'
    )
    out = consume_sse(timed([(0.1, chunk), (0.2, chunk), (0.3, chat_chunk("x", "stop"))], clock), clock)
    assert out.content_chunks == 3


def test_garbage_line_and_bad_json_are_protocol_errors_but_reading_continues() -> None:
    clock = FakeClock()
    lines = [
        (0.1, chat_chunk("a")),
        (0.2, b"<html>oops</html>\n"),
        (0.3, b"data: {not json\n"),
        (0.4, chat_chunk("b", "stop")),
        (0.5, b"data: [DONE]\n"),
    ]
    out = consume_sse(timed(lines, clock), clock)
    assert out.error is not None
    assert out.error[0] == "protocol"
    assert out.content_chunks == 2
    assert out.saw_done


def test_cut_stream_is_incomplete() -> None:
    clock = FakeClock()
    out = consume_sse(timed(vllm_stream(5, 0.01, 0.1)[:3], clock), clock)
    assert not out.complete
    assert out.content_chunks == 2


def test_error_event_mid_stream() -> None:
    clock = FakeClock()
    lines = [(0.1, chat_chunk("a")), (0.2, b'data: {"error": {"message": "overloaded", "type": "server"}}\n')]
    out = consume_sse(timed(lines, clock), clock)
    assert out.error == ("server_error", "error event in stream: overloaded")


def test_comments_event_and_id_fields_are_ignored() -> None:
    clock = FakeClock()
    lines = [
        (0.0, b": keep-alive\n"),
        (0.05, b"event: message\n"),
        (0.06, b"id: 7\n"),
        (0.1, chat_chunk("a", "stop")),
        (0.2, b"data: [DONE]\n"),
    ]
    out = consume_sse(timed(lines, clock), clock)
    assert out.error is None
    assert out.content_chunks == 1


def test_keep_gaps_false_keeps_no_list() -> None:
    clock = FakeClock()
    out = consume_sse(timed(vllm_stream(4, 0.01, 0.1), clock), clock, keep_gaps=False)
    assert out.gaps is None
    assert out.content_chunks == 4


def test_completion_text_chunks() -> None:
    clock = FakeClock()
    text = b'data: {"id":"c","object":"text_completion","choices":[{"index":0,"text":" hi","finish_reason":null}]}\n'
    start = clock.now
    out = consume_sse(timed([(0.1, text), (0.2, text), (0.3, b"data: [DONE]\n")], clock), clock)
    assert out.content_chunks == 2
    assert out.first_token_at == pytest.approx(
        start + 0.1
    )  # a text completion's first "text" is its first token


def test_parse_non_streamed_body() -> None:
    body = orjson.dumps(
        {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "a b, c"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
        }
    )
    out, client = parse_completion_body(body)
    assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (7, 4, "stop")
    assert client == 4  # "a", "b", ",", "c"


def test_parse_rejects_html_and_foreign_json() -> None:
    assert parse_completion_body(b"<html></html>")[0].error == ("protocol", "response body is not JSON")
    assert parse_completion_body(b'{"hello": 1}')[0].error == (
        "protocol",
        "response has neither 'choices' nor 'data'",
    )
    embeddings = parse_completion_body(b'{"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 3}}')[0]
    assert embeddings.error is None
    assert embeddings.prompt_tokens == 3


def test_count_text_tokens_rule() -> None:
    assert count_text_tokens("the cat, sat.") == 5
    assert count_text_tokens("") == 0


def test_cached_tokens_come_from_usage_prompt_tokens_details() -> None:
    """vLLM / OpenAI / Databricks: ``usage.prompt_tokens_details.cached_tokens``; absent, null or not a count: None."""
    clock = FakeClock()
    details = {"prompt_tokens": 40, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 32}}
    lines = [
        (0.1, chat_chunk("Hi")),
        (0.2, chat_chunk("!", "length")),
        (0.21, b"data: " + orjson.dumps({"id": "x", "choices": [], "usage": details}) + b"\n"),
        (0.22, b"data: [DONE]\n"),
    ]
    out = consume_sse(timed(lines, clock), clock)
    assert (out.prompt_tokens, out.completion_tokens, out.cached_tokens) == (40, 2, 32)
    assert consume_sse(timed(vllm_stream(3, 0.01, 0.1), clock), clock).cached_tokens is None  # no details
    said: object
    for said in (None, {}, {"cached_tokens": None}, {"cached_tokens": "7"}, {"cached_tokens": True}, [3]):
        usage: dict[str, object] = {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": said}
        body = orjson.dumps({"choices": [{"index": 0, "message": {"content": "a"}}], "usage": usage})
        out, _ = parse_completion_body(body)
        assert (out.prompt_tokens, out.cached_tokens, out.error) == (5, None, None), said
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}}
    body = orjson.dumps({"choices": [{"index": 0, "message": {"content": "a"}}], "usage": usage})
    assert parse_completion_body(body)[0].cached_tokens == 0
