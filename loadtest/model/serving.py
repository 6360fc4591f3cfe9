"""What a served endpoint is, for the model: ``replicas`` data-parallel copies of a deployment, each batching up to
``max_batch`` sequences, with an optional step-time jitter. Used by the simulator's batching model
(:mod:`loadtest.sim.batching`), the closed-loop predictions (:mod:`loadtest.model.predict`) and the planner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from loadtest.model.roofline import Deployment

__all__ = ["DEFAULT_MAX_BATCH", "Jitter", "ServingConfig"]

DEFAULT_MAX_BATCH: Final[int] = 256  # sequences one replica runs at once (vLLM's max_num_seqs default)

Jitter = Literal["lognormal", "normal"]


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """A simulated endpoint: ``replicas`` data-parallel copies of ``deployment``, each batching up to ``max_batch``."""

    deployment: Deployment
    max_batch: int = DEFAULT_MAX_BATCH
    replicas: int = 1
    seed: int = 0
    jitter_cv: float = 0.0
    jitter: Jitter = "lognormal"
    slowdown: float = 1.0  # every step time times this (a slower server, for tests and demos)
    # tokens each replica's prefix cache holds (loadtest.sim.prefix): None, its whole KV cache; 0, no prefix cache
    prefix_cache_tokens: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.slowdown < float("inf"):
            raise ValueError("slowdown must be a positive factor")
        if self.max_batch < 1 or self.replicas < 1:
            raise ValueError("max_batch and replicas must be >= 1")
        if not 0.0 <= self.jitter_cv <= 1.0:
            raise ValueError("jitter_cv must be within [0, 1]")
        if self.prefix_cache_tokens is not None and self.prefix_cache_tokens < 0:
            raise ValueError("prefix_cache_tokens must be >= 0")
        if self.jitter not in ("lognormal", "normal"):
            raise ValueError(f"jitter must be lognormal or normal, got {self.jitter!r}")
