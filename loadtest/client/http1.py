"""HTTP/1.1 on the wire, for the engine's transport: the request's bytes, the response head, the body's framing.

Pure byte work, no sockets and no gevent, so it is tested with exact values (``tests/unit/test_http1.py``) and the
engine's transport (:mod:`loadtest.engine.gevent_transport`) keeps only the I/O. What is supported is what an
OpenAI-compatible server sends to a ``POST``: a status line and headers (``1xx`` interim responses skipped), then a
body framed by ``Transfer-Encoding: chunked`` (chunk extensions and trailers ignored), by ``Content-Length``, or by
the server closing the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "MAX_HEAD_BYTES",
    "BodyReader",
    "Head",
    "HttpParseError",
    "Origin",
    "format_request",
    "parse_head",
]

MAX_HEAD_BYTES = 65536  # a response head (status line and headers) longer than this is refused
_MAX_SIZE_LINE = 1024  # a chunk-size line longer than this is refused
_HEX = b"0123456789abcdefABCDEF"


class HttpParseError(ValueError):
    """The server's bytes are not HTTP/1.1 this client understands."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host, port, and the ``Host`` header to send."""

    tls: bool
    host: str
    port: int
    host_header: str

    @staticmethod
    def of(url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        default = 443 if tls else 80
        port = parts.port or default
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return Origin(tls, host, port, shown if port == default else f"{shown}:{port}")


def request_target(url: str) -> str:
    """The request line's target: the URL's path and query (``/`` when it has none)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def format_request(target: str, host_header: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The bytes of ``POST target`` with ``body``: ``Host``, ``Content-Length``, JSON and SSE ``Content-Type`` /
    ``Accept`` unless ``headers`` name their own, then ``headers``. A header name or value holding CR or LF is
    refused (it would split the request)."""
    fields = {
        "content-type": "Content-Type: application/json",
        "accept": "Accept: text/event-stream, application/json",
    }
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} holds a line break")
        fields[name.lower()] = f"{name}: {value}"
    fields.pop("host", None)
    fields.pop("content-length", None)
    head = "\r\n".join(
        (
            f"POST {target} HTTP/1.1",
            f"Host: {host_header}",
            f"Content-Length: {len(body)}",
            *fields.values(),
        )
    )
    return head.encode("latin-1") + b"\r\n\r\n" + body


@dataclass(frozen=True, slots=True)
class Head:
    """A response's status line and headers (names lower-cased; a repeated header keeps its last value)."""

    status: int
    headers: dict[str, str]
    keep_alive: bool

    def body_reader(self) -> BodyReader:
        """The de-framer for this response's body (none for 204 and 304, which never have one)."""
        if self.status in (204, 304):
            return BodyReader(BodyReader.LENGTH, 0)
        encoding = self.headers.get("transfer-encoding", "").lower()
        if "chunked" in encoding:
            return BodyReader(BodyReader.CHUNKED)
        length = self.headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                raise HttpParseError(f"bad Content-Length: {length[:40]!r}") from None
            if size < 0:
                raise HttpParseError(f"bad Content-Length: {length[:40]!r}")
            return BodyReader(BodyReader.LENGTH, size)
        return BodyReader(BodyReader.UNTIL_CLOSE)


