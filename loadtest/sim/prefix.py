"""The simulator's prefix cache, one per replica, as vLLM's automatic prefix caching keeps one per engine.

- A prompt's tokens (:mod:`loadtest.sim.tokens`: a chat request's pieces in message order, each message's first
  piece carrying its role, then its ``template_tokens``) are cut into blocks of :data:`BLOCK_SIZE` tokens (vLLM's
  default block size). Block ``j`` is identified by a hash of its tokens *chained* with block ``j − 1``'s hash
  (:func:`block_hashes`), so a block matches only when the whole prefix up to its end is the same; a partial last
  block has no hash and is never cached.
- A request's cached tokens are ``BLOCK_SIZE ×`` the number of its leading blocks the cache holds, looked up when the
  request is admitted to a step, and never the whole prompt: at most ``⌊(prompt − 1) / BLOCK_SIZE⌋`` blocks (vLLM
  always computes at least the last prompt token), so ``cached ≤ prompt − 1``.
- After its prefill (the end of the step that admitted it) the request's full blocks are inserted, last block first,
  so within one prompt the deeper blocks are the least recently used and are evicted first (vLLM frees a request's
  blocks in reverse order for the same reason). The cache holds at most ``capacity`` blocks and evicts the least
  recently used.
- When a chat request, or a completions request whose prompt is a string, finishes generating, its *answer's*
  blocks are inserted too (vLLM caches generated tokens as decode fills their blocks), keyed as the next request
  will hash them: the blocks of the prompt's content followed by the answer's pieces — for chat the pieces of
  ``messages + [{"role": "assistant", "content": <the generated text>}]`` (``chat_prompt_pieces``, the role folded
  into the answer's first piece), for completions those of ``prompt + text`` (the text starts with a space, so its
  pieces simply follow the prompt's) — up to the last whole block of that
  content (:class:`Continuation`). So a conversation's next turn, which sends the answer back verbatim and then its
  own message, hits through the last full block of prompt content + answer.

  Template tokens are placed after all the content in this model (a chat request's ``template_tokens`` follow its
  last message), so the finished request's own blocks from its first template token on hold ``content, template,
  answer`` in an order no next turn ever sends (there the answer's tokens follow the content directly). Those are
  never inserted as if the answer continued there: the answer's blocks are hashed over content + answer only,
  every block of them is content only, and the last, partial block of content + answer is not cached (the next
  turn fills it with its own message). The prompt's own template-bearing block stays as inserted at prefill: it
  matches a repeat of the same prompt. Real chat templates put their tokens between the messages instead, so
  vLLM's block boundaries fall a few tokens elsewhere; the prefix that hits is the same (through the answer), its
  count here is without the template tokens inside it.

Not cached: a token-id completions prompt's answer (the next request would send text after ids, which is not one
prompt), an answer cut short (a cancelled request, or a stream a fault broke: the request left the batch before it
finished), embeddings. With ``tokens_per_word`` ``r`` ≠ 1 a block of tokens ``[16j, 16j + 16)`` stands for the
prompt pieces ``[⌊16j / r⌋, ⌊16(j + 1) / r⌋)`` (token ids, as a completions prompt may send, are tokens as they
are); a continuation's block is cached only when all its pieces are there.

Pure and cheap: one hash per full block per request at admission, a dict lookup per block; at the end of a
generation one hash per new block of its answer (the prompt's blocks are not hashed again, nor are its pieces
kept: :class:`Continuation` keeps the hashes and the last partial block's pieces); nothing per decode step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["BLOCK_SIZE", "Continuation", "PrefixCache", "block_hashes"]

BLOCK_SIZE: Final[int] = 16
_ROOT: Final[int] = 0  # the parent hash of block 0


def block_hashes(
    pieces: Sequence[str] | Sequence[int],
    content_tokens: int,
    template_tokens: int = 0,
    tokens_per_word: float = 1.0,
) -> tuple[int, ...]:
    """The chained hashes of a prompt's full blocks: ``content_tokens`` tokens counted from ``pieces``
    (``tokens_per_word`` tokens per piece) followed by ``template_tokens`` template tokens.

    Block ``j``'s hash is ``hash((hash of block j − 1, its pieces, its template tokens))``; there are
    ``⌊(content_tokens + template_tokens) / BLOCK_SIZE⌋`` of them.
    """
    stop = (content_tokens + template_tokens) // BLOCK_SIZE
    return tuple(_chain(pieces, 0, _ROOT, 0, stop, content_tokens, 1.0 / tokens_per_word))


def _chain(
    pieces: Sequence[str] | Sequence[int],
    base: int,
    parent: int,
    first: int,
    stop: int,
    content_tokens: int,
    per_token: float,
) -> list[int]:
    """The hashes of blocks ``first`` to ``stop − 1`` chained from ``parent`` (block ``first − 1``'s hash);
    ``pieces[i]`` is piece ``base + i`` of the prompt."""
    hashes: list[int] = []
    for j in range(first, stop):
        lo, hi = j * BLOCK_SIZE, (j + 1) * BLOCK_SIZE
        if per_token == 1.0:
            chunk = tuple(pieces[lo - base : hi - base])
        else:
            chunk = tuple(pieces[int(lo * per_token) - base : int(hi * per_token) - base])
        template = hi - max(lo, content_tokens) if hi > content_tokens else 0
        parent = hash((parent, chunk, template))
        hashes.append(parent)
    return hashes


def _whole_blocks(pieces: int, content_tokens: int, per_token: float) -> int:
    """How many leading blocks of a prompt of ``pieces`` pieces (``content_tokens`` content tokens) hold content
    tokens only, all of whose pieces are in it: the blocks any continuation of its content shares with it."""
    whole = content_tokens // BLOCK_SIZE
    while whole and int(whole * BLOCK_SIZE * per_token) > pieces:  # rounding: its last piece is not there yet
        whole -= 1
    return whole


@dataclass(frozen=True, slots=True)
class Continuation:
    """What hashing a prompt *continued* takes — its answer appended, as the next turn sends it back — without
    keeping the prompt's pieces: the hashes of its whole content blocks (``head``, :func:`_whole_blocks`: the
    same in any continuation), the pieces after them (``tail``, fewer than a block's), the prompt's piece count,
    and how many tokens a piece is. Made by :meth:`of` when the prompt is hashed."""

    head: tuple[int, ...]
    tail: tuple[str, ...]
    pieces: int
    tokens_per_word: float = 1.0

    @classmethod
    def of(
        cls, blocks: Sequence[int], pieces: Sequence[str], content_tokens: int, tokens_per_word: float = 1.0
    ) -> Continuation:
        """The continuation of a prompt of ``pieces`` (``content_tokens`` content tokens) whose full blocks hash to
        ``blocks`` (:func:`block_hashes`, with or without template tokens after the content)."""
        per_token = 1.0 / tokens_per_word
        whole = _whole_blocks(len(pieces), content_tokens, per_token)
        base = int(whole * BLOCK_SIZE * per_token)
        return cls(tuple(blocks[:whole]), tuple(pieces[base:]), len(pieces), tokens_per_word)

    def blocks(self, more: Sequence[str], content_tokens: int) -> tuple[int, ...]:
        """The chained hashes of the whole content blocks of the prompt's pieces followed by ``more``
        (``content_tokens`` content tokens in all): what a request whose prompt continues with ``more`` hashes its
        leading blocks to, whatever follows. One hash per new block: the head is not hashed again."""
        per_token = 1.0 / self.tokens_per_word
        first = len(self.head)
        stop = _whole_blocks(self.pieces + len(more), content_tokens, per_token)
        base = int(first * BLOCK_SIZE * per_token)
        parent = self.head[-1] if self.head else _ROOT
        pieces = (*self.tail, *more)
        return self.head + tuple(_chain(pieces, base, parent, first, stop, stop * BLOCK_SIZE, per_token))


class PrefixCache:
    """An LRU of block hashes holding at most ``capacity`` blocks (see the module docstring), and its counters:
    ``queries`` prompt tokens looked up, ``hits`` of them found (vLLM's ``prefix_cache_queries`` / ``_hits``)."""

    __slots__ = ("_lru", "capacity", "hits", "queries")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a prefix cache holds at least one block")
        self.capacity = capacity
        self._lru: OrderedDict[int, None] = OrderedDict()
        self.queries = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, block: int) -> bool:
        return block in self._lru

    def lookup(self, blocks: Sequence[int], prompt_tokens: int) -> int:
        """Cached tokens of a prompt of ``prompt_tokens`` tokens whose full blocks hash to ``blocks``: the leading
        blocks held, at most ``⌊(prompt_tokens − 1) / BLOCK_SIZE⌋`` of them, times :data:`BLOCK_SIZE`. Counted in
        :attr:`queries` and :attr:`hits`; the LRU order is left alone (:meth:`insert` touches)."""
        usable = min(len(blocks), (prompt_tokens - 1) // BLOCK_SIZE)
        lru = self._lru
        found = 0
        while found < usable and blocks[found] in lru:
            found += 1
        cached = found * BLOCK_SIZE
        self.queries += prompt_tokens
        self.hits += cached
        return cached

    def insert(self, blocks: Sequence[int]) -> None:
        """A prefill is done: its blocks become the most recently used, the first block last (so the deepest are
        evicted first), and the least recently used leave while more than ``capacity`` are held."""
        lru = self._lru
        for block in reversed(blocks):
            if block in lru:
                lru.move_to_end(block)
            else:
                lru[block] = None
        while len(lru) > self.capacity:
            lru.popitem(last=False)
