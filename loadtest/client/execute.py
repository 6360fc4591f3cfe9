"""Send one prepared request through a transport and turn whatever happens into exactly one record.

The seam is :class:`Transport` — one method, ``send(url, body, headers) -> RawResponse`` — implemented by the
engine's own HTTP/1.1 on gevent's loop in the Locust engine and over httpx for probes and unit tests. Transports
translate their failures into :class:`TransportFailure` with one of the record's error classes; everything else
(HTTP status, SSE content, usage, timing) is decided here, once.

A request chosen as a sample (a few per class; :mod:`loadtest.rundir.samples`) is sent with a :class:`Capture`: it
collects the response's text (which costs decoding every chunk, so only those few requests do) and keeps an error
response's body. Every other request goes through the same path with ``capture=None``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from loadtest.client.clock import Clock
from loadtest.client.protocol import PreparedRequest
from loadtest.client.records import ErrorClass, RequestRecord
from loadtest.client.scrub import header_secrets, redact
from loadtest.client.sse import SseParser, StreamOutcome, parse_completion_body

__all__ = [
    "Capture",
    "RawResponse",
    "RecordContext",
    "Transport",
    "TransportFailure",
    "classify_status",
    "execute_request",
    "parse_retry_after",
]


class TransportFailure(Exception):
    """A failure below HTTP semantics: refused or reset connection, timeout, a body cut short."""

    def __init__(self, error_class: ErrorClass, detail: str) -> None:
        super().__init__(detail)
        self.error_class: ErrorClass = error_class
        self.detail = redact(detail)


class RawResponse(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...

    def stream(self, on_data: Callable[[bytes], bool]) -> None:
        """Hand each read's body bytes to ``on_data`` as they arrive, until it returns True or the body ends."""
        ...

    def read(self) -> bytes: ...

    def close(self) -> None: ...


class Transport(Protocol):
    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> RawResponse: ...


@dataclass(slots=True)
class Capture:
    """What a sampled request's response said beyond its record. ``content`` (when a list) collects the text:
    streamed chunks in order, a non-streamed body's content, or an embeddings summary; None collects nothing.
    ``error_body`` is the body of a response that failed without a stream to read: an HTTP error, a response that
    is not the event stream asked for, or a non-streamed body that is not a valid answer."""

    content: list[str] | None = None
    error_body: bytes | None = None
    body: bytes | None = None  # a non-streamed answer's body, when collecting (a flow's embeddings read it)


@dataclass(frozen=True, slots=True)
class RecordContext:
    run_id: str
    stage: str
    endpoint: str
    worker: str
    keep_gaps: bool = True


def classify_status(status: int) -> ErrorClass | None:
    if status < 400:
        return None
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "client_error"


def parse_retry_after(header: str | None, body: Any = None, now: float | None = None) -> float | None:
    """Seconds to wait, from a ``Retry-After`` header (seconds or HTTP date) or a Databricks/OpenAI error body
    (``{"error": {"retry_after": 15}}`` or ``{"retry_after": 15}``)."""
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(header) if header else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - (now if now is not None else time.time()))
    if isinstance(body, dict):
        for holder in (body.get("error"), body):
            if isinstance(holder, dict) and isinstance(holder.get("retry_after"), int | float):
                return float(holder["retry_after"])
    return None


def _error_detail(status: int, raw_body: bytes, secrets: list[str]) -> tuple[str, Any]:
    try:
        body: Any = orjson.loads(raw_body) if raw_body else None
    except orjson.JSONDecodeError:
        body = None
    parts = [f"HTTP {status}"]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            label = err.get("limit_type") or err.get("code") or err.get("type")
            if label:
                parts.append(str(label))
            if err.get("message"):
                parts.append(str(err["message"]))
        else:
            if body.get("error_code"):
                parts.append(str(body["error_code"]))
            message = body.get("message") or (err if isinstance(err, str) else None)
            if message:
                parts.append(str(message))
    elif raw_body:
        parts.append(raw_body[:120].decode("utf-8", "replace"))
    return redact(": ".join(parts), secrets), body


