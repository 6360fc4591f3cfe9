"""Per-stage and per-class summaries from raw records: throughput over the group and percentiles of raw values.

Throughput over a stage uses vLLM's benchmark duration: from the first request's start to the last request's end
in that stage (the stage's in-flight requests drain before the next stage starts, so nothing is cut off). A class
across stages uses the sum of its per-stage durations, so the gaps between stages do not dilute its rate.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.frame import flat_gaps
from analysis.goodput import MISMATCH_TOLERANCE, good_mask
from loadtest.model.quota import LIMIT_TYPES

__all__ = [
    "PERCENTILES",
    "StageSummary",
    "limit_counts",
    "limit_type",
    "percentiles",
    "span_s",
    "summarize_classes",
    "summarize_stages",
]

_LIMIT_HINTS = (
    ("input_tokens_per_minute", ("itpm", "input tokens")),
    ("output_tokens_per_minute", ("otpm", "output tokens")),
    ("queries_per_hour", ("qph", "per hour")),
    ("queries_per_second", ("qps", "per second")),
)


@functools.lru_cache(maxsize=256)  # a run's 429 bodies repeat: read each one once
def limit_type(detail: str | float | None) -> str:
    """Which quota a 429 names: Databricks' ``limit_type`` when the body has one, else read from its message
    (``REQUEST_LIMIT_EXCEEDED: Exceeded workspace QPS rate limit`` → queries_per_second), else "unspecified"."""
    text = detail.lower() if isinstance(detail, str) else ""  # a missing detail may come as NaN from a frame
    for kind in LIMIT_TYPES:
        if kind in text:
            return kind
    for name, hints in _LIMIT_HINTS:
        if any(hint in text for hint in hints):
            return name
    return "unspecified"


PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


def percentiles(
    values: Iterable[float] | np.ndarray, qs: Sequence[int] = PERCENTILES, in_place: bool = False
) -> dict[str, float | None]:
    """``{"p50": …, "mean": …}`` from raw values (NaN dropped); every value is ``None`` when there is no data.
    With ``in_place`` a NumPy array of values is reordered rather than copied (float32 values are kept as they are
    and interpolated in float64)."""
    if in_place and isinstance(values, np.ndarray):
        return _percentiles(values, qs, scratch=True)
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype="float64")
    return _percentiles(arr, qs, scratch=False)


def _percentiles(arr: np.ndarray, qs: Sequence[int], scratch: bool) -> dict[str, float | None]:
    """:func:`percentiles`; with ``scratch`` the caller's array may be reordered in place (no copy). Exact:
    numpy's "linear" method from the order statistics at ``floor(q × (n − 1))`` and the next one up."""
    if np.isnan(arr).any():
        arr, scratch = arr[~np.isnan(arr)], True
    if arr.size == 0:
        return {**{f"p{q}": None for q in qs}, "mean": None, "max": None}
    part = arr if scratch else arr.copy()
    pos = np.asarray(qs, dtype="float64") / 100.0 * (arr.size - 1)
    lo = np.floor(pos).astype("int64")
    ranks = np.unique(np.append(lo, arr.size - 1))
    _select(part, ranks)
    # the order statistic just above each lo: the least of what lies between lo and the next selected rank
    after = ranks[np.minimum(np.searchsorted(ranks, lo, side="right"), ranks.size - 1)]
    above = np.array(
        [part[i + 1 : j + 1].min() if j > i else part[i] for i, j in zip(lo, after, strict=True)],
        dtype="float64",
    )
    low = part[lo].astype("float64")  # float32 gaps are interpolated in float64
    found = np.where(pos > lo, low + (pos - lo) * (above - low), low)
    return {
        **{f"p{q}": float(v) for q, v in zip(qs, found, strict=True)},
        "mean": float(part.mean(dtype="float64")),
        "max": float(part[-1]),
    }


def _select(arr: np.ndarray, ranks: np.ndarray) -> None:
    """Reorder ``arr`` in place so that each of the sorted ``ranks`` holds its order statistic, as
    ``arr.partition(ranks)`` does — but one rank at a time, each on what lies above the previous one: numpy's SIMD
    quickselect serves only a single rank, and this is about 1.5× faster on millions of chunk gaps."""
    start = 0
    for rank in ranks:
        arr[start:].partition(rank - start)
        start = rank + 1


