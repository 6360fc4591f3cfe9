"""Pay-per-token quotas as facts: the limit types Databricks names in its 429s, their windows, an endpoint's limits,
and the steady-state admitted rate for a constant offered load (:func:`ppt_admitted_rate`). The simulator enforces
them (:mod:`loadtest.sim.quota`); the planner and the analysis read them from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = ["LIMIT_TYPES", "QUOTA_WINDOWS", "LimitType", "QuotaLimits", "ppt_admitted_rate"]

LimitType = Literal[
    "input_tokens_per_minute", "output_tokens_per_minute", "queries_per_hour", "queries_per_second"
]
LIMIT_TYPES: Final[tuple[LimitType, ...]] = get_args(LimitType)  # in this order: ties break by it
# provisioned throughput: "up to 200 queries per second per workspace" by default, more through the account team
# (Databricks' model-serving limits page; docs/sources.md)
WORKSPACE_QPS_LIMIT: Final[float] = 200.0
# limit type -> (short name, unit, window in seconds, bucket in seconds)
QUOTA_WINDOWS: Final[dict[LimitType, tuple[str, str, float, float]]] = {
    "input_tokens_per_minute": ("ITPM", "tokens", 60.0, 0.0),
    "output_tokens_per_minute": ("OTPM", "tokens", 60.0, 0.0),
    "queries_per_hour": ("QPH", "queries", 3600.0, 1.0),
    "queries_per_second": ("QPS", "queries", 1.0, 0.0),
}


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """A pay-per-token endpoint's quotas; ``None`` means unlimited."""

    itpm: int | None = None
    otpm: int | None = None
    qph: int | None = None
    qps: int | None = None

    def __post_init__(self) -> None:
        for name in ("itpm", "otpm", "qph", "qps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def by_type(self) -> dict[LimitType, int]:
        """The limits that are set, keyed by limit type, in the order of :data:`LIMIT_TYPES`."""
        values = (self.itpm, self.otpm, self.qph, self.qps)
        return {k: v for k, v in zip(LIMIT_TYPES, values, strict=True) if v is not None}


def ppt_admitted_rate(
    limits: QuotaLimits,
    rps: float,
    prompt_tokens: int,
    max_tokens: int,
    output_tokens: int | None = None,
    *,
    duration_s: float = 0.0,
) -> tuple[float, LimitType | None]:
    """Long-run admitted requests/s for a steady offered load of ``rps`` identical requests, and the limit that
    binds (``None`` when everything offered is admitted).

    Each limit caps the rate at: ITPM ``itpm / (60·p)``; OTPM ``otpm / (60·o + d·(m − o))`` (a request holds its
    reservation ``m`` for ``d = duration_s`` seconds, then only its ``o`` produced tokens count for the rest of the
    minute); QPH ``qph / 3600``; QPS ``qps``. The admitted rate is ``min(rps, caps)``; the binding limit is the
    smallest cap below ``rps`` (ties in the order ITPM, OTPM, QPH, QPS). This is the fluid limit: the sliding window's
    greedy admission stays within one request's charge per window of it (``charge / limit`` relative).
    ``output_tokens`` defaults to ``max_tokens`` (ignore_eos).
    """
    if rps < 0 or prompt_tokens < 0 or max_tokens < 0 or duration_s < 0:
        raise ValueError("rps, token counts and duration_s must be >= 0")
    out = max_tokens if output_tokens is None else min(max(output_tokens, 0), max_tokens)
    caps: dict[LimitType, float] = {}
    if limits.itpm is not None and prompt_tokens > 0:
        caps["input_tokens_per_minute"] = limits.itpm / (60.0 * prompt_tokens)
    held = 60.0 * out + duration_s * (max_tokens - out)
    if limits.otpm is not None and held > 0:
        caps["output_tokens_per_minute"] = limits.otpm / held
    if limits.qph is not None:
        caps["queries_per_hour"] = limits.qph / 3600.0
    if limits.qps is not None:
        caps["queries_per_second"] = float(limits.qps)
    binding: LimitType | None = None
    rate = rps
    for kind in LIMIT_TYPES:
        cap = caps.get(kind)
        if cap is not None and cap < rate:
            rate, binding = cap, kind
    return rate, binding
