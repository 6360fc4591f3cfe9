"""The engine's HTTP transport behind the :class:`~loadtest.client.execute.Transport` seam: HTTP/1.1 over gevent's
event loop, a stream's bytes read in the loop itself.

Why not a library's ``readline``: a real server paces a stream one chunk per packet, so every chunk costs a wake-up.
Through geventhttpclient that is a greenlet switch in and out, a parser callback and two ``readline`` calls per
chunk; at 1,000 paced streams (~50,000 chunks/s) that alone filled the engine's core and made every timestamp late
(docs/performance.md). Here a streamed body is read by a callback on the connection's I/O watcher, run by the loop
the moment the socket is readable: it takes whatever bytes are there, removes the HTTP framing
(:class:`loadtest.client.http1.BodyReader`) and hands them to the SSE parser, which reads the clock once for them —
no greenlet switch per chunk; the user's greenlet sleeps until the stream ends. Request bytes, the response head and
non-streamed bodies go the ordinary cooperative way.

One connection pool per engine process, shared by all of its users (last in, first out). A pooled keep-alive
connection the server has closed is noticed before it is used (a non-blocking peek), and a request whose reused
connection fails before any response byte is sent again on a fresh one (llama.cpp closes after every stream while
advertising keep-alive). ``https`` is TLS through :class:`ssl.MemoryBIO` (the callback must never block), verified
against ``$SSL_CERT_FILE`` or certifi's bundle, as the control path's httpx does. Failures are mapped to
:class:`TransportFailure` kinds (``timeout``, ``stream_cut``, ``connection``).

Part of the engine's gevent door: imported only in ``python -m loadtest.engine``, after
:mod:`loadtest.engine.roles` has monkey-patched the process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as stdlib_socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.socket
from gevent.event import Event
from gevent.monkey import get_original

from loadtest import __version__
from loadtest.client.execute import TransportFailure
from loadtest.client.http1 import (
    BodyReader,
    Head,
    HttpParseError,
    Origin,
    format_request,
    parse_head,
    request_target,
)

__all__ = ["STALE_RETRIES", "GeventResponse", "GeventTransport"]

STALE_RETRIES = 2
DRAIN_S = 1.0  # how long the loop waits for the rest of a body after [DONE]
_READ = 65536
_Socket: Any = get_original("socket", "socket")  # the real, non-blocking socket: callbacks must never switch


class _ReadTimeout(Exception):
    pass


class _Closed(Exception):
    """The server closed the connection (end of stream)."""


def _tls_context() -> ssl.SSLContext:
    bundle = os.environ.get("SSL_CERT_FILE")
    if not bundle:
        try:
            import certifi

            bundle = certifi.where()
        except ImportError:
            bundle = None
    return ssl.create_default_context(cafile=bundle)


class _Connection:
    """One socket (plain, or TLS through memory BIOs), non-blocking; cooperative reads and writes for the greenlet
    that owns it, :meth:`read_ready` for the loop's callback."""

    __slots__ = ("fd", "incoming", "outgoing", "reused", "sock", "tls", "unsent")

    def __init__(self, sock: Any, tls: ssl.SSLObject | None, incoming: Any, outgoing: Any) -> None:
        self.sock = sock
        self.fd: int = sock.fileno()
        self.tls = tls
        self.incoming = incoming
        self.outgoing = outgoing
        self.reused = False
        # TLS bytes the loop's callback could not send without waiting (sent before the next write)
        self.unsent = b""

    @staticmethod
    def open(origin: Origin, context: ssl.SSLContext | None, timeout: float) -> _Connection:
        with gevent.Timeout(timeout, _ReadTimeout):  # the name's lookup counts in the connect timeout
            family, kind, proto, _, address = gevent.socket.getaddrinfo(
                origin.host, origin.port, type=stdlib_socket.SOCK_STREAM
            )[0]
        sock = _Socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                raise OSError(code, os.strerror(code))
            gevent.socket.wait_write(sock.fileno(), timeout=timeout, timeout_exc=_ReadTimeout())
            code = sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            if context is None:
                return _Connection(sock, None, None, None)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname=origin.host)
            conn = _Connection(sock, tls, incoming, outgoing)
            conn.handshake(time.monotonic() + timeout)
            return conn
        except BaseException:
            sock.close()
            raise

    def handshake(self, deadline: float) -> None:
        assert self.tls is not None
        while True:
            try:
                self.tls.do_handshake()
                self._flush(deadline)
                return
            except ssl.SSLWantReadError:
                self._flush(deadline)
                data = self._recv_raw(deadline)
                if not data:
                    raise _Closed from None
                self.incoming.write(data)

    def _wait(self, wait: Callable[..., None], deadline: float) -> None:
        """Until the socket is ready (``gevent.socket.wait_read`` / ``wait_write``), or :class:`_ReadTimeout` at
        ``deadline`` (monotonic)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _ReadTimeout
        wait(self.fd, timeout=remaining, timeout_exc=_ReadTimeout())

    def _recv_raw(self, deadline: float) -> bytes:
        while True:
            try:
                return self.sock.recv(_READ)  # type: ignore[no-any-return]
            except BlockingIOError:
                self._wait(gevent.socket.wait_read, deadline)

    def _send_raw(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                self._wait(gevent.socket.wait_write, deadline)

    def _flush(self, deadline: float) -> None:
        if self.outgoing is not None and (self.unsent or self.outgoing.pending):
            data, self.unsent = self.unsent + self.outgoing.read(), b""
            self._send_raw(data, deadline)

    def sendall(self, data: bytes, deadline: float) -> None:
        if self.tls is None:
            self._send_raw(data, deadline)
            return
        self.tls.write(data)
        self._flush(deadline)

    def recv(self, deadline: float) -> bytes:
        """Application bytes, waiting cooperatively until ``deadline`` (monotonic); b"" when the server closed."""
        while True:
            got = self.read_ready()
            if got is not None:
                return got
            self._wait(gevent.socket.wait_read, deadline)

    def read_ready(self) -> bytes | None:
        """Application bytes available now, without blocking or switching: None when there are none yet (a
        spurious wake-up, or part of a TLS record), b"" when the server closed."""
        if self.tls is None:
            try:
                return self.sock.recv(_READ)  # type: ignore[no-any-return]
            except BlockingIOError:
                return None
        try:
            data = self.sock.recv(_READ)
        except BlockingIOError:
            data = None
        if data is not None:
            if not data:
                return b""
            self.incoming.write(data)
        parts: list[bytes] = []
        try:
            while True:
                piece = self.tls.read(_READ)
                if not piece:
                    break
                parts.append(piece)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            if not parts:
                return b""
        if self.outgoing.pending or self.unsent:  # e.g. a TLS 1.3 key update answered: sent now if it can be,
            self.unsent += self.outgoing.read()  # else kept for the next write — never dropped
            with contextlib.suppress(BlockingIOError):
                self.unsent = self.unsent[self.sock.send(self.unsent) :]
        return b"".join(parts) if parts else None

    def stale(self) -> bool:
        """Whether the server has closed this idle connection (or sent something unasked)."""
        try:
            self.sock.recv(1, stdlib_socket.MSG_PEEK)
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


class GeventResponse:
    """One response: its head read; its body read cooperatively (:meth:`read`) or by the loop (:meth:`stream`)."""

    def __init__(
        self, transport: GeventTransport, conn: _Connection, head: Head, rest: bytes, read_timeout: float
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._head = head
        self._body = head.body_reader()
        self._rest = rest
        self._read_timeout = read_timeout
        self.status: int = head.status

    def header(self, name: str) -> str | None:
        return self._head.headers.get(name.lower())

    def read(self) -> bytes:
        conn, body = self._conn, self._body
        assert conn is not None
        parts = [body.feed(self._rest)] if self._rest else []
        self._rest = b""
        try:
            while not body.complete:
                data = conn.recv(time.monotonic() + self._read_timeout)
                if not data:
                    body.end_of_stream()
                    if not body.complete:
                        raise TransportFailure("stream_cut", "body broken: the server closed the connection")
                    break
                parts.append(body.feed(data))
        except _ReadTimeout:
            raise TransportFailure("timeout", "no data within the read timeout") from None
        except HttpParseError as exc:
            raise TransportFailure("stream_cut", f"body broken: {exc}") from None
        except OSError as exc:
            raise TransportFailure("stream_cut", f"body broken: {type(exc).__name__}") from None
        return b"".join(parts)

    def _reusable(self) -> bool:
        """Whether the connection may serve another request: the body read to its end, and the server keeps it."""
        body = self._body
        return body.complete and body.mode != BodyReader.UNTIL_CLOSE and self._head.keep_alive

    def stream(self, on_data: Callable[[bytes], bool]) -> None:
        """Hand each read's content to ``on_data`` (in the event loop's callback) until it returns True or the body
        ends. Raises :class:`TransportFailure` for a cut, a timeout (no byte for the read timeout), or broken
        framing.

        When ``on_data`` has seen enough (``[DONE]``) before the body's last chunk arrived, the callback hands the
        connection over to a drain at once — this response no longer owns it — and wakes the caller; the loop reads
        the rest of the body on its own (up to :data:`DRAIN_S`), then puts the connection back in the pool, or
        closes it. Servers often write the closing chunk as a packet of its own."""
        conn, body = self._conn, self._body
        assert conn is not None
        try:
            if self._rest:
                content = body.feed(self._rest)
                self._rest = b""
                if content and on_data(content):
                    return
        except HttpParseError as exc:
            raise TransportFailure("stream_cut", f"stream broken: {exc}") from None
        if body.complete:
            return
        done = Event()
        loop = gevent.get_hub().loop
        watcher = loop.io(conn.fd, 1)
        state = _Stream(time.monotonic())

        def end_drain() -> (
            None
        ):  # the drain is over, whichever way: the connection back to the pool, or closed
            if state.drain_over:
                return
            state.drain_over = True
            watcher.stop()
            loop.run_callback(watcher.close)  # not from inside its own callback
            if state.timer is not None:
                state.timer.stop()
                state.timer.close()
            if self._reusable() and not state.drain_failed:
                self._transport.release(conn)
            else:
                conn.close()

        def drain() -> None:  # the rest of a body after [DONE]; its content is not wanted
            try:
                data = conn.read_ready()
                if data is None:
                    return
                if data:
                    body.feed(data)
                else:
                    body.end_of_stream()
                    state.drain_failed = True
            except BaseException:
                state.drain_failed = True
            if body.complete or state.drain_failed:
                end_drain()

        def readable() -> None:
            if state.draining:
                drain()
                return
            try:
                data = conn.read_ready()
                if data is None:
                    return
                if not data:
                    body.end_of_stream()
                    if not body.complete:
                        state.failure = TransportFailure(
                            "stream_cut", "stream broken: the server closed the connection"
                        )
                else:
                    state.last = time.monotonic()
                    content = body.feed(data)
                    if content and on_data(content) and not body.complete:
                        state.draining = True  # from here on the drain owns the connection and this watcher
                        self._conn = None
                        watcher.ref = False  # a drain never keeps the process alive
                        state.timer = loop.timer(DRAIN_S, ref=False)
                        state.timer.start(end_drain)
                        done.set()
                        return
                    if not body.complete:
                        return
            except HttpParseError as exc:
                state.failure = TransportFailure("stream_cut", f"stream broken: {exc}")
            except OSError as exc:
                state.failure = TransportFailure("stream_cut", f"stream broken: {type(exc).__name__}")
            except BaseException as exc:  # never lost in the loop: raised in the user's greenlet
                state.failure = exc
            watcher.stop()
            done.set()

        watcher.start(readable)
        try:
            while not done.wait(max(0.0, state.last + self._read_timeout - time.monotonic())):
                if time.monotonic() - state.last >= self._read_timeout:
                    raise TransportFailure("timeout", "no data within the read timeout mid-stream")
        finally:
            if not state.draining:
                watcher.stop()
                watcher.close()
        if state.failure is not None:
            raise state.failure

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:  # never opened, already closed, or handed over to a drain
            return
        if self._reusable():
            self._transport.release(conn)
        else:  # never hand a half-read connection back to the pool
            conn.close()


class _Stream:
    """What one streamed body's callbacks share with the greenlet waiting for it."""

    __slots__ = ("drain_failed", "drain_over", "draining", "failure", "last", "timer")

    def __init__(self, now: float) -> None:
        self.last = now  # when the last bytes came (monotonic): the read timeout counts from it
        self.failure: BaseException | None = None
        self.draining = False  # [DONE] seen before the body's end: a drain owns the connection
        self.drain_over = False
        self.drain_failed = False
        self.timer: Any = None


