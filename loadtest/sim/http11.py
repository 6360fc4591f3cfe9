"""Minimal HTTP/1.1 on an asyncio ``Protocol``: request line, headers, ``Content-Length`` bodies, keep-alive and
pipelining (one request at a time per connection), responses with ``Content-Length`` or chunked SSE.

No chunked request bodies (411), heads up to 64 KiB (431), bodies up to 16 MiB (413).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from loadtest.sim.batching import TokenEvent

__all__ = ["Connection", "Handler", "HttpError", "Job", "Request", "error_body"]

_REASONS: Final = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip
_MAX_HEAD: Final = 65536
_MAX_BODY: Final = 16 * 1024 * 1024


class HttpError(Exception):
    """An error answer: HTTP status, message, OpenAI error ``type`` and Databricks ``error_code``; extra response
    ``headers``; ``detail`` replaces the OpenAI-shaped ``error`` object when given."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str = "BAD_REQUEST",
        *,
        headers: Sequence[tuple[str, str]] = (),
        detail: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code
        self.headers, self.detail = tuple(headers), detail


@dataclass(slots=True)
class Request:
    """One parsed request; the application fills ``request_id`` and ``databricks``."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    request_id: str = ""
    databricks: bool = False


class Job(Protocol):
    """A request waiting on the batching model: it receives its sequences' token events and can be cancelled."""

    def on_token(self, event: TokenEvent) -> None: ...

    def cancel(self) -> None: ...


class Handler(Protocol):
    """What a connection needs from the application."""

    connections: set[Connection]

    def handle(self, conn: Connection, req: Request) -> None: ...

    def reject(self, conn: Connection, status: int, message: str) -> None: ...

    def count_status(self, status: int) -> None: ...


class Connection(asyncio.Protocol):
    """HTTP/1.1: request line, headers, Content-Length body, keep-alive; one request at a time (pipelined ones wait)."""

    def __init__(self, app: Handler) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.active: Job | None = None
        self.keep_alive = True
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        if self.active is not None:
            self.active.cancel()
            self.active = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._drain()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def respond(
        self,
        status: int,
        body: bytes,
        request_id: str,
        content_type: str = "application/json",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nx-request-id: {request_id}\r\n{extra}"
            f"connection: {'keep-alive' if self.keep_alive else 'close'}\r\n\r\n"
        )
        self.write(head.encode() + body)
        self.app.count_status(status)
        self.done()

    def start_stream(self, request_id: str) -> None:
        self.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nx-request-id: %b\r\nconnection: %b\r\n\r\n"
            % (request_id.encode(), b"keep-alive" if self.keep_alive else b"close")
        )

    def done(self) -> None:
        """The current response is complete: close, or go on with the next buffered request."""
        self.active = None
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            self.closed = True

    def abort(self) -> None:
        """Drop the connection mid-response (no terminating chunk); the current job is not cancelled again."""
        self.active = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _drain(self) -> None:
        while self.active is None and not self.closed:
            request = self._parse()
            if request is None:
                return
            self.app.handle(self, request)

    def _parse(self) -> Request | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._reject(431, "request headers too large")
            return None
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._reject(400, "malformed header line")
                return None
            headers[name.strip().lower()] = value.strip()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._reject(400, "malformed request line")
            return None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._reject(411, "chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._reject(400, "invalid Content-Length")
            return None
        if length > _MAX_BODY or length < 0:
            self._reject(413, "request body too large")
            return None
        total = end + 4 + length
        if len(buf) < total:
            return None
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        connection = headers.get("connection", "").lower()
        self.keep_alive = connection == "keep-alive" if parts[2] == "HTTP/1.0" else connection != "close"
        return Request(parts[0], parts[1].partition("?")[0], headers, body)

    def _reject(self, status: int, message: str) -> None:
        self.keep_alive = False
        self.app.reject(self, status, message)


def error_body(err: HttpError, databricks: bool) -> bytes:
    """OpenAI shape ``{"error": {...}}`` (``err.detail`` if set), or Databricks shape ``{"error_code", "message"}``."""
    if databricks:
        return orjson.dumps({"error_code": err.code, "message": str(err)})
    if err.detail is not None:
        return orjson.dumps({"error": err.detail})
    return orjson.dumps({"error": {"message": str(err), "type": err.kind, "param": None, "code": err.status}})