def parse_head(buffer: bytes) -> tuple[Head, bytes] | None:
    """The first final response head in ``buffer`` and the bytes after it, or None while it is incomplete.

    ``1xx`` interim responses (``100 Continue``, ``103 Early Hints``) before it are skipped. Raises
    :class:`HttpParseError` for bytes that are not an HTTP/1.x response head, or a head over
    :data:`MAX_HEAD_BYTES`."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise HttpParseError("response head too long")
            if buffer[:7] != b"HTTP/1."[: len(buffer[:7])]:
                raise HttpParseError(f"not an HTTP/1.x response: {buffer[:40]!r}")
            return None
        lines = buffer[:end].split(b"\r\n")
        rest = buffer[end + 4 :]
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpParseError(f"bad status line: {lines[0][:60]!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            buffer = rest
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name.strip():
                raise HttpParseError(f"bad header line: {line[:60]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        connection = headers.get("connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            keep_alive = "keep-alive" in connection
        else:
            keep_alive = "close" not in connection
        return Head(status, headers, keep_alive), rest


class BodyReader:
    """Takes a body's bytes as they arrive (:meth:`feed`) and gives back its content, framing removed, as soon as
    it is known — part of a chunk included, so a token is never held back waiting for the rest of its chunk.

    ``complete`` turns True at the body's end (for a body that ends when the server closes, when
    :meth:`end_of_stream` is told). Bytes after the end are ignored. Malformed framing raises
    :class:`HttpParseError`."""

    CHUNKED, LENGTH, UNTIL_CLOSE = 0, 1, 2
    __slots__ = ("_need_crlf", "_pending", "_remaining", "_trailer", "complete", "mode")

    def __init__(self, mode: int, length: int = 0) -> None:
        self.mode = mode
        self._remaining = length if mode == BodyReader.LENGTH else 0
        self._pending = b""  # chunked: framing bytes not yet complete (a size line, a CRLF)
        self._need_crlf = False
        self._trailer = False
        self.complete = mode == BodyReader.LENGTH and length == 0

    def feed(self, data: bytes) -> bytes:
        """The content in ``data`` (may be empty)."""
        if self.complete:
            return b""
        if self.mode == BodyReader.LENGTH:
            piece = data[: self._remaining]
            self._remaining -= len(piece)
            self.complete = self._remaining == 0
            return piece
        if self.mode == BodyReader.UNTIL_CLOSE:
            return data
        return self._chunked(data)

    def end_of_stream(self) -> None:
        """The server closed the connection: the end of a body that runs until close; a cut for any other."""
        if self.mode == BodyReader.UNTIL_CLOSE:
            self.complete = True

    def _chunked(self, data: bytes) -> bytes:
        if not (self._pending or self._remaining or self._need_crlf or self._trailer):
            # a paced server's read: exactly one whole chunk, "SIZE\r\nDATA\r\n"
            line_end = data.find(b"\r\n", 0, 10)
            if line_end > 0 and not data[:line_end].strip(_HEX):  # hex digits only: int() cannot fail
                end = line_end + 2 + int(data[:line_end], 16)
                if len(data) == end + 2 and end > line_end + 2 and data[end:] == b"\r\n":
                    return data[line_end + 2 : end]
        raw = self._pending + data if self._pending else data
        out: list[bytes] = []
        pos, size = 0, len(raw)
        find = raw.find
        while pos < size:
            if not (self._remaining or self._need_crlf or self._trailer):
                # the common case first: a whole chunk, "SIZE\r\nDATA\r\n" (a paced server's read holds one, a
                # server writing a whole answer at once many); anything else takes the steps below
                line_end = find(b"\r\n", pos, pos + _MAX_SIZE_LINE)
                if line_end > pos and not raw[pos:line_end].strip(_HEX):  # hex digits only: int() cannot fail
                    chunk = int(raw[pos:line_end], 16)
                    end = line_end + 2 + chunk
                    if chunk and end + 2 <= size:
                        if raw[end : end + 2] != b"\r\n":
                            raise HttpParseError("chunk not followed by CRLF")
                        out.append(raw[line_end + 2 : end])
                        pos = end + 2
                        continue
            if self._remaining:
                piece = raw[pos : pos + self._remaining]
                out.append(piece)
                pos += len(piece)
                self._remaining -= len(piece)
                if self._remaining:
                    break
                self._need_crlf = True
            if self._need_crlf:
                if size - pos < 2:
                    break
                if raw[pos : pos + 2] != b"\r\n":
                    raise HttpParseError("chunk not followed by CRLF")
                pos += 2
                self._need_crlf = False
                continue
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                if size - pos > _MAX_SIZE_LINE:
                    raise HttpParseError("chunk-size line too long")
                break
            line = raw[pos:line_end]
            pos = line_end + 2
            if self._trailer:
                if not line:  # the empty line after the last chunk (and any trailers)
                    self.complete = True
                    break
                continue
            digits = line.split(b";", 1)[0].strip()
            if not digits or digits.strip(_HEX):
                raise HttpParseError(f"bad chunk size: {line[:40]!r}")
            chunk = int(digits, 16)
            if chunk == 0:
                self._trailer = True
            else:
                self._remaining = chunk
        self._pending = b"" if self.complete else raw[pos:]
        return out[0] if len(out) == 1 else b"".join(out)
