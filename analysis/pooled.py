"""A request class over the whole run, pooled stage by stage (:mod:`analysis.scan`): what
:func:`analysis.summary.summarize_classes` computes from the whole frame, from one stage's frame at a time.

Counts and sums add up; the latency values are kept (8 bytes a request each) and pooled in the order the stages
come; the chunk gaps are gathered (as the whole frame's, in the same order) or, for a class with too many to hold,
counted by :class:`analysis.selection.ExactPercentiles` (whose second pass is the caller's:
:meth:`PooledClass.refine`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd

from analysis.frame import flat_gaps
from analysis.goodput import MISMATCH_TOLERANCE
from analysis.selection import ExactPercentiles
from analysis.summary import PERCENTILES, StageSummary, limit_counts, percentiles

__all__ = ["PooledClass", "StageColumns", "gap_pieces"]

_LATENCIES = ("ttft", "tpot", "e2e")


def gap_pieces(
    values: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    offsets: np.ndarray | None = None,
    per_piece: int = 1 << 16,
) -> Iterator[np.ndarray]:
    """The chunk gaps (``values``, ``lengths``: :func:`analysis.frame.flat_gaps`) of the ``rows`` (a mask), in row
    order, ``per_piece`` rows at a time: views where the rows follow one another, small copies elsewhere — never one
    copy of them all."""
    if offsets is None:
        offsets = np.concatenate(([0], np.cumsum(lengths)))
    chosen = np.flatnonzero(rows & (lengths > 0))
    for start in range(0, chosen.size, per_piece):
        part = chosen[start : start + per_piece]
        first, last = int(part[0]), int(part[-1]) + 1
        span = values[offsets[first] : offsets[last]]
        if part.size == last - first or int(lengths[part].sum()) == span.size:  # no other row's gaps between
            yield span
        else:
            member = np.zeros(last - first, dtype=bool)
            member[part - first] = True
            yield span[np.repeat(member, lengths[first:last])]


class StageColumns:
    """One stage's columns as NumPy arrays, once for all its classes."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.floats = {
            name: frame[name].to_numpy(dtype="float64", na_value=np.nan)
            for name in (
                *_LATENCIES,
                "lag",
                "retry_after_s",
                "prompt_tokens",
                "output_tokens",
                "client_output_tokens",
            )
        }
        self.ok = frame["ok"].to_numpy(dtype=bool)
        self.errors = frame["error_class"].to_numpy(dtype=object)
        self.limited = (frame["error_class"] == "rate_limited").to_numpy(dtype=bool)
        self.details = frame["error_detail"].to_numpy(dtype=object)
        self.sources = pd.factorize(frame["token_source"], use_na_sentinel=True)
        self.usage = (frame["token_source"] == "usage").to_numpy(dtype=bool)
        self.gaps, self.lengths = flat_gaps(frame["chunk_gaps"])
        self.offsets = np.concatenate(([0], np.cumsum(self.lengths)))


def _sorted_counts(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0])))