@dataclass(frozen=True, slots=True)
class StageSummary:
    """One group of records: a stage (``request_class`` None), a class over the whole run (``stage == "*"``), or
    a class within a stage. Rates are per second over the group's duration; latencies over successful requests."""

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
    request_class: str | None = None
    total_tok_per_s: float | None = None
    good: int | None = None
    goodput_rps: float | None = None
    attainment: float | None = None
    mismatch_checked: int = 0
    mismatch_count: int = 0

    @property
    def error_count(self) -> int:
        return self.requests - self.ok

    @property
    def mismatch_share(self) -> float | None:
        """Share of checked records whose client count is off the usage count by more than 10 %."""
        return self.mismatch_count / self.mismatch_checked if self.mismatch_checked else None

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["mismatch_share"] = self.mismatch_share
        return out


class _Columns:
    """The frame's columns as numpy arrays, once, so that each group is a cheap positional selection."""

    def __init__(self, records: pd.DataFrame, good: np.ndarray | None) -> None:
        def floats(name: str) -> np.ndarray:
            return records[name].to_numpy(dtype="float64", na_value=np.nan)

        self.ok = records["ok"].to_numpy(dtype=bool)
        self.good = good
        self.started, self.ended = floats("started_at"), floats("ended_at")
        self.ttft, self.tpot, self.e2e, self.lag = (
            floats("ttft"),
            floats("tpot"),
            floats("e2e"),
            floats("lag"),
        )
        self.prompt, self.output = floats("prompt_tokens"), floats("output_tokens")
        self.client = floats("client_output_tokens")
        self.retry_after = floats("retry_after_s")
        self.limited = (records["error_class"] == "rate_limited").to_numpy(dtype=bool)
        self.usage = (records["token_source"] == "usage").to_numpy(dtype=bool)
        self.error_detail = records["error_detail"].to_numpy(dtype=object)
        self.factors = {  # a categorical column factorizes from its codes
            name: pd.factorize(records[name], use_na_sentinel=True)
            for name in ("error_class", "token_source")
        }
        values, lengths = flat_gaps(records["chunk_gaps"])
        self.gap_lengths = np.where(self.ok, lengths, 0)
        self.gaps = values[np.repeat(self.ok, lengths)] if lengths[~self.ok].any() else values
        self.gap_offsets = np.concatenate(([0], np.cumsum(self.gap_lengths)))

    def itl(self, idx: np.ndarray) -> dict[str, float | None]:
        """Percentiles of the chunk gaps of the successful rows among ``idx`` (sorted positions; failed rows own no
        gaps here, so a whole stage is one contiguous span of them)."""
        if idx.size == 0:
            return percentiles(np.empty(0))
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        span = self.gaps[self.gap_offsets[lo] : self.gap_offsets[hi]]
        if idx.size == hi - lo:  # a contiguous block of rows (a stage, usually): a view, so partition a copy
            return _percentiles(span, PERCENTILES, scratch=False)
        member = np.zeros(hi - lo, dtype=bool)
        member[idx - lo] = True
        return _percentiles(span[np.repeat(member, self.gap_lengths[lo:hi])], PERCENTILES, scratch=True)

    def counts(self, name: str, idx: np.ndarray) -> dict[str, int]:
        """``{value: count}`` of a string column over ``idx`` (nulls left out), most frequent first."""
        codes, uniques = self.factors[name]
        found = np.bincount(codes[idx][codes[idx] >= 0], minlength=len(uniques))
        pairs = [(str(uniques[i]), int(n)) for i, n in enumerate(found) if n]
        return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def limit_counts(details: np.ndarray) -> dict[str, int]:
    """``{limit type: count}`` of 429 bodies, most frequent first (each distinct body is read once)."""
    found: dict[str, int] = {}
    for detail, n in Counter(details).items():
        kind = limit_type(detail)
        found[kind] = found.get(kind, 0) + n
    return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))


_Group = tuple[str, str | None, np.ndarray, float | None]  # stage label, class, row positions, duration


def _summarize_all(c: _Columns, groups: Sequence[_Group], itl: bool = True) -> list[StageSummary]:
    """One summary per group. The ITL percentiles — most of the work on a big run: a selection over every chunk
    gap — are computed two groups at a time, since numpy's partition releases the GIL; without ``itl`` they are
    left to the caller (all None)."""
    if not itl:
        none = percentiles(np.empty(0))
        return [_summarize(c, group, none) for group in groups]
    with ThreadPoolExecutor(max_workers=2) as pool:
        itls = list(pool.map(c.itl, [idx for _, _, idx, _ in groups]))
    return [_summarize(c, group, itl) for group, itl in zip(groups, itls, strict=True)]


