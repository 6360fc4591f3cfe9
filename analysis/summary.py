"""Per-stage summaries from raw records: throughput over the stage and percentiles of raw values.

Throughput over a stage uses vLLM's benchmark duration: from the first request's start to the last request's end
in that stage (the stage's in-flight requests drain before the next stage starts, so nothing is cut off).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LIMIT_TYPES", "PERCENTILES", "StageSummary", "limit_type", "percentiles", "summarize_stages"]

LIMIT_TYPES = (
    "input_tokens_per_minute",
    "output_tokens_per_minute",
    "queries_per_hour",
    "queries_per_second",
)
_LIMIT_HINTS = (
    ("input_tokens_per_minute", ("itpm", "input tokens")),
    ("output_tokens_per_minute", ("otpm", "output tokens")),
    ("queries_per_hour", ("qph", "per hour")),
    ("queries_per_second", ("qps", "per second")),
)


def limit_type(detail: str | None) -> str:
    """Which quota a 429 names: Databricks' ``limit_type`` when the body has one, else read from its message
    (``REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit`` → queries_per_second), else "unspecified"."""
    text = (detail or "").lower()
    for name in LIMIT_TYPES:
        if name in text:
            return name
    for name, hints in _LIMIT_HINTS:
        if any(hint in text for hint in hints):
            return name
    return "unspecified"


PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


def percentiles(
    values: Iterable[float] | np.ndarray, qs: Sequence[int] = PERCENTILES
) -> dict[str, float | None]:
    """``{"p50": …, "mean": …}`` from raw values (NaN dropped); every value is ``None`` when there is no data."""
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype="float64")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {**{f"p{q}": None for q in qs}, "mean": None, "max": None}
    found = np.percentile(arr, qs)
    return {
        **{f"p{q}": float(v) for q, v in zip(qs, found, strict=True)},
        "mean": float(arr.mean()),
        "max": float(arr.max()),
    }


@dataclass(frozen=True, slots=True)
class StageSummary:
    stage: str
    requests: int
    ok: int
    errors: dict[str, int]
    duration_s: float | None
    req_per_s: float | None
    input_tok_per_s: float | None
    output_tok_per_s: float | None
    ttft: dict[str, float | None]
    tpot: dict[str, float | None]
    itl: dict[str, float | None]
    e2e: dict[str, float | None]
    lag: dict[str, float | None]
    token_sources: dict[str, int] = field(default_factory=dict)
    rate_limits: dict[str, int] = field(default_factory=dict)
    retry_after_p50_s: float | None = None

    @property
    def error_count(self) -> int:
        return self.requests - self.ok

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _summarize(label: str, df: pd.DataFrame) -> StageSummary:
    ok = df[df["ok"]]
    start = df["started_at"].min()
    end = df["ended_at"].max()
    duration = float(end - start) if len(df) and end > start else None

    def rate(amount: float) -> float | None:
        return amount / duration if duration else None

    gaps = [g for row in ok["chunk_gaps"] if row for g in row]
    errors = df.loc[~df["ok"], "error_class"].value_counts().to_dict()
    return StageSummary(
        stage=label,
        requests=len(df),
        ok=len(ok),
        errors={str(k): int(v) for k, v in errors.items()},
        duration_s=duration,
        req_per_s=rate(len(ok)),
        input_tok_per_s=rate(float(ok["prompt_tokens"].astype("float64").sum())),
        output_tok_per_s=rate(float(ok["output_tokens"].astype("float64").sum())),
        ttft=percentiles(ok["ttft"].to_numpy(dtype="float64")),
        tpot=percentiles(ok["tpot"].to_numpy(dtype="float64")),
        itl=percentiles(np.asarray(gaps, dtype="float64")),
        e2e=percentiles(ok["e2e"].to_numpy(dtype="float64")),
        lag=percentiles(df["lag"].to_numpy(dtype="float64")),
        token_sources={str(k): int(v) for k, v in ok["token_source"].value_counts().to_dict().items()},
        rate_limits=_rate_limits(df),
        retry_after_p50_s=percentiles(
            df.loc[df["error_class"] == "rate_limited", "retry_after_s"].to_numpy(dtype="float64")
        )["p50"],
    )


def _rate_limits(df: pd.DataFrame) -> dict[str, int]:
    limited = df.loc[df["error_class"] == "rate_limited", "error_detail"]
    counts: dict[str, int] = {}
    for detail in limited:
        name = limit_type(detail)
        counts[name] = counts.get(name, 0) + 1
    return counts


def summarize_stages(records: pd.DataFrame, order: Sequence[str] = ()) -> list[StageSummary]:
    """One summary per stage, in ``order`` (the manifest's stage order) then any other stage by first start."""
    if records.empty:
        return []
    firsts = records.groupby("stage", sort=False)["started_at"].min().sort_values()
    labels = [s for s in order if s in firsts.index] + [s for s in firsts.index if s not in order]
    return [_summarize(label, records[records["stage"] == label]) for label in labels]