def execute_request(
    transport: Transport,
    request: PreparedRequest,
    headers: Mapping[str, str],
    clock: Clock,
    ctx: RecordContext,
    *,
    seq: int,
    scheduled_at: float,
    emit: Callable[[RequestRecord], None],
    attempt: int = 0,
    capture: Capture | None = None,
    flow: tuple[str, int] | None = None,
) -> RequestRecord:
    """Send ``request``, emit exactly one record for it and return it; with ``capture``, keep what the response
    said in it (before the record is emitted). ``flow``: the flow id and step index of a Python scenario's call.

    A ``BaseException`` that is not an ``Exception`` (greenlet kill, KeyboardInterrupt) still emits a ``cancelled``
    record before it propagates, so an interrupted run keeps every request it started.
    """
    started_at = clock()
    status: int | None = None
    outcome = StreamOutcome()
    client_tokens: int | None = None
    retry_after: float | None = None
    server_id: str | None = None
    error: tuple[ErrorClass, str] | None = None
    response: RawResponse | None = None
    try:
        try:
            response = transport.send(request.url, request.body, headers)
            status = response.status
            server_id = response.header("x-request-id")
            status_class = classify_status(status)
            if status_class is not None:
                raw_body = response.read()
                if capture is not None:
                    capture.error_body = raw_body
                detail, body = _error_detail(status, raw_body, header_secrets(headers))
                error = (status_class, detail)
                retry_after = parse_retry_after(response.header("retry-after"), body)
            elif request.stream:
                ctype = (response.header("content-type") or "").lower()
                if "event-stream" not in ctype:
                    raw_body = response.read()
                    if capture is not None:
                        capture.error_body = raw_body
                    error = (
                        "protocol",
                        redact(f"expected text/event-stream, got {ctype or 'no content-type'}"),
                    )
                else:
                    content = capture.content if capture is not None else None
                    parser = SseParser(clock, keep_gaps=ctx.keep_gaps, into=outcome, content=content)
                    response.stream(parser.feed)
                    parser.finish()
                    if outcome.error is not None:
                        error = (outcome.error[0], outcome.error[1])  # type: ignore[assignment]
                    elif not outcome.complete:
                        error = ("stream_cut", "stream ended without finish_reason or [DONE]")
            else:
                raw_body = response.read()
                content = capture.content if capture is not None else None
                if content is not None:
                    capture.body = raw_body  # type: ignore[union-attr]
                outcome, client_tokens = parse_completion_body(raw_body, content)
                if outcome.error is not None:
                    error = (outcome.error[0], outcome.error[1])  # type: ignore[assignment]
                    if capture is not None:
                        capture.error_body = raw_body
        except TransportFailure as exc:
            error = (exc.error_class, exc.detail)
        finally:
            if response is not None:
                response.close()
            if request.stream and (outcome.content_chunks or outcome.complete):
                client_tokens = outcome.content_chunks
    except BaseException:
        error = ("cancelled", "request cancelled before it completed")
        raise
    finally:  # one record, whatever happened: the cancelled one is emitted before the exception propagates
        if error is not None and headers:  # a server may echo the request's credentials in what it says
            error = (error[0], redact(error[1], header_secrets(headers)))
        record = _record(
            request,
            ctx,
            seq,
            scheduled_at,
            started_at,
            clock(),
            status,
            outcome,
            client_tokens,
            retry_after,
            server_id,
            error,
            attempt,
            flow,
        )
        emit(record)
    return record


def _record(
    request: PreparedRequest,
    ctx: RecordContext,
    seq: int,
    scheduled_at: float,
    started_at: float,
    ended_at: float,
    status: int | None,
    outcome: StreamOutcome,
    client_tokens: int | None,
    retry_after: float | None,
    server_id: str | None,
    error: tuple[ErrorClass, str] | None,
    attempt: int = 0,
    flow: tuple[str, int] | None = None,
) -> RequestRecord:
    if outcome.completion_tokens is not None:
        output_tokens: int | None = outcome.completion_tokens
        source: str | None = "usage"
    elif client_tokens is not None and (error is None or client_tokens > 0):
        output_tokens, source = client_tokens, "client"
    else:
        output_tokens, source = None, None
    gaps = outcome.gaps
    return RequestRecord(
        run_id=ctx.run_id,
        stage=ctx.stage,
        request_class=request.request_class,
        endpoint=ctx.endpoint,
        worker=ctx.worker,
        seq=seq,
        scheduled_at=scheduled_at,
        started_at=started_at,
        first_token_at=outcome.first_token_at,
        last_token_at=outcome.last_token_at,
        ended_at=ended_at,
        status=status,
        error_class=error[0] if error else None,
        error_detail=error[1] if error else None,
        retry_after_s=retry_after,
        prompt_tokens=outcome.prompt_tokens,
        output_tokens=output_tokens,
        token_source=source,  # type: ignore[arg-type]
        client_output_tokens=client_tokens,
        max_tokens=request.max_tokens,
        finish_reason=outcome.finish_reason,
        chunk_gaps=tuple(gaps) if gaps else None,
        server_request_id=server_id or outcome.response_id,
        attempt=attempt,
        asked_prompt_tokens=request.asked_prompt_tokens,
        flow_id=flow[0] if flow is not None else None,
        step_index=flow[1] if flow is not None else None,
        cached_tokens=outcome.cached_tokens,
    )
