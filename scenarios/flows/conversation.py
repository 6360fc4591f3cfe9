"""Multi-turn chat, a shipped Python scenario (``loadtest run conversation``; ``docs/scenarios-python.md``).

One flow is one conversation of a few turns (drawn per flow from :data:`TURNS`): the user's message, the model's
answer, a pause while the user reads and types (:data:`THINK_S`, *inside* the flow, so part of its latency), then
the next message sent with the whole history so far, as a chat client sends it: the prompt grows turn by turn.
Every call is step ``turn``. Between one conversation and the user's next, ``wait_time`` (closed loop only).

Content is synthetic by default. ``LOADTEST_CONVERSATIONS=path.jsonl`` takes real ones instead, one conversation a
line — the user's turns in order, and optionally a system prompt::

    {"turns": ["How do I reverse a list in Python?", "And a string?"], "system": "You are a helpful assistant."}

Each flow draws one of them and sends all its turns. A relative path is looked up in the current directory, then
next to this file: ``LOADTEST_CONVERSATIONS=conversations.jsonl`` runs the example shipped beside it. The file is
read where the engine runs (each worker host needs it). ``LOADTEST_TURN_THINK_S`` overrides the think time between
turns: ``"0.5-2"`` (uniform) or ``"0"``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from loadtest.flows import FlowUser, between, task

TURNS = (2, 5)  # turns per synthetic conversation (inclusive)
THINK_S = (0.5, 2.0)  # the user's pause between an answer and their next message (seconds)
ANSWER_TOKENS = (32, 160)  # each answer's max_tokens (exact on servers that honour ignore_eos)
USER_WORDS = (6, 40)  # length of a synthetic user message
SYSTEM = "You are a helpful assistant. Answer briefly and to the point."

_OPENERS = (
    "Can you explain",
    "How do I",
    "What is the difference between",
    "Why does",
    "Give me an example of",
)
_TOPICS = (
    "a hash map", "binary search", "TCP slow start", "a Python generator", "gradient descent", "a B-tree index",
    "HTTP keep-alive", "garbage collection", "a mutex", "the CAP theorem", "tail latency", "a bloom filter",
)  # fmt: skip
_FILLER = (
    "please", "in practice", "with a short example", "for a beginner", "compared to the alternatives", "step by step",
    "in production", "and when it goes wrong", "in two sentences", "with the trade-offs", "on a large dataset",
)  # fmt: skip

Script = tuple[str | None, list[str]]  # a conversation: its system prompt, the user's turns


def _span(raw: str, name: str) -> tuple[float, float]:
    low, sep, high = raw.partition("-")
    try:
        span = (float(low), float(high) if sep else float(low))
    except ValueError:
        raise ValueError(f'{name}={raw!r}: give seconds, "0.5-2" or "1"') from None
    if not 0 <= span[0] <= span[1]:
        raise ValueError(f"{name}={raw!r}: need 0 <= low <= high")
    return span


def _parse(line: str, where: str) -> Script:
    try:
        raw: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc.msg})") from None
    turns = raw.get("turns") if isinstance(raw, dict) else None
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t for t in turns):
        raise ValueError(f'{where}: need {{"turns": ["first user message", ...]}} with non-empty strings')
    system = raw.get("system")
    if system is not None and not isinstance(system, str):
        raise ValueError(f"{where}: 'system' must be a string")
    return system, turns


def _read(value: str) -> list[Script]:
    path = Path(value)
    if not path.is_absolute() and not path.is_file():
        path = Path(__file__).parent / value
    if not path.is_file():
        raise FileNotFoundError(
            f"LOADTEST_CONVERSATIONS={value}: no such file (here or next to {Path(__file__).name})"
        )
    found: list[Script] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                found.append(_parse(line, f"{path.name}:{n}"))
    if not found:
        raise ValueError(f"{path.name}: no conversation in it")
    return found


_FILE = os.environ.get("LOADTEST_CONVERSATIONS")
CONVERSATIONS: list[Script] | None = _read(_FILE) if _FILE else None
_THINK = os.environ.get("LOADTEST_TURN_THINK_S")
THINK = _span(_THINK, "LOADTEST_TURN_THINK_S") if _THINK else THINK_S


class Conversation(FlowUser):
    wait_time = between(1, 3)  # between one conversation and the next (closed loop)

    @task
    def talk(self) -> None:
        system, turns = self.random.choice(CONVERSATIONS) if CONVERSATIONS else (SYSTEM, self._synthetic())
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        for i, text in enumerate(turns):
            if i:
                time.sleep(self.random.uniform(*THINK))  # the engine made time.sleep yield to the other users
            messages.append({"role": "user", "content": text})
            reply = self.chat(messages, max_tokens=self.random.randint(*ANSWER_TOKENS), name="turn")
            messages.append(reply.message())

    def _synthetic(self) -> list[str]:
        rng = self.random
        turns = []
        for _ in range(rng.randint(*TURNS)):
            words = [rng.choice(_OPENERS), rng.choice(_TOPICS)]
            length = rng.randint(*USER_WORDS)
            while sum(len(w.split()) for w in words) < length:
                words.append(rng.choice(_FILLER))
            turns.append(" ".join(words) + "?")
        return turns
