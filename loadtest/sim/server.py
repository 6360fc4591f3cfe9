"""The simulated endpoint: a real HTTP/1.1 server (stdlib asyncio) in front of the batching model.

Paths (``{name}`` is any Databricks endpoint name, or only ``SimConfig.endpoint_name`` when it is set):

- OpenAI / vLLM: ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``; ``GET /v1/models``,
  ``/metrics`` (Prometheus text, vLLM metric names), ``/health``.
- Databricks: ``POST /serving-endpoints/chat/completions`` (also ``/completions`` and ``/embeddings``; the body's
  ``model`` is ``{name}``), ``POST /serving-endpoints/{name}/invocations`` (chat if the body has ``messages``,
  completions if ``prompt``, embeddings if ``input``), ``GET /api/2.0/serving-endpoints/{name}``: the endpoint with
  its PT band (:mod:`loadtest.sim.config`: ``replicas × throughput_chunk_size`` unless a band is given), the chunk
  being one replica's saturated tokens/s (input + output) at the reference mix 2048 in / 256 out
  (:func:`loadtest.model.predict.reference_chunk_size`). Model-unit architectures report ``provisioned_model_units``
  instead, at 65 tok/s per unit at 3500 in / 300 out (the published 50 MU ≈ 3,250 tok/s point); a pay-per-token
  endpoint reports its quotas. ``GET /api/2.0/serving-endpoints/get-model-optimization-info/{model}/{version}``
  (:mod:`loadtest.sim.documents`).
- ``POST /oidc/v1/token`` when OAuth is configured (:mod:`loadtest.sim.oauth`).
- ``GET /sim/stats``: the JSON of :meth:`SimServer.stats`; ``GET /sim/timings``: the event loop's lateness samples
  and each recent request's arrival, model first-token time and write time, raw (:mod:`loadtest.sim.timing`).

Errors: unknown path 404, wrong method 405, bad JSON or fields 400 as ``{"error": {"message", "type":
"invalid_request_error"}}`` (Databricks paths answer ``{"error_code", "message"}`` as Databricks does), 401 when
``api_token`` or OAuth is set and ``Authorization: Bearer <token>`` is missing, wrong or expired (``/health``,
``/metrics``, ``/sim/stats``, ``/sim/timings`` and ``/oidc/v1/token`` stay open; tokens and secrets are never
echoed). In pay-per-token mode a request over a quota gets 429 with ``Retry-After`` (:mod:`loadtest.sim.quota`);
injected faults are in :mod:`loadtest.sim.faults`. Every response carries ``x-request-id``.
Prompt tokens: :mod:`loadtest.sim.tokens`. Output length is ``max_tokens`` (or ``max_completion_tokens``; default
16) and always ends with ``finish_reason: "length"`` (ignore_eos).

Streaming is shaped like vLLM's OpenAI server: ``text/event-stream`` over chunked transfer; ``data: <json>\\n\\n``
events; for chat a role chunk (``delta: {"role": "assistant", "content": ""}``) goes out with the first token; one
chunk per token, the last with ``finish_reason``; a ``choices: []`` usage chunk only with
``stream_options.include_usage``; then ``data: [DONE]``.

Performance: one timer per replica step for its whole batch, at absolute deadlines (``t_{k+1} = t_k + step_k``, so
lateness does not accumulate; more than 0.25 s behind, it resyncs and counts it in ``stats()``); the next step is
planned when the timer fires, the step's first tokens are written at once and its other tokens 64 per turn of the
event loop, oldest step first, so that a batch of hundreds of streams (5-10 µs of socket write each) never holds the
loop for its whole length: requests are read and other replicas' steps end in between; a chunk is two pre-encoded byte
strings around the token's word (no JSON encoding per token); a client that disconnects is dropped from its batch. The
listen backlog is 4,096, so thousands of clients may connect at once. Measured in ``docs/performance.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any, Final, TextIO

from loadtest.errors import PortInUseError
from loadtest.sim.app import App
from loadtest.sim.config import SimConfig
from loadtest.sim.http11 import Connection

__all__ = ["SimServer", "run_sim_foreground"]

# connections waiting to be accepted: asyncio's default (100) makes thousands of clients that connect at once (a
# load test's start) wait for SYN retries, a second or more; the kernel caps it at net.core.somaxconn
_BACKLOG: Final = 4096


class SimServer:
    """The simulator, either in a background thread (:meth:`start` / :meth:`stop`, or ``with SimServer(cfg) as s``)
    or in the foreground (:meth:`serve_forever`, until SIGINT/SIGTERM)."""

    def __init__(self, config: SimConfig | None = None, *, clock: Callable[[], float] | None = None) -> None:
        """``clock`` (default: the event loop's) times PPT quotas and OAuth token expiry; tests inject a fake."""
        self.config = config or SimConfig()
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._app: App | None = None
        self._port = 0

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the simulator is not listening")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._app = loop, App(self.config, loop, self._clock)
        app = self._app
        try:
            self._server = await loop.create_server(
                lambda: Connection(app), self.config.host, self.config.port, backlog=_BACKLOG
            )
        except OSError as exc:
            raise PortInUseError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror}"
            ) from None
        self._port = self._server.sockets[0].getsockname()[1]
        app.start_monitor()

    async def _close(self) -> None:
        if self._app is not None:
            self._app.cancel_timers()
            for conn in list(self._app.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._port = 0

    def start(self) -> SimServer:
        """Listen in a background thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to the caller of start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close())
                loop.close()

        self._thread = threading.Thread(target=main, name="loadtest-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            self._thread.join()
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop the background server and join its thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def serve_forever(self, ready_stream: TextIO | None = None) -> None:
        """Serve in the foreground until SIGINT or SIGTERM; writes ``listening on <url>`` to ``ready_stream``."""

        async def main() -> None:
            await self._open()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                if ready_stream is not None:
                    ready_stream.write(f"listening on {self.url}\n")
                    ready_stream.flush()
                await stop.wait()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                await self._close()

        asyncio.run(main())

    def stats(self) -> dict[str, Any]:
        """Counters: requests received/completed/cancelled, by path and status, tokens, running, waiting, lag;
        429s by ``limit_type`` (``rate_limited``), quota usage, injected faults by kind, OAuth tokens issued."""
        app, loop = self._app, self._loop
        if app is None or loop is None:
            raise RuntimeError("the simulator has not started")
        if self._thread is None or threading.current_thread() is self._thread:
            return app.snapshot()

        async def snap() -> dict[str, Any]:
            return app.snapshot()

        return asyncio.run_coroutine_threadsafe(snap(), loop).result(timeout=10)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sim_foreground(config: SimConfig, ready_stream: TextIO) -> None:
    """The CLI's entry: bind, write one ``listening on http://HOST:PORT`` line, serve until SIGINT/SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        SimServer(config).serve_forever(ready_stream)
