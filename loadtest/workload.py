"""Seeded synthetic prompts of a target token length.

Prompts are built from short, common English words: under the simulator's token rule every word is exactly one
token, and under BPE tokenizers (Llama, SmolLM2) such words are almost always one token too, so a prompt asked to
be N tokens is N tokens give or take the chat template. Every request gets its own prompt (no accidental prefix
caching), and the same seed and sequence number always give the same prompt.
"""

from __future__ import annotations

import random

__all__ = ["PromptFactory"]

_WORDS: tuple[str, ...] = tuple(
    (
        "the of and to in is you that it he was for on are as with his they at be this have from or one "
        "had by word but not what all were we when your can said there use an each which she do how their "
        "if will up other about out many then them these so some her would make like him into time has "
        "look two more write go see number no way could people my than first water been call who oil "
        "its now find long down day did get come made may part "
    ).split()
)


class PromptFactory:
    """``prompt(seq, n_tokens)`` gives the seeded prompt for request number ``seq``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def prompt(self, seq: int, n_tokens: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + seq)
        return " ".join(rng.choices(_WORDS, k=max(1, n_tokens)))
