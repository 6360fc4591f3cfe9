"""The prefix cache holds a finished generation's answer too, keyed as the next turn sends it back: a conversation's
next turn hits through the last full block of the previous prompt's content + answer. Driven on an event loop that
is not running (the application, no sockets), or on a replica alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from loadtest.model.roofline import Deployment
from loadtest.sim.app import App
from loadtest.sim.batching import BatchRequest, Replica
from loadtest.sim.config import SimConfig
from loadtest.sim.http11 import Connection
from loadtest.sim.prefix import BLOCK_SIZE, Continuation, block_hashes
from loadtest.sim.tokens import TokenText, chat_prompt_pieces, text_pieces

H100_8B = Deployment.of("llama-3.1-8b", "h100")
M = [{"role": "user", "content": " ".join(f"w{i}" for i in range(100))}]  # 100 pieces
U = {"role": "user", "content": "why not?"}  # 3 pieces: "why", "not", "?"
ANSWER = 40  # generated tokens: one word each


class Recorder(asyncio.Transport):
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.data = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def post(app: App, path: bytes, body: dict[str, Any]) -> Recorder:
    """Send one request and run the replica's steps (by hand, on the loop) until it is answered."""
    raw = orjson.dumps(body)
    conn, transport = Connection(app), Recorder()
    conn.connection_made(transport)
    conn.data_received(b"POST %b HTTP/1.1\r\ncontent-length: %d\r\n\r\n%b" % (path, len(raw), raw))
    loop = app.loop
    while (timer := app._timers[0]) is not None or app._queue:
        if timer is not None:
            timer.cancel()
            app._end_step(0)
        loop.call_soon(loop.stop)
        loop.run_forever()  # the writes queued for the next turns of the loop
    return transport


def events(transport: Recorder) -> list[dict[str, Any]]:
    """The JSON objects of a chunked event stream, in order."""
    lines = transport.data.split(b"\n")
    return [orjson.loads(line[6:]) for line in lines if line.startswith(b"data: {")]