class GeventTransport:
    """HTTP/1.1 with one connection pool shared by every user in this process.

    ``connect_timeout`` bounds the name lookup, the connect and the TLS handshake; ``read_timeout`` bounds the wait
    from sending a request to its response head, and then, mid-body, any silence between two reads."""

    def __init__(self, base_url: str, concurrency: int, connect_timeout: float, read_timeout: float) -> None:
        self.origin = Origin.of(base_url)
        self.context = _tls_context() if self.origin.tls else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle: list[_Connection] = []
        self.limit = 2 * max(1, concurrency)  # a user may have one connection in use and one still draining
        self.user_agent = f"loadtest/{__version__}"
        self._targets: dict[str, str] = {}

    def _acquire(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.stale():
                conn.reused = True
                return conn
            conn.close()
        try:
            return _Connection.open(self.origin, self.context, self.connect_timeout)
        except _ReadTimeout:
            raise TransportFailure("timeout", "connect timeout") from None
        except _Closed:
            raise TransportFailure(
                "connection", "connection failed: closed during the TLS handshake"
            ) from None
        except ssl.SSLError as exc:
            raise TransportFailure("connection", f"connection failed: TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None

    def release(self, conn: _Connection) -> None:
        if len(self.idle) < self.limit:
            self.idle.append(conn)
        else:
            conn.close()

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> GeventResponse:
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = request_target(url)
        try:
            data = format_request(
                target, self.origin.host_header, body, {"User-Agent": self.user_agent, **headers}
            )
        except ValueError as exc:  # a header that would split the request: never sent
            raise TransportFailure("client_error", f"request not sent: {exc}") from None
        for attempt in range(STALE_RETRIES + 1):
            conn = self._acquire()
            buffer = b""
            try:
                deadline = time.monotonic() + self.read_timeout
                conn.sendall(data, deadline)
                while True:
                    got = conn.recv(deadline)
                    if not got:
                        raise _Closed
                    buffer = buffer + got if buffer else got
                    parsed = parse_head(buffer)
                    if parsed is not None:
                        return GeventResponse(self, conn, parsed[0], parsed[1], self.read_timeout)
            except (_Closed, ConnectionError, ssl.SSLEOFError) as exc:
                conn.close()
                # A pooled keep-alive connection the server had already closed: nothing reached the server, so
                # send again on a fresh one. A fresh connection that fails so is the server's doing.
                if not conn.reused or attempt == STALE_RETRIES or buffer:
                    what = "closed" if isinstance(exc, _Closed) else type(exc).__name__
                    raise TransportFailure(
                        "connection", f"connection failed: {what} before the response"
                    ) from None
            except _ReadTimeout:
                conn.close()
                raise TransportFailure("timeout", "timeout before the response headers") from None
            except HttpParseError as exc:
                conn.close()
                raise TransportFailure("connection", f"connection failed: {exc}") from None
            except OSError as exc:
                conn.close()
                raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")
