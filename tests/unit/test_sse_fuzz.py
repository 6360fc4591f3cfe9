"""The SSE parser and the body parser under hypothesis: whatever a server sends, no exception escapes them, their
invariants hold, and a well-formed stream's tokens, text and gaps are exactly those the server sent.

Deterministic: hypothesis runs with a fixed seed (``derandomize``) and no example database, so CI sees the same
examples every time; the example counts keep the module to a few seconds.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.client.sse import SseParser, StreamOutcome, consume_sse, parse_completion_body

FUZZ = settings(
    max_examples=250, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# dictionaries shaped like chunks, with wrong types where a server could put them
keys = st.sampled_from(
    ["choices", "usage", "id", "error", "delta", "content", "text", "finish_reason", "object"]
)
chunkish = st.recursive(
    json_values,
    lambda inner: st.dictionaries(keys, inner, max_size=5) | st.lists(inner, max_size=3),
    max_leaves=16,
)


def _clock() -> Any:
    ticks = itertools.count()
    return lambda: float(next(ticks))


def _check(out: StreamOutcome, reads: bool = False) -> None:
    """The outcome's invariants; with ``reads``, lines that came in one read share its clock reading (gap 0)."""
    assert out.content_chunks >= 0
    if out.content_chunks:
        assert out.first_token_at is not None and out.last_token_at is not None
        assert out.first_token_at <= out.last_token_at
    assert out.gaps is None or (
        len(out.gaps) == max(out.content_chunks - 1, 0) and min(out.gaps, default=1) >= (0 if reads else 1e-9)
    )
    assert out.error is None or (isinstance(out.error[0], str) and isinstance(out.error[1], str))


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=12))
def test_no_byte_sequence_makes_the_stream_parser_raise(lines: list[bytes]) -> None:
    for content in (None, list[str]()):
        _check(consume_sse(lines, _clock(), content=content))


@FUZZ
@given(st.lists(chunkish, max_size=10), st.booleans())
def test_no_json_a_server_sends_makes_the_stream_parser_raise(chunks: list[Any], spaced: bool) -> None:
    lines = [
        b"data: " + orjson.dumps(c) if not spaced else b"data:" + orjson.dumps(c) + b"\r\n" for c in chunks
    ]
    for content in (None, list[str]()):
        _check(consume_sse([*lines, b"data: [DONE]"], _clock(), content=content))


@FUZZ
@given(st.binary(max_size=200) | chunkish.map(orjson.dumps))
def test_no_body_makes_the_body_parser_raise(body: bytes) -> None:
    out, tokens = parse_completion_body(body, [])
    assert tokens >= 0 and (out.error is None or isinstance(out.error[1], str))


# well-formed OpenAI streams: a role chunk, content chunks (some empty or null), a finish chunk, maybe usage
piece = st.one_of(st.text(max_size=6), st.none(), st.just(""))


@st.composite
def openai_stream(draw: st.DrawFn) -> tuple[list[bytes], list[str | None], dict[str, int] | None]:
    lines = [
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
    ]
    pieces = draw(st.lists(piece, max_size=12))
    for text in pieces:
        chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        lines.append(b"data: " + orjson.dumps(chunk))
    lines.append(b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}')
    usage = None
    if draw(st.booleans()):
        usage = {"prompt_tokens": draw(st.integers(0, 9999)), "completion_tokens": draw(st.integers(0, 9999))}
        lines.append(b"data: " + orjson.dumps({"id": "c1", "choices": [], "usage": usage}))
    lines.append(b"data: [DONE]")
    return lines, pieces, usage


@FUZZ
@given(openai_stream())
def test_a_well_formed_stream_says_exactly_what_the_server_sent(
    stream: tuple[list[bytes], list[str | None], dict[str, int] | None],
) -> None:
    lines, pieces, usage = stream
    texts = [p for p in pieces if p]  # a null or empty content is not a token
    content: list[str] = []
    out = consume_sse(lines, _clock(), content=content)
    plain = consume_sse(lines, _clock())  # collecting the text changes nothing else
    assert out.content_chunks == plain.content_chunks == len(texts)
    assert "".join(content) == "".join(texts)
    assert out.gaps == plain.gaps and len(out.gaps or ()) == max(0, len(texts) - 1)
    assert (out.first_token_at is None) == (not texts) and out.last_token_at == plain.last_token_at
    assert (out.prompt_tokens, out.completion_tokens) == (
        (usage["prompt_tokens"], usage["completion_tokens"]) if usage else (None, None)
    )
    assert out.finish_reason == "length" and out.saw_done and out.error is None


def _feed_in_reads(data: bytes, cuts: list[int], content: list[str] | None = None) -> StreamOutcome:
    """``data`` fed to the engine's parser as reads split at ``cuts``, each read one clock tick."""
    parser = SseParser(_clock(), content=content)
    bounds = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(bounds):
        if end > start and parser.feed(data[start:end]):
            return parser.out
    parser.finish()
    return parser.out


@FUZZ
@given(openai_stream(), st.lists(st.integers(0, 4000), max_size=12))
def test_however_the_bytes_are_split_into_reads_the_stream_says_the_same(
    stream: tuple[list[bytes], list[str | None], dict[str, int] | None], cuts: list[int]
) -> None:
    lines, pieces, _usage = stream
    data = b"".join(line + b"\n\n" for line in lines)
    content: list[str] = []
    out = _feed_in_reads(data, cuts, content)
    by_line = consume_sse(lines, _clock())
    one_read = _feed_in_reads(data, [])
    for got in (out, one_read):
        assert got.content_chunks == by_line.content_chunks == len([p for p in pieces if p])
        assert (got.prompt_tokens, got.completion_tokens, got.finish_reason, got.saw_done, got.error) == (
            by_line.prompt_tokens,
            by_line.completion_tokens,
            by_line.finish_reason,
            by_line.saw_done,
            by_line.error,
        )
        assert len(got.gaps or ()) == len(by_line.gaps or ())
    assert "".join(content) == "".join(p for p in pieces if p)
    # a read stamps every line it completes with one clock reading: in one read, every gap is 0
    assert all(g == 0 for g in one_read.gaps or ())


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=12), st.lists(st.integers(0, 1000), max_size=8))
def test_no_bytes_split_any_way_make_the_engine_parser_raise(lines: list[bytes], cuts: list[int]) -> None:
    data = b"\n".join(lines)
    _check(_feed_in_reads(data, cuts), reads=True)
    _check(_feed_in_reads(data + b"\n", cuts), reads=True)
