"""The simulator's notion of tokens: how it counts a prompt, what text it generates, what an embedding is.

- **Prompt tokens** = the number of matches of ``\\w+|[^\\w\\s]`` (a word, or one punctuation mark) over the prompt
  string, or over the text of every chat message (string content, or the ``text`` of each content part), summed.
  A prompt of N plain words is N tokens; ``"Hello, world!"`` is 4. A prompt given as token ids counts its ids.
  No chat-template tokens are added.
  A simulator told ``tokens_per_word`` ``r`` and ``template_tokens`` ``t`` (:class:`TokenRule`) counts a text's
  ``n`` matches as ``floor(r · n + 0.5)`` tokens (at least 1 when ``n`` ≥ 1), and adds ``t`` once per chat request
  — a server whose tokenizer and chat template disagree with one word per token, as real ones do. The default
  (``r = 1``, ``t = 0``) is the rule above.
- **Generated tokens**: each is one word of :data:`VOCABULARY` with a leading space (``" lorem"``), read from a fixed
  sequence drawn once from ``random.Random(seed)``; request ``k`` starts at its own offset, so a rerun with the
  same seed produces the same text.
- **Embeddings**: a deterministic unit vector of :data:`EMBEDDING_DIM` floats derived from the input's CRC-32.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_RULE",
    "EMBEDDING_DIM",
    "VOCABULARY",
    "TokenRule",
    "TokenText",
    "chat_prompt_pieces",
    "chat_prompt_tokens",
    "count_tokens",
    "embedding_vector",
    "prompt_pieces",
    "split_inputs",
    "text_pieces",
]

_TOKEN_RE: Final = re.compile(r"\w+|[^\w\s]")
VOCABULARY: Final[tuple[str, ...]] = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim", "veniam",
    "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea",
)  # fmt: skip
EMBEDDING_DIM: Final[int] = 16
_SEQUENCE_LENGTH: Final[int] = 4096  # a power of two: offsets wrap with a mask


def count_tokens(text: str) -> int:
    """Number of ``\\w+|[^\\w\\s]`` matches in ``text``."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))


@dataclass(frozen=True, slots=True)
class TokenRule:
    """How many tokens a prompt is (module docstring): ``tokens_per_word`` per match, ``template_tokens`` more
    per chat request."""

    tokens_per_word: float = 1.0
    template_tokens: int = 0

    def scale(self, matches: int) -> int:
        if self.tokens_per_word == 1.0 or matches == 0:
            return matches
        return max(1, math.floor(self.tokens_per_word * matches + 0.5))

    def chat(self, messages: object) -> int:
        """Prompt tokens of a chat request's ``messages`` (``ValueError`` as :func:`chat_prompt_tokens`)."""
        return self.scale(chat_prompt_tokens(messages)) + self.template_tokens


class TokenText:
    """The generated words, pre-encoded as JSON-safe UTF-8 bytes with their leading space."""

    __slots__ = ("words",)

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        encoded = [(" " + w).encode() for w in VOCABULARY]
        self.words: tuple[bytes, ...] = tuple(rng.choice(encoded) for _ in range(_SEQUENCE_LENGTH))

    @staticmethod
    def offset(request_number: int) -> int:
        """Where request ``request_number`` starts reading the sequence (a multiplicative hash)."""
        return (request_number * 2654435761) % _SEQUENCE_LENGTH

    def word(self, offset: int, index: int) -> bytes:
        """Token ``index`` (0-based) of the request that starts at ``offset``."""
        return self.words[(offset + index) & (_SEQUENCE_LENGTH - 1)]

    def text(self, offset: int, count: int) -> str:
        """The first ``count`` tokens of a request, joined."""
        return b"".join(self.word(offset, i) for i in range(count)).decode()


def embedding_vector(text: str) -> list[float]:
    """A unit vector of :data:`EMBEDDING_DIM` floats seeded by ``crc32(text)``: same input, same vector."""
    rng = random.Random(zlib.crc32(text.encode()))
    values = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_DIM)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def chat_prompt_tokens(messages: object) -> int:
    """Prompt tokens of a chat ``messages`` list; ``ValueError`` when it is not a non-empty list of messages."""
    return len(chat_prompt_pieces(messages))


def chat_prompt_pieces(messages: object) -> list[str]:
    """The ``\\w+|[^\\w\\s]`` pieces of a chat ``messages`` list, in order, one per token of the rule above; the
    first piece of each message carries its role (``"user\\x00Hello"``), so the same words under another role, or
    cut into messages differently, are other tokens (what a chat template does). ``ValueError`` as
    :func:`chat_prompt_tokens`."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    pieces: list[str] = []
    findall = _TOKEN_RE.findall
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError("each message must be an object with a string 'role'")
        start = len(pieces)
        content = message.get("content")
        if isinstance(content, str):
            pieces += findall(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise ValueError("message content parts must be objects")
                text = part.get("text")
                if isinstance(text, str):
                    pieces += findall(text)
        elif content is not None:
            raise ValueError("message 'content' must be a string or an array of parts")
        if len(pieces) > start:
            pieces[start] = message["role"] + "\x00" + pieces[start]
    return pieces


def text_pieces(text: str) -> list[str]:
    """The ``\\w+|[^\\w\\s]`` pieces of a string, one per token of the rule above (a completions prompt's)."""
    return _TOKEN_RE.findall(text)


def prompt_pieces(value: object) -> list[str] | list[int]:
    """The tokens of one completions ``prompt`` already accepted by :func:`split_inputs` as one item: a string's
    pieces, or the token ids themselves."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | list):
        value = value[0]
    if isinstance(value, str):
        return text_pieces(value)
    if isinstance(value, list) and _is_ids(value):
        return value
    raise ValueError("'prompt' must be a string or an array of token ids")


def _is_ids(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)


DEFAULT_RULE: Final = TokenRule()


def split_inputs(value: object, name: str, rule: TokenRule = DEFAULT_RULE) -> list[tuple[str, int]]:
    """A completions ``prompt`` or an embeddings ``input`` as ``(text, tokens)`` per item: a string, a list of
    strings, a list of token ids (counted as they are), or a list of lists of ids; ``ValueError`` otherwise."""
    if isinstance(value, str):
        return [(value, rule.scale(count_tokens(value)))]
    if isinstance(value, list) and value:
        if _is_ids(value):
            return [(str(value), len(value))]
        if all(isinstance(v, str) for v in value):
            return [(v, rule.scale(count_tokens(v))) for v in value if isinstance(v, str)]
        if all(_is_ids(v) for v in value):
            return [(str(v), len(v)) for v in value if isinstance(v, list)]
    raise ValueError(f"'{name}' must be a string, an array of strings or an array of token ids")
