"""Fault injection for tests of a load generator's error handling: seeded, at most one fault per request.

Rules:

- Each model request (chat, completions, embeddings) draws one uniform number from ``random.Random(seed)``; the
  probabilities are stacked in the order of :data:`FAULT_KINDS`, so each fault strikes a request with exactly its
  probability and two never strike the same request (their sum must be ≤ 1). The draw happens for every valid
  request, so the same requests in the same order get the same faults.
- ``http_429`` / ``http_500`` / ``http_503``: the request is answered at once with that status (429 with
  ``Retry-After: 1``) and never reaches the batching model or the quotas.
- Stream faults apply to streamed chat/completions only (a non-streamed request that draws one is served normally).
  They strike when token ``k + 1`` is ready, ``k = max_tokens // 2`` (so ``k`` tokens went out before):
  ``stream_cut`` closes the connection (no final chunk, no terminating chunk); ``garbage_line`` writes one line
  that is not server-sent events, then goes on normally; ``stall`` holds the stream for ``stall_s`` seconds (the
  batching model goes on, tokens are buffered and flushed at the end of the stall); ``error_event`` sends
  ``data: {"error": {...}}`` and ``data: [DONE]`` and ends the response. A cut or errored sequence leaves the
  replica's batch at once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final, Literal

__all__ = ["FAULT_KINDS", "STREAM_FAULTS", "FaultConfig", "FaultInjector", "FaultKind", "FaultPlan"]

FaultKind = Literal["http_429", "http_500", "http_503", "stream_cut", "garbage_line", "stall", "error_event"]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = (
    "http_429",
    "http_500",
    "http_503",
    "stream_cut",
    "garbage_line",
    "stall",
    "error_event",
)
STREAM_FAULTS: Final[frozenset[str]] = frozenset({"stream_cut", "garbage_line", "stall", "error_event"})


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Per-request probabilities of each fault; ``stall_s`` is how long a stall lasts; ``seed=None`` uses the
    simulator's seed."""

    http_429: float = 0.0
    http_500: float = 0.0
    http_503: float = 0.0
    stream_cut: float = 0.0
    garbage_line: float = 0.0
    stall: float = 0.0
    error_event: float = 0.0
    stall_s: float = 2.0
    seed: int | None = None

    def __post_init__(self) -> None:
        total = 0.0
        for kind in FAULT_KINDS:
            p = getattr(self, kind)
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
                raise ValueError(f"fault probability {kind} must be within [0, 1], got {p!r}")
            total += p
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:g}; at most 1")
        if not self.stall_s > 0:
            raise ValueError(f"stall_s must be > 0, got {self.stall_s!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, kind) > 0 for kind in FAULT_KINDS)

    def probabilities(self) -> dict[FaultKind, float]:
        return {kind: float(getattr(self, kind)) for kind in FAULT_KINDS}

    @classmethod
    def from_mapping(cls, values: Mapping[str, float], **extra: float | int | None) -> FaultConfig:
        """From ``{"http_503": 0.05, "stall": 0.01}``; ``ValueError`` names an unknown fault."""
        known = {f.name for f in fields(cls)} - {"stall_s", "seed"}
        for name in values:
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_KINDS)}")
        return cls(**{k: float(v) for k, v in values.items()}, **extra)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The fault one request gets: for stream faults, ``after_tokens`` tokens go out before it strikes."""

    kind: FaultKind
    after_tokens: int = 0
    stall_s: float = 0.0

    @property
    def in_stream(self) -> bool:
        return self.kind in STREAM_FAULTS


class FaultInjector:
    """Draws each request's fault (see the module docstring)."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(config.seed if config.seed is not None else seed)
        self._stack: list[tuple[float, FaultKind]] = []
        acc = 0.0
        for kind, p in config.probabilities().items():
            if p > 0:
                acc += p
                self._stack.append((acc, kind))

    def draw(self, max_tokens: int, stream: bool) -> FaultPlan | None:
        """The fault for the next request, or ``None``."""
        u = self._rng.random()
        for bound, kind in self._stack:
            if u < bound:
                if kind not in STREAM_FAULTS:
                    return FaultPlan(kind)
                if not stream:
                    return None
                return FaultPlan(kind, max_tokens // 2, self.config.stall_s)
        return None
