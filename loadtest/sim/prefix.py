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

Only the prompt's blocks are cached, not the generated tokens' (vLLM caches those too as they fill blocks): a
conversation's next turn hits up to the end of the previous turn's prompt, not through its answer. With
``tokens_per_word`` ``r`` ≠ 1 a block of tokens ``[16j, 16j + 16)`` stands for the prompt pieces
``[⌊16j / r⌋, ⌊16(j + 1) / r⌋)`` (token ids, as a completions prompt may send, are tokens as they are).

Pure and cheap: one hash per full block per request at admission, a dict lookup per block; nothing per decode step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

__all__ = ["BLOCK_SIZE", "PrefixCache", "block_hashes"]

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
    per_token = 1.0 / tokens_per_word
    hashes: list[int] = []
    parent = _ROOT
    for j in range((content_tokens + template_tokens) // BLOCK_SIZE):
        lo, hi = j * BLOCK_SIZE, (j + 1) * BLOCK_SIZE
        if per_token == 1.0:
            chunk = tuple(pieces[lo:hi])
        else:
            chunk = tuple(pieces[int(lo * per_token) : int(hi * per_token)])
        template = hi - max(lo, content_tokens) if hi > content_tokens else 0
        parent = hash((parent, chunk, template))
        hashes.append(parent)
    return tuple(hashes)


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
