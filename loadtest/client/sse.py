"""Incremental, tolerant parsing of an OpenAI-style Server-Sent-Events stream, with timing.

This module knows nothing about HTTP libraries: :class:`SseParser` takes the stream's bytes as the socket gave them
(any number of lines, or part of one) and a clock, so the load path (the engine's transport, from its event loop),
the control path (httpx) and the unit tests (a list of lines and a fake clock, :func:`consume_sse`) share one
implementation.

Timing rules (``docs/metrics.md``):

* the clock is read once per read from the socket, as soon as the bytes are handed over and before they are parsed;
  every line those bytes complete carries that reading (lines that arrived together were received together);
* the *first token* is the first chunk whose ``delta.content`` / ``delta.reasoning_content`` / ``text`` is non-empty
  (vLLM's role chunk ``"content": ""`` and llama.cpp's ``"content": null`` do not count);
* every later non-empty content chunk counts as one client-side token and adds one inter-chunk gap.

Every chunk is decoded with orjson: at 1.2 µs a chunk that is cheaper than the byte checks a "fast path" once used
to skip decoding ordinary chunks (76 µs for a 64-chunk stream against 125–211 µs, docs/performance.md), and it is
right by construction. A request chosen as a sample (a few per class, :mod:`loadtest.rundir.samples`) passes
``content``: then each chunk's text is collected as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from loadtest.client.scrub import redact

__all__ = ["SseParser", "StreamOutcome", "consume_sse", "count_text_tokens", "parse_completion_body"]


@dataclass(slots=True)
class StreamOutcome:
    """What one stream said, and when. ``error`` is ``(error_class, detail)`` or None; ``cached_tokens`` is
    ``usage.prompt_tokens_details.cached_tokens`` (None when the server did not say)."""

    first_token_at: float | None = None
    last_token_at: float | None = None
    content_chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    saw_done: bool = False
    error: tuple[str, str] | None = None
    gaps: list[float] | None = field(default=None)
    response_id: str | None = None
    cached_tokens: int | None = None

    @property
    def complete(self) -> bool:
        """A stream is complete when it ended with ``[DONE]`` or announced a finish reason."""
        return self.saw_done or self.finish_reason is not None


def _content_of(choice: dict[str, Any]) -> str | None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        text = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
        if text:
            return str(text)
        return None
    text = choice.get("text")
    return str(text) if text else None


def _absorb(out: StreamOutcome, obj: Any, content: list[str] | None = None) -> bool:
    """Fold one decoded chunk into ``out`` (and its text into ``content``, when given). Returns True when the chunk
    carried content."""
    if not isinstance(obj, dict):
        out.error = out.error or ("protocol", "SSE data is not a JSON object")
        return False
    if "error" in obj and "choices" not in obj:
        err = obj["error"]
        message = err.get("message") if isinstance(err, dict) else err
        out.error = out.error or ("server_error", redact(f"error event in stream: {message}"))
        return False
    if out.response_id is None and isinstance(obj.get("id"), str):
        out.response_id = obj["id"]
    usage = obj.get("usage")
    if isinstance(usage, dict):
        if usage.get("prompt_tokens") is not None:
            out.prompt_tokens = int(usage["prompt_tokens"])
        if usage.get("completion_tokens") is not None:
            out.completion_tokens = int(usage["completion_tokens"])
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            cached = details.get("cached_tokens")
            if isinstance(cached, int) and not isinstance(cached, bool):
                out.cached_tokens = cached
    has_content = False
    choices = obj.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            text = _content_of(choice)
            if text is not None:
                has_content = True
                if content is not None:
                    content.append(text)
            reason = choice.get("finish_reason")
            if reason:
                out.finish_reason = str(reason)
    return has_content


class SseParser:
    """Takes a stream's bytes as they arrive — whatever one read returned, any number of lines or part of one —
    and folds them into :attr:`out`, reading the clock once per :meth:`feed`: every line completed by those bytes
    is stamped with that reading. Never raises for bad content: a garbage line or bad JSON becomes
    ``error=("protocol", ...)`` and reading goes on so the connection is drained."""

    __slots__ = ("_clock", "_content", "_gaps", "_last", "_partial", "out")

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        keep_gaps: bool = True,
        into: StreamOutcome | None = None,
        content: list[str] | None = None,
    ) -> None:
        self.out = into if into is not None else StreamOutcome()
        self._gaps: list[float] | None = [] if keep_gaps else None
        self.out.gaps = self._gaps
        self._clock = clock
        self._content = content
        self._last = 0.0
        self._partial = b""

    def feed(self, data: bytes) -> bool:
        """Fold in the bytes one read returned; True once ``[DONE]`` was seen (the rest need not be read)."""
        now = self._clock()
        if self._partial:
            data = self._partial + data
        elif (
            data[-2:] == b"\n\n" and data.count(b"\n") == 2
        ):  # the common read: one event, as paced servers send
            return self.line(data[:-2], now)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        line = self.line
        for raw in lines:  # noqa: SIM110 — a plain loop: any() over a generator costs more per line
            if raw and line(raw, now):  # the blank line ending each event needs no call
                return True
        return False

    def finish(self) -> None:
        """The body ended: a last line without a line break still counts."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self.line(partial, self._clock())

    def line(self, raw: bytes, now: float) -> bool:
        """Fold in one line received at ``now``; True for ``[DONE]``."""
        out = self.out
        if (
            raw[:7] == b"data: {"
        ):  # the common line first: a JSON chunk (orjson allows the trailing whitespace)
            payload = raw[6:]
        else:
            found = self._payload(raw)
            if found is None:
                return False
            payload = found
            if payload == b"[DONE]":
                out.saw_done = True
                return True
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if out.error is None:
                out.error = ("protocol", "invalid JSON in SSE data line")
            return False
        if _absorb(out, obj, self._content):
            if out.first_token_at is None:
                out.first_token_at = now
            elif self._gaps is not None:
                self._gaps.append(now - self._last)
            self._last = now
            out.last_token_at = now
            out.content_chunks += 1
        return False

    def _payload(self, raw: bytes) -> bytes | None:
        """A ``data:`` line's payload, or None for a line that carries none (blank, comment, other fields, or not
        SSE — which is noted as a protocol error)."""
        out = self.out
        line = raw.strip()
        if not line or line[:1] == b":":
            return None
        if line[:5] != b"data:":
            if line[:6] in (b"event:", b"retry:") or line[:3] == b"id:":
                return None
            if out.error is None:
                out.error = (
                    "protocol",
                    redact("non-SSE line in stream: " + line[:60].decode("utf-8", "replace")),
                )
            return None
        return line[5:].lstrip()