def chat(app: App, messages: list[dict[str, Any]]) -> tuple[str, int]:
    """A streamed chat request: its answer as a client joins the chunks, and its cached tokens (usage)."""
    body = {
        "messages": messages,
        "max_tokens": ANSWER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = events(post(app, b"/v1/chat/completions", body))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    return text, chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"]


@pytest.mark.parametrize("template", [0, 5])
def test_the_next_turn_hits_through_the_answer(loop: asyncio.AbstractEventLoop, template: int) -> None:
    app = App(SimConfig(template_tokens=template), loop)
    answer, cached = chat(app, M)
    assert cached == 0
    # the streamed chunks join to the generated words, and re-tokenized they are the answer's pieces: the pieces
    # the simulator hashed when the answer finished
    assert answer == TokenText(0).text(TokenText.offset(1), ANSWER) and answer.startswith(" ")
    assistant = {"role": "assistant", "content": answer}
    pieces = chat_prompt_pieces([*M, assistant])
    assert len(pieces) == 100 + ANSWER and pieces[100].startswith("assistant\x00")
    assert [piece.split("\x00")[-1] for piece in pieces[100:]] == answer.split()  # one piece a word
    # turn 2: 100 + 40 + 3 = 143 content tokens (+ the template's). Content + answer is 140 tokens: 8 full blocks,
    # 128 tokens (the prompt alone had 6: 96); the 9th block [128, 144) holds answer and question, a miss
    _, cached = chat(app, [*M, assistant, U])
    assert cached == 8 * BLOCK_SIZE == 128
    # an answer sent back with one word changed, word 20 (piece 120, in block 7 = [112, 128)): the 7 blocks
    # before it hit, 112 tokens
    words = answer.split()
    words[20] = "changed"
    edited = {"role": "assistant", "content": " " + " ".join(words)}
    _, cached = chat(app, [*M, edited, U])
    assert cached == 7 * BLOCK_SIZE == 112


def complete(app: App, prompt: object, max_tokens: int) -> dict[str, Any]:
    """A non-streamed completions request's answer."""
    transport = post(app, b"/v1/completions", {"prompt": prompt, "max_tokens": max_tokens})
    body: dict[str, Any] = orjson.loads(transport.data.split(b"\r\n\r\n", 1)[1])
    return body


def test_a_completions_prompt_is_continued_by_its_text(loop: asyncio.AbstractEventLoop) -> None:
    app = App(SimConfig(), loop)
    prompt = " ".join(f"p{i}" for i in range(30))  # 30 pieces: one block
    text = complete(app, prompt, 20)["choices"][0]["text"]
    # the text starts with a space: prompt + text is the prompt's pieces, then the text's
    assert text.startswith(" ") and text_pieces(prompt + text) == [*text_pieces(prompt), *text_pieces(text)]
    # prompt + its 20 words + " more": 51 tokens; prompt + answer are 50, 3 full blocks (48 tokens)
    again = complete(app, prompt + text + " more", 1)
    assert again["usage"]["prompt_tokens_details"] == {"cached_tokens": 48}
    cache = app.model_server.lanes[0].prefix  # type: ignore[attr-defined]
    assert len(cache) == 3  # the second request's prompt and answer: the same 3 blocks
    complete(app, list(range(40)), 20)
    assert len(cache) == 3 + 2  # a prompt of token ids: its 2 blocks, and no answer blocks (60 tokens: 3)


def test_a_continuation_hashes_as_the_whole_sequence_does() -> None:
    prompt = [f"w{i}" for i in range(37)]
    more = [f"a{i}" for i in range(29)]
    for template in (0, 7):
        blocks = block_hashes(prompt, 37, template)
        continued = Continuation.of(blocks, prompt, 37).blocks(more, 66)
        assert continued == block_hashes(prompt + more, 64)  # 66 tokens: 4 full blocks, content only
        assert Continuation.of(blocks, prompt, 37).head == blocks[:2]  # what is not hashed again
    # 1.6 tokens a word: block j is words [10j, 10j + 10); 37 words are 59 tokens, 3 blocks but only 3 whole
    # ones (words 0-29); 37 + 29 = 66 words are 106 tokens: 6 blocks, the last one words 50-59 — all there
    blocks = block_hashes(prompt, 59, 0, 1.6)
    cont = Continuation.of(blocks, prompt, 59, 1.6)
    assert len(cont.head) == 3 and cont.tail == tuple(prompt[30:])
    assert cont.blocks(more, 106) == block_hashes(prompt + more, 96, 0, 1.6)
    # rounding: at 0.4 tokens a word block 0 is words [0, 40), and 39 words are 16 tokens: a full block that
    # lacks its last word. A continuation caches no block whose pieces are not all there
    words = [f"w{i}" for i in range(40)]
    short = Continuation.of(block_hashes(words[:38], 15, 0, 0.4), words[:38], 15, 0.4)
    assert len(block_hashes([*words[:38], "x"], 16, 0, 0.4)) == 1 and short.blocks(["x"], 16) == ()
    assert short.blocks(["x", "y"], 16) == block_hashes([*words[:38], "x", "y"], 16, 0, 0.4)
    whole = Continuation.of(block_hashes(words[:39], 16, 0, 0.4), words[:39], 16, 0.4)
    assert whole.head == ()  # the prompt's own block 0 lacks word 39: a continuation's is another


def conversation(rid: int, start: int) -> tuple[BatchRequest, tuple[int, ...], list[int]]:
    """A request of 100 words (6 blocks) generating 28 (``a0`` …), the blocks of prompt + answer (8), and the
    ``n`` its answer's blocks were asked for with."""
    prompt = [f"w{i}" for i in range(start, start + 100)]
    blocks = block_hashes(prompt, 100)
    cont = Continuation.of(blocks, prompt, 100)
    calls: list[int] = []

    def answer(n: int) -> tuple[int, ...]:
        calls.append(n)
        return cont.blocks([f"a{i}" for i in range(n)], 100 + n)

    return BatchRequest(rid, 100, 28, blocks, answer), answer(28)[:], calls


def test_the_answer_is_inserted_once_when_it_finishes_and_the_lru_keeps_its_capacity() -> None:
    replica = Replica(H100_8B, prefix_cache_tokens=10 * BLOCK_SIZE)  # 10 blocks
    cache = replica.prefix
    assert cache is not None
    first, a, calls = conversation(1, 0)
    calls.clear()
    replica.submit(first)
    while replica.next_step() is not None:
        replica.finish_step()
        if replica.outstanding:
            assert len(cache) == 6  # the prompt's blocks only, while it decodes
    assert calls == [28] and len(a) == 8 and len(cache) == 8 and all(h in cache for h in a)
    second, b, _ = conversation(2, 1000)
    replica.submit(second)
    while replica.next_step() is not None:
        replica.finish_step()
    # the LRU order was a7 … a0 (a chain's first block last); b's prompt pushed out a7 … a4, its answer a3, a2
    assert len(cache) == cache.capacity == 10
    assert [h in cache for h in a] == [True, True] + [False] * 6 and all(h in cache for h in b)
    # a cancelled request's answer is never asked for nor inserted
    cancelled, c, calls = conversation(3, 2000)
    calls.clear()
    replica.submit(cancelled)
    replica.next_step()
    replica.finish_step()
    assert replica.cancel(3) and calls == [] and not any(h in cache for h in c[6:])
