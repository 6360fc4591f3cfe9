"""The :class:`~loadtest.client.execute.Transport` seam over httpx: probes, the control plane and unit tests.

Unit tests pass ``httpx.Client(transport=httpx.MockTransport(handler))`` and need no server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from loadtest.client.execute import TransportFailure

__all__ = ["HttpxTransport", "default_timeout"]


def default_timeout(connect_s: float = 10.0, read_s: float = 120.0) -> httpx.Timeout:
    """Generation can be slow: never use httpx's 5 s default read timeout for completions."""
    return httpx.Timeout(connect=connect_s, read=read_s, write=30.0, pool=30.0)


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        value = self._response.headers.get(name)
        return None if value is None else str(value)

    def stream(self, on_data: Callable[[bytes], bool]) -> None:
        try:
            for block in self._response.iter_raw():
                if block and on_data(block):
                    return
        except httpx.TimeoutException as exc:
            raise TransportFailure("timeout", f"read timeout mid-stream ({type(exc).__name__})") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError) as exc:
            raise TransportFailure("stream_cut", f"stream broken: {type(exc).__name__}") from None

    def read(self) -> bytes:
        try:
            return self._response.read()
        except httpx.TimeoutException:
            raise TransportFailure("timeout", "read timeout") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError) as exc:
            raise TransportFailure("stream_cut", f"body broken: {type(exc).__name__}") from None

    def close(self) -> None:
        self._response.close()


class HttpxTransport:
    """One shared ``httpx.Client`` (connection pool); never one client per simulated user."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> _HttpxResponse:
        request = self.client.build_request(
            "POST", url, content=body, headers={"content-type": "application/json", **headers}
        )
        try:
            return _HttpxResponse(self.client.send(request, stream=True))
        except httpx.ConnectTimeout:
            raise TransportFailure("timeout", "connect timeout") from None
        except httpx.TimeoutException:
            raise TransportFailure("timeout", "timeout before the response headers") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None