class PooledClass:
    """One class's figures over the run, fed one stage at a time with :meth:`add`."""

    def __init__(self, name: str, exact: bool = False) -> None:
        """``exact``: count the chunk gaps (:class:`ExactPercentiles`) rather than gather them."""
        self.name = name
        self.requests = 0
        self.ok = 0
        self.good: int | None = None
        self.input_tokens = 0.0
        self.output_tokens = 0.0
        self.errors: Counter[str] = Counter()
        self.token_sources: Counter[str] = Counter()
        self.details: Counter[str | None] = Counter()
        self.mismatch_checked = 0
        self.mismatch_count = 0
        self.spans: list[float | None] = []
        self.values: dict[str, list[np.ndarray]] = {m: [] for m in (*_LATENCIES, "lag", "retry_after")}
        self.gaps: list[np.ndarray] = []
        self.gap_count = 0
        self.exact: ExactPercentiles | None = ExactPercentiles(PERCENTILES) if exact else None

    @property
    def needs_second_pass(self) -> bool:
        return self.exact is not None

    def add(
        self,
        stage: StageColumns,
        rows: np.ndarray,
        good: np.ndarray | None,
        duration: float | None,
    ) -> None:
        """The class's ``rows`` (a mask) of one stage, their goodput verdicts among ``good`` and the stage's
        duration. The chunk gaps of an ``exact`` class are not counted here: the caller counts every class's at once
        (:func:`analysis.selection.grouped_counts`) into :attr:`exact`."""
        floats, values, lengths = stage.floats, stage.gaps, stage.lengths
        ok = rows & stage.ok
        failed = rows & ~stage.ok
        self.requests += int(rows.sum())
        self.ok += int(ok.sum())
        self.spans.append(duration)
        for metric in _LATENCIES:
            self.values[metric].append(floats[metric][ok])
        self.values["lag"].append(floats["lag"][rows])
        self.errors.update(str(e) for e in stage.errors[failed])
        limited = failed & stage.limited
        self.values["retry_after"].append(floats["retry_after_s"][limited])
        self.details.update(stage.details[limited])
        prompt, output, client = (
            floats["prompt_tokens"],
            floats["output_tokens"],
            floats["client_output_tokens"],
        )
        self.input_tokens += float(np.nansum(prompt[ok]))
        self.output_tokens += float(np.nansum(output[ok]))
        if good is not None:
            self.good = (self.good or 0) + int(good[rows].sum())
        codes, names = stage.sources
        found = np.bincount(codes[ok & (codes >= 0)], minlength=len(names))
        self.token_sources.update({str(names[i]): int(n) for i, n in enumerate(found) if n})
        both = ok & stage.usage & ~np.isnan(client) & (output > 0)
        off = np.abs(client[both] - output[both]) / output[both] > MISMATCH_TOLERANCE
        self.mismatch_checked += int(both.sum())
        self.mismatch_count += int(off.sum())
        if self.exact is None:  # else counted by the caller, for every class of the stage at once
            gaps = values[np.repeat(ok, lengths)]
            self.gaps.append(gaps)
            self.gap_count += gaps.size

    def refine(self, gaps: np.ndarray) -> None:
        """The second pass over this class's chunk gaps (all of them, in pieces, any order)."""
        assert self.exact is not None
        self.exact.refine(gaps)

    def _pooled(self, metric: str) -> np.ndarray:
        found = self.values[metric]
        return np.concatenate(found) if found else np.empty(0)

    def summary(self) -> StageSummary:
        """The class's summary over the run (``stage == "*"``), as :func:`analysis.summary.summarize_classes`."""
        qs = PERCENTILES
        total = sum(s for s in self.spans if s)
        duration = total or None

        def rate(amount: float) -> float | None:
            return amount / duration if duration else None

        if self.exact is not None:
            itl = self.exact.result()
        else:
            gaps = np.concatenate(self.gaps) if self.gaps else np.empty(0, dtype="float32")
            self.gaps.clear()
            itl = percentiles(gaps, qs, in_place=True)
        return StageSummary(
            stage="*",
            request_class=self.name,
            requests=self.requests,
            ok=self.ok,
            errors=_sorted_counts(self.errors),
            duration_s=duration,
            req_per_s=rate(self.ok),
            input_tok_per_s=rate(self.input_tokens),
            output_tok_per_s=rate(self.output_tokens),
            total_tok_per_s=rate(self.input_tokens + self.output_tokens),
            ttft=percentiles(self._pooled("ttft"), qs),
            tpot=percentiles(self._pooled("tpot"), qs),
            itl=itl,
            e2e=percentiles(self._pooled("e2e"), qs),
            lag=percentiles(self._pooled("lag"), qs),
            token_sources=_sorted_counts(self.token_sources),
            rate_limits=limit_counts(np.array(list(self.details.elements()), dtype=object)),
            retry_after_p50_s=percentiles(self._pooled("retry_after"), qs)["p50"],
            good=self.good,
            goodput_rps=rate(self.good) if self.good is not None else None,
            attainment=self.good / self.requests if self.good is not None and self.requests else None,
            mismatch_checked=self.mismatch_checked,
            mismatch_count=self.mismatch_count,
        )
