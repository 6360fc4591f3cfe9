"""HTTP/1.1 bytes for the engine's transport: the request, the response head, the body's framing — exact values."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.client.http1 import (
    BodyReader,
    HttpParseError,
    Origin,
    format_request,
    parse_head,
    request_target,
)


def test_origin_and_host_header() -> None:
    assert Origin.of("http://127.0.0.1:8000/v1") == Origin(False, "127.0.0.1", 8000, "127.0.0.1:8000")
    assert Origin.of("https://adb-1.azuredatabricks.net/serving-endpoints") == Origin(
        True, "adb-1.azuredatabricks.net", 443, "adb-1.azuredatabricks.net"
    )
    assert Origin.of("http://[::1]:9/x").host_header == "[::1]:9"
    with pytest.raises(ValueError, match="not an http"):
        Origin.of("ftp://x/y")


def test_request_bytes() -> None:
    assert request_target("http://h:1/v1/chat/completions?a=b") == "/v1/chat/completions?a=b"
    assert request_target("http://h:1") == "/"
    got = format_request("/v1/x", "h:1", b'{"a":1}', {"Authorization": "Bearer t", "accept": "text/plain"})
    assert got == (
        b"POST /v1/x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 7\r\nContent-Type: application/json\r\n"
        b"accept: text/plain\r\nAuthorization: Bearer t\r\n\r\n"
        b'{"a":1}'
    )


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        format_request("/", "h", b"", {"X-A": "1\r\nX-Injected: 2"})


def test_head_incomplete_then_complete_with_the_body_bytes_after_it() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Request-Id: r1\r\nX-Request-Id: r2\r\n\r\ndata"
    assert parse_head(raw[:20]) is None
    parsed = parse_head(raw)
    assert parsed is not None
    head, rest = parsed
    assert (head.status, head.keep_alive, rest) == (200, True, b"data")
    assert head.headers == {"content-type": "text/event-stream", "x-request-id": "r2"}


def test_interim_responses_are_skipped_and_connection_close_is_seen() -> None:
    parsed = parse_head(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nConnection: close\r\n\r\n")
    assert parsed is not None
    assert (parsed[0].status, parsed[0].keep_alive) == (429, False)
    http10 = parse_head(b"HTTP/1.0 200 OK\r\n\r\n")
    assert http10 is not None and not http10[0].keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"x" * 70000,
    ],
)
def test_what_is_not_an_http_head_is_refused(raw: bytes) -> None:
    with pytest.raises(HttpParseError):
        parse_head(raw)


def _head(extra: bytes) -> BodyReader:
    parsed = parse_head(b"HTTP/1.1 200 OK\r\n" + extra + b"\r\n")
    assert parsed is not None
    return parsed[0].body_reader()


def test_chunked_body_byte_by_byte_gives_the_content_as_soon_as_it_arrives() -> None:
    wire = b"7\r\ndata: a\r\n3;ext=1\r\n\n\n\n\r\n0\r\nTrailer: x\r\n\r\nGARBAGE"
    body = _head(b"Transfer-Encoding: chunked\r\n")
    got = []
    for i in range(len(wire)):
        got.append(body.feed(wire[i : i + 1]))
        if body.complete:
            break
    assert b"".join(got) == b"data: a\n\n\n"
    assert got[:4] == [b"", b"", b"", b"d"]  # the first content byte comes out with the byte that carried it
    assert body.complete
    assert body.feed(b"more") == b""


def test_chunked_body_in_one_read() -> None:
    body = _head(b"Transfer-Encoding: chunked\r\n")
    assert body.feed(b"2\r\nab\r\nA\r\n0123456789\r\n0\r\n\r\n") == b"ab0123456789"
    assert body.complete


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\n",
        b"-5\r\nabcde\r\n",
        b"0x3\r\nabc\r\n",
        b"+3\r\nabc\r\n",
        b"5 5\r\n",
        b"2\r\nabXX",
        b"1" * 2000,
    ],
)
def test_bad_chunk_framing_is_refused(wire: bytes) -> None:
    body = _head(b"Transfer-Encoding: chunked\r\n")
    with pytest.raises(HttpParseError):
        body.feed(wire)


def test_content_length_body_stops_at_its_length() -> None:
    body = _head(b"Content-Length: 5\r\n")
    assert body.feed(b"abc") == b"abc"
    assert not body.complete
    assert body.feed(b"defgh") == b"de"
    assert body.complete
    assert _head(b"Content-Length: 0\r\n").complete
    with pytest.raises(HttpParseError):
        _head(b"Content-Length: -1\r\n")


def test_no_content_has_no_body_whatever_it_says() -> None:
    parsed = parse_head(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert parsed is not None and parsed[0].body_reader().complete


def test_a_body_without_framing_runs_until_the_server_closes() -> None:
    body = _head(b"")
    assert body.feed(b"abc") == b"abc"
    assert not body.complete
    body.end_of_stream()
    assert body.complete
    chunked = _head(b"Transfer-Encoding: chunked\r\n")
    chunked.end_of_stream()
    assert not chunked.complete  # a chunked body cut by the server is not complete


@settings(max_examples=300, derandomize=True, database=None)
@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    st.lists(st.integers(0, 400), max_size=10),
    st.booleans(),
)
def test_a_chunked_body_split_into_any_reads_gives_back_exactly_its_content(
    chunks: list[bytes], cuts: list[int], extension: bool
) -> None:
    ext = b";x=1" if extension else b""
    wire = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks) + b"0\r\n\r\n"
    body = _head(b"Transfer-Encoding: chunked\r\n")
    bounds = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    got = b"".join(body.feed(wire[a:b]) for a, b in itertools.pairwise(bounds))
    assert got == b"".join(chunks)
    assert body.complete
