"""OpenAI-shaped answers of the simulator, as vLLM's OpenAI server shapes them.

- Chat stream: a role chunk ``{"delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason":
  null}`` (sent together with the first token, as vLLM does), one ``chat.completion.chunk`` per token with
  ``delta.content``, the last one with ``"finish_reason": "length", "stop_reason": null``; with
  ``stream_options.include_usage`` a final chunk ``"choices": [], "usage": {...}``; then ``data: [DONE]``.
- Completions stream: ``text_completion`` chunks with ``choices[0].text`` (and ``stop_reason``), same ending.
- Non-streaming: ``chat.completion`` / ``text_completion`` with ``usage``; embeddings ``{"object": "list", ...}``.
- With a prefix cache (:mod:`loadtest.sim.prefix`) a generation's ``usage`` ends with
  ``"prompt_tokens_details": {"cached_tokens": N}`` (``N`` may be 0), as vLLM and OpenAI report it; without one (or
  for embeddings) it has no such key. A finished generation's answer enters that cache as the next turn will send it
  back (:meth:`Generation.answer_blocks`).

Per token the stream writes ``pre + word + post`` framed as one HTTP chunk: ``pre``/``post`` are cut once per
request from a JSON template around a sentinel, so no JSON is encoded per token.

A streamed generation may carry a :class:`~loadtest.sim.faults.FaultPlan`; it strikes when token
``after_tokens + 1`` is ready (the rules are in :mod:`loadtest.sim.faults`). Every generation tells its host once how
many tokens it produced (``release``), whether it finished, was cut, errored or was cancelled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson

from loadtest.sim.batching import TokenEvent
from loadtest.sim.faults import FaultPlan
from loadtest.sim.http11 import Connection, HttpError
from loadtest.sim.prefix import Continuation, block_hashes
from loadtest.sim.tokens import (
    DEFAULT_RULE,
    TokenRule,
    TokenText,
    chat_prompt_pieces,
    embedding_vector,
    prompt_pieces,
    split_inputs,
    text_pieces,
)

__all__ = ["EmbeddingJob", "Generation", "GenerationParams", "Host", "parse_embedding", "parse_generation"]


class Host(Protocol):
    """What a job needs from the application."""

    model: str
    text: TokenText
    token_rule: TokenRule
    loop: asyncio.AbstractEventLoop

    def new_seq_id(self) -> int: ...

    def finish(
        self, conn: Connection, request_id: str, body: bytes | None, completed: bool = True
    ) -> None: ...

    def drop(self, seq_ids: list[int]) -> None: ...

    def release(self, seq_id: int, produced: int) -> None: ...

    def abandon(self, seq_id: int, produced: int) -> None: ...

    def count_fault(self, kind: str) -> None: ...


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """A generation's parsed body; ``blocks`` its prompt's block hashes when a prefix cache will look them up, and
    ``continuation`` what hashing the prompt continued by its answer takes (``None``: the answer is not cached)."""

    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool
    blocks: tuple[int, ...] | None = None
    continuation: Continuation | None = None


def _positive_int(body: dict[str, Any], *names: str, default: int) -> int:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HttpError(400, f"'{name}' must be a positive integer")
        return value
    return default


def parse_generation(
    body: dict[str, Any],
    chat: bool,
    context: int,
    reject_stream_options: bool = False,
    rule: TokenRule = DEFAULT_RULE,
    prefix_cache: bool = False,
) -> GenerationParams:
    """Validate a chat or completions body; ``HttpError(400)`` with an OpenAI-style message when it is wrong.
    ``rule``: how prompt tokens are counted (:class:`loadtest.sim.tokens.TokenRule`); ``prefix_cache``: also hash
    the prompt's blocks (:func:`loadtest.sim.prefix.block_hashes`) and keep what its answer's take
    (:class:`loadtest.sim.prefix.Continuation`; not for a prompt of token ids)."""
    blocks: tuple[int, ...] | None = None
    continuation: Continuation | None = None
    try:
        if chat and prefix_cache:
            pieces = chat_prompt_pieces(body.get("messages"))
            content = rule.scale(len(pieces))
            prompt = content + rule.template_tokens
            blocks = block_hashes(pieces, content, rule.template_tokens, rule.tokens_per_word)
            continuation = Continuation.of(blocks, pieces, content, rule.tokens_per_word)
        elif chat:
            prompt = rule.chat(body.get("messages"))
        else:
            items = split_inputs(body.get("prompt"), "prompt", rule)
            if len(items) != 1:
                raise ValueError("send one prompt per request")
            prompt = items[0][1]
            if prefix_cache:
                ids = prompt_pieces(body.get("prompt"))
                text = ids and isinstance(ids[0], str)
                per_piece = rule.tokens_per_word if text else 1.0
                blocks = block_hashes(ids, prompt, 0, per_piece)
                if text:  # a string's pieces (token ids get no continuation: see loadtest.sim.prefix)
                    continuation = Continuation.of(blocks, cast("list[str]", ids), prompt, per_piece)
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    out = _positive_int(body, "max_tokens", "max_completion_tokens", default=16)
    if _positive_int(body, "n", default=1) != 1:
        raise HttpError(400, "only n=1 is supported")
    stream, options = body.get("stream") or False, body.get("stream_options")
    if reject_stream_options and options is not None:
        raise HttpError(400, "ValidationException: extraneous key [stream_options] is not permitted")
    if not isinstance(stream, bool) or not isinstance(options, dict | None):
        raise HttpError(400, "'stream' must be a boolean and 'stream_options' an object")
    if prompt + out > context:
        raise HttpError(
            400,
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt + out} tokens ({prompt} in the messages, {out} in the completion).",
        )
    usage = bool(options and options.get("include_usage"))
    return GenerationParams(prompt, out, stream, usage, blocks, continuation)


def parse_embedding(
    body: dict[str, Any],
    rule: TokenRule = DEFAULT_RULE,
) -> list[tuple[str, int]]:
    """The ``input`` of an embeddings body as ``(text, tokens)`` items; ``HttpError(400)`` when it is wrong."""
    try:
        return split_inputs(body.get("input"), "input", rule)
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None


class Generation:
    """One chat or completions request: one sequence of the batching model, streamed or answered whole at its end."""

    def __init__(
        self,
        host: Host,
        conn: Connection,
        request_id: str,
        chat: bool,
        params: GenerationParams,
        fault: FaultPlan | None = None,
    ) -> None:
        self.host, self.conn, self.request_id, self.chat, self.params = host, conn, request_id, chat, params
        self.fault = fault if params.stream and fault is not None and fault.in_stream else None
        self.emitted = 0  # tokens the client has been sent (or, non-streamed, produced)
        self.cached_tokens = 0  # prompt tokens its replica's prefix cache held (set when it is admitted)
        self.held: list[bytes] | None = None  # frames buffered during a stall
        self.done_while_held = self.cancelled = False
        self._timer: asyncio.TimerHandle | None = None
        self.seq_id = host.new_seq_id()
        self.offset = TokenText.offset(self.seq_id)
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.created = int(time.time())
        self.role = self.pre = self.post = self.post_last = b""
        if params.stream:
            self._prepare_stream()

    def _chunk(self, choice: dict[str, Any] | None, usage: dict[str, Any] | None = None) -> bytes:
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

    def _usage(self, completion: int) -> dict[str, Any]:
        prompt = self.params.prompt_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
        }
        if self.params.blocks is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage

    def answer_blocks(self, n: int) -> tuple[int, ...]:
        """The block hashes of the prompt's content continued by the first ``n`` generated tokens, as the next request
        will hash them when it sends them back: for chat, the pieces of ``messages + [{"role": "assistant",
        "content": text}]`` (the text the stream's chunks join to; the same tokenizer as a request's), for
        completions those of ``prompt + text`` (:meth:`loadtest.sim.prefix.Continuation.blocks`). Only with a
        :attr:`GenerationParams.continuation`."""
        continuation = self.params.continuation
        assert continuation is not None
        text = self.host.text.text(self.offset, n)
        if self.chat:
            more = chat_prompt_pieces([{"role": "assistant", "content": text}])
        else:
            more = text_pieces(text)
        content = self.host.token_rule.scale(continuation.pieces + len(more))
        return continuation.blocks(more, content)

    def on_token(self, event: TokenEvent) -> None:
        n = event.tokens
        if self.params.stream:
            if self.fault is not None and n > self.fault.after_tokens and self._strike(self.fault):
                return
            payload = self.pre + self.host.text.word(self.offset, n - 1)
            payload += self.post_last if event.finished else self.post
            if n == 1:
                payload = self.role + payload
            if not event.finished:
                frame = b"%x\r\n%b\r\n" % (len(payload), payload)
            else:
                if self.params.include_usage:
                    payload += self._chunk(None, self._usage(n))
                payload += b"data: [DONE]\n\n"
                frame = b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload)
            self.emitted = n
            if self.held is not None:
                self.held.append(frame)
                self.done_while_held = event.finished
                return
            self.conn.write(frame)
            if event.finished:
                self._complete()
        elif event.finished:
            self.emitted = n
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
            self.host.release(self.seq_id, n)
            self.host.finish(self.conn, self.request_id, orjson.dumps(body))

    def _complete(self) -> None:
        self.host.release(self.seq_id, self.emitted)
        self.host.finish(self.conn, self.request_id, None)

    def _strike(self, fault: FaultPlan) -> bool:
        """Apply the stream fault now; True when the response ended here."""
        self.fault = None
        host = self.host
        host.count_fault(fault.kind)
        if fault.kind == "stream_cut":
            host.abandon(self.seq_id, self.emitted)
            self.conn.abort()
            return True
        if fault.kind == "error_event":
            host.abandon(self.seq_id, self.emitted)
            error = {
                "message": "Injected fault: the model failed mid-stream",
                "type": "server_error",
                "code": 500,
            }
            payload = b"data: " + orjson.dumps({"error": error}) + b"\n\ndata: [DONE]\n\n"
            self.conn.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload))
            host.finish(self.conn, self.request_id, None, completed=False)
            return True
        if fault.kind == "garbage_line":
            payload = b"this line is not server-sent events\n\n"
            self.conn.write(b"%x\r\n%b\r\n" % (len(payload), payload))
        else:  # stall
            self.held = []
            self._timer = host.loop.call_later(fault.stall_s, self._resume)
        return False

    def _resume(self) -> None:
        held, self.held, self._timer = self.held, None, None
        if self.cancelled or held is None:
            return
        self.conn.write(b"".join(held))
        if self.done_while_held:
            self._complete()

    def cancel(self) -> None:
        self.cancelled = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.host.drop([self.seq_id])
        self.host.release(self.seq_id, self.emitted)


class EmbeddingJob:
    """One embeddings request: each input is a prefill-only sequence; answered when all are done."""

    def __init__(self, host: Host, conn: Connection, request_id: str, inputs: list[tuple[str, int]]) -> None:
        self.host, self.conn, self.request_id, self.inputs = host, conn, request_id, inputs
        self.seq_ids = [host.new_seq_id() for _ in inputs]
        self.pending = set(self.seq_ids)

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
