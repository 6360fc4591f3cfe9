"""The engine's HTTP transport: geventhttpclient behind the :class:`~loadtest.client.execute.Transport` seam.

One connection pool per engine process, shared by all of its users; a pooled keep-alive connection the server had
already closed is retried on a fresh one. Transport failures are mapped to :class:`TransportFailure` kinds
(``timeout``, ``stream_cut``, ``connection``) so :func:`~loadtest.client.execute.execute_request` classifies them.

Part of the engine's gevent door: imported only in ``python -m loadtest.engine``, after
:mod:`loadtest.engine.roles` has monkey-patched the process.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import gevent
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError
from geventhttpclient.url import URL

from loadtest.client.execute import TransportFailure

__all__ = ["STALE_RETRIES", "GeventResponse", "GeventTransport"]

STALE_RETRIES = 2


class GeventResponse:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code

    def header(self, name: str) -> str | None:
        value = self._response.get(name)
        return None if value is None else str(value)

    def lines(self) -> Iterator[bytes]:
        readline = self._response.readline
        try:
            while True:
                line = readline(b"\n")
                if not line:
                    return
                yield line
        except (TimeoutError, gevent.Timeout):
            raise TransportFailure("timeout", "no data within the read timeout mid-stream") from None
        except (HTTPConnectionClosed, HTTPParseError, OSError) as exc:
            raise TransportFailure("stream_cut", f"stream broken: {type(exc).__name__}") from None

    def read(self) -> bytes:
        try:
            return bytes(self._response.read())
        except (TimeoutError, gevent.Timeout):
            raise TransportFailure("timeout", "no data within the read timeout") from None
        except (HTTPConnectionClosed, HTTPParseError, OSError) as exc:
            raise TransportFailure("stream_cut", f"body broken: {type(exc).__name__}") from None

    def close(self) -> None:
        response = self._response
        if response.message_complete:
            response.release()
        elif response._sock is not None and response._pool is not None:
            # never hand a half-read connection back to the pool
            response._pool.release_socket(response._sock)
            response._sock = None
            response._pool = None


class GeventTransport:
    """geventhttpclient with one connection pool shared by every user in this process."""

    def __init__(self, base_url: str, concurrency: int, connect_timeout: float, read_timeout: float) -> None:
        url = URL(base_url)
        self.client = HTTPClient.from_url(
            url,
            concurrency=max(1, concurrency),
            connection_timeout=connect_timeout,
            network_timeout=read_timeout,
        )

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> GeventResponse:
        path = URL(url).request_uri
        merged = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream, application/json",
            **headers,
        }
        for attempt in range(STALE_RETRIES + 1):
            try:
                return GeventResponse(self.client.request("POST", path, body=body, headers=merged))
            except HTTPConnectionClosed as exc:
                # A pooled keep-alive connection the server had already closed (llama.cpp closes after every
                # stream while advertising keep-alive): nothing reached the server, so send again on a fresh one.
                if attempt == STALE_RETRIES:
                    raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None
            except (TimeoutError, gevent.Timeout):
                raise TransportFailure("timeout", "timeout before the response headers") from None
            except (HTTPParseError, OSError) as exc:
                raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None
        raise AssertionError("unreachable")
