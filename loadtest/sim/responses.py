"""OpenAI-shaped answers of the simulator, as vLLM's OpenAI server shapes them.

- Chat stream: a role chunk ``{"delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason":
  null}`` (sent together with the first token, as vLLM does), one ``chat.completion.chunk`` per token with
  ``delta.content``, the last one with ``"finish_reason": "length", "stop_reason": null``; with
  ``stream_options.include_usage`` a final chunk ``"choices": [], "usage": {...}``; then ``data: [DONE]``.
- Completions stream: ``text_completion`` chunks with ``choices[0].text`` (and ``stop_reason``), same ending.
- Non-streaming: ``chat.completion`` / ``text_completion`` with ``usage``; embeddings ``{"object": "list", ...}``.

Per token the stream writes ``pre + word + post`` framed as one HTTP chunk: ``pre``/``post`` are cut once per
request from a JSON template around a sentinel, so no JSON is encoded per token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from loadtest.sim.engine import TokenEvent
from loadtest.sim.http11 import Connection, HttpError
from loadtest.sim.tokens import TokenText, chat_prompt_tokens, embedding_vector, split_inputs

__all__ = ["EmbeddingJob", "Generation", "GenerationParams", "Host", "parse_embedding", "parse_generation"]


class Host(Protocol):
    """What a job needs from the application."""

    model: str
    text: TokenText

    def new_engine_id(self) -> int: ...

    def finish(self, conn: Connection, request_id: str, body: bytes | None) -> None: ...

    def drop(self, engine_ids: list[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class GenerationParams:
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool


def _positive_int(body: dict[str, Any], *names: str, default: int) -> int:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HttpError(400, f"'{name}' must be a positive integer")
        return value
    return default


def parse_generation(body: dict[str, Any], chat: bool, context: int) -> GenerationParams:
    """Validate a chat or completions body; ``HttpError(400)`` with an OpenAI-style message when it is wrong."""
    try:
        if chat:
            prompt = chat_prompt_tokens(body.get("messages"))
        else:
            items = split_inputs(body.get("prompt"), "prompt")
            if len(items) != 1:
                raise ValueError("send one prompt per request")
            prompt = items[0][1]
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    out = _positive_int(body, "max_tokens", "max_completion_tokens", default=16)
    if _positive_int(body, "n", default=1) != 1:
        raise HttpError(400, "only n=1 is supported")
    stream, options = body.get("stream") or False, body.get("stream_options")
    if not isinstance(stream, bool) or not isinstance(options, dict | None):
        raise HttpError(400, "'stream' must be a boolean and 'stream_options' an object")
    if prompt + out > context:
        raise HttpError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt + out} tokens ({prompt} in the messages, {out} in the completion).",
        )
    return GenerationParams(prompt, out, stream, bool(options and options.get("include_usage")))


def parse_embedding(body: dict[str, Any]) -> list[tuple[str, int]]:
    """The ``input`` of an embeddings body as ``(text, tokens)`` items; ``HttpError(400)`` when it is wrong."""
    try:
        return split_inputs(body.get("input"), "input")
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None


class Generation:
    """One chat or completions request: one engine sequence, streamed or answered whole at its end."""

    def __init__(
        self, host: Host, conn: Connection, request_id: str, chat: bool, params: GenerationParams
    ) -> None:
        self.host, self.conn, self.request_id, self.chat, self.params = host, conn, request_id, chat, params
        self.engine_id = host.new_engine_id()
        self.offset = TokenText.offset(self.engine_id)
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.created = int(time.time())
        self.role = self.pre = self.post = self.post_last = b""
        if params.stream:
            self._prepare_stream()

    def _chunk(self, choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.host.model,
            "choices": [choice] if choice is not None else [],
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def _prepare_stream(self) -> None:
        if self.chat:
            role = {"role": "assistant", "content": ""}
            self.role = self._chunk({"index": 0, "delta": role, "logprobs": None, "finish_reason": None})
            choice: dict[str, Any] = {"index": 0, "delta": {"content": "\x00"}, "logprobs": None}
            choice["finish_reason"] = None
        else:
            choice = {
                "index": 0,
                "text": "\x00",
                "logprobs": None,
                "finish_reason": None,
                "stop_reason": None,
            }
        self.pre, self.post = self._chunk(choice).split(b"\\u0000")
        choice.update(finish_reason="length", stop_reason=None)
        self.post_last = self._chunk(choice).split(b"\\u0000")[1]

    def _usage(self, completion: int) -> dict[str, int]:
        prompt = self.params.prompt_tokens
        return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}

    def on_token(self, event: TokenEvent) -> None:
        n = event.tokens
        if self.params.stream:
            payload = self.pre + self.host.text.word(self.offset, n - 1)
            payload += self.post_last if event.finished else self.post
            if n == 1:
                payload = self.role + payload
            if not event.finished:
                self.conn.write(b"%x\r\n%b\r\n" % (len(payload), payload))
                return
            if self.params.include_usage:
                payload += self._chunk(None, self._usage(n))
            payload += b"data: [DONE]\n\n"
            self.conn.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload))
            self.host.finish(self.conn, self.request_id, None)
        elif event.finished:
            text = self.host.text.text(self.offset, n)
            choice: dict[str, Any] = {"index": 0}
            if self.chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choice.update(logprobs=None, finish_reason="length", stop_reason=None)
            body = {
                "id": self.id,
                "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created,
                "model": self.host.model,
                "choices": [choice],
                "usage": self._usage(n),
            }
            self.host.finish(self.conn, self.request_id, orjson.dumps(body))

    def cancel(self) -> None:
        self.host.drop([self.engine_id])


class EmbeddingJob:
    """One embeddings request: each input is a prefill-only sequence; answered when all are done."""

    def __init__(self, host: Host, conn: Connection, request_id: str, inputs: list[tuple[str, int]]) -> None:
        self.host, self.conn, self.request_id, self.inputs = host, conn, request_id, inputs
        self.engine_ids = [host.new_engine_id() for _ in inputs]
        self.pending = set(self.engine_ids)

    def on_token(self, event: TokenEvent) -> None:
        self.pending.discard(event.request_id)
        if self.pending:
            return
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_vector(text)}
            for i, (text, _) in enumerate(self.inputs)
        ]
        tokens = sum(n for _, n in self.inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        body = {"object": "list", "data": data, "model": self.host.model, "usage": usage}
        self.host.finish(self.conn, self.request_id, orjson.dumps(body))

    def cancel(self) -> None:
        self.host.drop(list(self.pending))