def _summarize(c: _Columns, group: _Group, itl: dict[str, float | None]) -> StageSummary:
    stage, cls, idx, duration = group
    ok = idx[c.ok[idx]]

    def rate(amount: float) -> float | None:
        return amount / duration if duration else None

    failed = idx[~c.ok[idx]]
    limited = failed[c.limited[failed]]
    input_tokens = float(np.nansum(c.prompt[ok]))
    output_tokens = float(np.nansum(c.output[ok]))
    good = int(c.good[idx].sum()) if c.good is not None else None
    both = ok[c.usage[ok] & ~np.isnan(c.client[ok]) & (c.output[ok] > 0)]
    off = np.abs(c.client[both] - c.output[both]) / c.output[both] > MISMATCH_TOLERANCE
    return StageSummary(
        stage=stage,
        request_class=cls,
        requests=int(idx.size),
        ok=int(ok.size),
        errors=c.counts("error_class", failed),
        duration_s=duration,
        req_per_s=rate(ok.size),
        input_tok_per_s=rate(input_tokens),
        output_tok_per_s=rate(output_tokens),
        total_tok_per_s=rate(input_tokens + output_tokens),
        ttft=percentiles(c.ttft[ok]),
        tpot=percentiles(c.tpot[ok]),
        itl=itl,
        e2e=percentiles(c.e2e[ok]),
        lag=percentiles(c.lag[idx]),
        token_sources=c.counts("token_source", ok),
        rate_limits=limit_counts(c.error_detail[limited]),
        retry_after_p50_s=percentiles(c.retry_after[limited])["p50"],
        good=good,
        goodput_rps=rate(good) if good is not None else None,
        attainment=good / idx.size if good is not None and idx.size else None,
        mismatch_checked=int(both.size),
        mismatch_count=int(off.sum()),
    )


def span_s(started: np.ndarray, ended: np.ndarray) -> float | None:
    """First start → last end in seconds (vLLM's benchmark duration); None when empty, zero or all unknown."""
    started, ended = started[~np.isnan(started)], ended[~np.isnan(ended)]
    if started.size == 0 or ended.size == 0:
        return None
    span = float(ended.max() - started.min())
    return span if span > 0 else None


def _duration(c: _Columns, idx: np.ndarray) -> float | None:
    return span_s(c.started[idx], c.ended[idx])


def _stage_order(records: pd.DataFrame, order: Sequence[str]) -> list[str]:
    firsts = records.groupby("stage", sort=False)["started_at"].min().sort_values()
    return [s for s in order if s in firsts.index] + [str(s) for s in firsts.index if s not in order]


def _groups(records: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    """``{value: its rows' positions, ascending}``, in order of first appearance; rows without a value left out."""
    codes, uniques = pd.factorize(records[key])
    return {str(value): np.flatnonzero(codes == i) for i, value in enumerate(uniques)}


def summarize_stages(
    records: pd.DataFrame,
    order: Sequence[str] = (),
    slos: Mapping[str, Mapping[str, float]] | None = None,
    itl: bool = True,
) -> list[StageSummary]:
    """One summary per stage, in ``order`` (the manifest's stage order) then any other stage by first start.
    With ``slos`` (``{class: {"ttft_p95": 1.0, ...}}``, see :mod:`analysis.goodput`) also goodput and attainment.
    Without ``itl`` the ITL percentiles are all None (:mod:`analysis.scan` computes them its own way)."""
    if records.empty:
        return []
    records = records.reset_index(drop=True)
    c = _Columns(records, good_mask(records, slos) if slos is not None else None)
    groups = _groups(records, "stage")
    labels = _stage_order(records, order)
    return _summarize_all(
        c, [(label, None, groups[label], _duration(c, groups[label])) for label in labels], itl=itl
    )


def summarize_classes(
    records: pd.DataFrame,
    slos: Mapping[str, Mapping[str, float]] | None = None,
    by_stage: bool = False,
    order: Sequence[str] = (),
) -> list[StageSummary]:
    """One summary per request class (``stage == "*"``, duration = Σ of its stages' durations), or with
    ``by_stage`` one per (stage, class) in stage order."""
    if records.empty:
        return []
    records = records.reset_index(drop=True)
    c = _Columns(records, good_mask(records, slos) if slos is not None else None)
    stages = _groups(records, "stage")
    classes = _groups(records, "request_class")
    groups: list[_Group] = []
    if by_stage:
        for label in _stage_order(records, order):
            s_idx = stages[label]
            duration = _duration(c, s_idx)
            for name in sorted(classes):
                idx = np.intersect1d(s_idx, classes[name], assume_unique=True)
                if idx.size:
                    groups.append((label, name, idx, duration))
        return _summarize_all(c, groups)
    for name in sorted(classes):
        idx = classes[name]
        # the class's rate within a stage is over that stage's duration, so sum the stages it appears in
        spans = [_duration(c, s_idx) for s_idx in stages.values() if np.isin(s_idx, idx).any()]
        total = sum(s for s in spans if s)
        groups.append(("*", name, idx, total or None))
    return _summarize_all(c, groups)