def consume_sse(
    lines: Iterable[bytes],
    clock: Callable[[], float],
    *,
    keep_gaps: bool = True,
    into: StreamOutcome | None = None,
    content: list[str] | None = None,
) -> StreamOutcome:
    """Read an SSE stream given line by line to its end and return what it said, each line stamped with a clock
    reading taken as it is handed over; with ``content``, append each chunk's text to it.

    The same rules as :class:`SseParser` (which the transports feed with whole reads). Transport exceptions raised
    by ``lines`` propagate to the caller; pass ``into`` to keep what was read before such an exception.
    """
    parser = SseParser(clock, keep_gaps=keep_gaps, into=into, content=content)
    for raw in lines:
        if parser.line(raw, clock()):
            break
    return parser.out


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_text_tokens(text: str) -> int:
    """Client-side token estimate: pieces matching ``\\w+|[^\\w\\s]`` (the simulator's rule; a fallback only)."""
    return len(_TOKEN_RE.findall(text))


def parse_completion_body(body: bytes, content: list[str] | None = None) -> tuple[StreamOutcome, int]:
    """Decode a non-streamed chat / completions / embeddings response.

    Returns the outcome (usage, finish reason, error) and a client-side token count of the generated text. With
    ``content``, the generated text is appended to it — for embeddings, a summary (``2 embeddings × 384
    dimensions: [0.0123, -0.0456, 0.0789, …]``).
    """
    out = StreamOutcome()
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        out.error = ("protocol", "response body is not JSON")
        return out, 0
    _absorb(out, obj)
    client_tokens = 0
    if isinstance(obj, dict):
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                message = choice.get("message")
                text = message.get("content") if isinstance(message, dict) else choice.get("text")
                if isinstance(text, str):
                    client_tokens += count_text_tokens(text)
                    if content is not None:
                        content.append(text)
        elif isinstance(obj.get("data"), list):
            if content is not None:
                content.append(_embeddings_summary(obj["data"]))
        elif out.error is None:
            out.error = ("protocol", "response has neither 'choices' nor 'data'")
    return out, client_tokens


def _embeddings_summary(data: list[Any]) -> str:
    """``2 embeddings × 384 dimensions: [0.0123, -0.0456, 0.0789, …]`` (the first vector's first values), or
    ``1 embedding (base64, 2048 characters)``."""
    vectors = [d.get("embedding") for d in data if isinstance(d, dict)]
    noun = "embedding" if len(vectors) == 1 else "embeddings"
    first = vectors[0] if vectors else None
    if isinstance(first, str):
        return f"{len(vectors)} {noun} (base64, {len(first)} characters)"
    values = first if isinstance(first, list) else []
    shown = ", ".join(f"{v:.4g}" if isinstance(v, int | float) else repr(v) for v in values[:3])
    more = ", …" if len(values) > 3 else ""
    return f"{len(vectors)} {noun} × {len(values)} dimensions: [{shown}{more}]"
