"""A run over time, and the shapes of its distributions, reduced to what a chart draws.

Everything here is computed from the raw records in a handful of vectorised passes, so that a run of a million
records reduces in well under a second, and what comes out is small (hundreds of points, not a million):

* :func:`timeline` — per time bin of ``bin_s`` seconds from the run's first start (a readable width of at least a
  second and at least ``min_bin_s``: the report asks for twice the median request, so that a closed loop's waves
  of completions read as a rate): requests completed per second,
  output tokens per second (a request's output tokens counted in the bin it ended in), requests in flight (the
  mean over the bin, from the started/ended intervals), errors per second by class and 429s per second by limit
  type (:func:`analysis.summary.limit_type`).
* :func:`quantile_curve` — a latency distribution as ``(probabilities, values)`` at fixed probabilities: an
  empirical CDF drawn from ``points`` exact quantiles instead of every value.
* :func:`histogram` — counts of integer token lengths in at most ``bins`` equal bins shared by the compared series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.summary import limit_type

__all__ = ["Histogram", "Timeline", "histogram", "quantile_curve", "timeline"]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-bin series over a run; ``start`` is the epoch second of bin 0's left edge, ``t`` the bins' centres in
    seconds since ``start``."""

    start: float
    bin_s: float
    t: np.ndarray
    completed_per_s: np.ndarray
    output_tok_per_s: np.ndarray
    in_flight: np.ndarray
    errors_per_s: Mapping[str, np.ndarray]
    rate_limited_per_s: Mapping[str, np.ndarray]


def _bin_width(span_s: float, target_bins: int) -> float:
    """A readable bin width (1, 2, 3, 4, 5, 10, 15, 30, 60, … seconds) giving at most about ``target_bins`` bins; never
    under a second, where a closed loop's batches would show as spikes rather than a rate."""
    for width in (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0):
        if span_s / width <= target_bins:
            return width
    return 3600.0 * math.ceil(span_s / 3600.0 / target_bins)


def timeline(records: pd.DataFrame, target_bins: int = 80, min_bin_s: float = 1.0) -> Timeline | None:
    """The run's series (see the module docstring); ``None`` when no record has both a start and an end."""
    started = records["started_at"].to_numpy(dtype="float64")
    ended = records["ended_at"].to_numpy(dtype="float64")
    timed = ~(np.isnan(started) | np.isnan(ended))
    if not timed.any():
        return None
    started, ended = started[timed], ended[timed]
    start = float(started.min())
    span = max(float(ended.max()) - start, 1e-9)
    width = _bin_width(max(span, min_bin_s * target_bins), target_bins)
    n = int(np.ceil(span / width)) or 1
    end_bin = np.minimum(((ended - start) / width).astype(np.int64), n - 1)
    completed = np.bincount(end_bin, minlength=n) / width
    tokens = records["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)[timed]
    ok = records["ok"].to_numpy(dtype=bool)[timed]
    out_tokens = np.bincount(end_bin[ok], weights=np.nan_to_num(tokens[ok]), minlength=n) / width
    # mean in flight over a bin = the time requests spent inside it / its width: integrate the step function
    # (+1 at each start, −1 at each end) with the cumulative sums of the events' times
    edges = start + width * np.arange(n + 1)
    busy = _time_inside(np.sort(started), edges) - _time_inside(np.sort(ended), edges)
    in_flight = np.maximum(busy / width, 0.0)
    errors: dict[str, np.ndarray] = {}
    limited: dict[str, np.ndarray] = {}
    classes = records["error_class"].to_numpy(dtype=object)[timed]
    failed = ~ok
    if failed.any():
        for name in sorted({str(c) for c in classes[failed]}):
            mask = classes == name
            errors[name] = np.bincount(end_bin[mask], minlength=n) / width
        is_429 = classes == "rate_limited"
        if is_429.any():
            details = records["error_detail"].to_numpy(dtype=object)[timed][is_429]
            # each distinct detail read once (a quota-bound run has hundreds of thousands of 429s, few bodies);
            # a missing one (code -1) is the last entry
            codes, distinct = pd.factorize(details)
            names = [limit_type(d if isinstance(d, str) else None) for d in distinct] + [limit_type(None)]
            kinds = np.asarray(names, dtype=object)[codes]
            for kind in sorted(set(names[c] for c in np.unique(codes))):
                rows = end_bin[is_429][kinds == kind]
                limited[kind] = np.bincount(rows, minlength=n) / width
    centres = (np.arange(n) + 0.5) * width
    return Timeline(start, width, centres, completed, out_tokens, in_flight, errors, limited)


def _time_inside(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """For sorted event ``times`` and bin ``edges``: per bin, ∫ (number of events at or before t) dt over the bin."""
    # count(t) is a step function; its integral up to x is Σ max(0, x − t_i) = k·x − Σ_{i<k} t_i, k = #{t_i ≤ x}
    prefix = np.concatenate(([0.0], np.cumsum(times)))
    k = np.searchsorted(times, edges, side="right")
    integral = k * edges - prefix[k]
    return np.diff(integral)


def quantile_curve(values: np.ndarray, points: int = 201) -> tuple[np.ndarray, np.ndarray] | None:
    """``(p, v)``: ``v[i]`` the exact ``p[i]``-quantile (linear) of the non-NaN ``values`` at ``points`` evenly
    spaced probabilities from 0 to 1; ``None`` for no values."""
    clean = values[~np.isnan(values)]
    if not clean.size:
        return None
    probs = np.linspace(0.0, 1.0, points)
    return probs, np.quantile(clean, probs)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts per series over shared bins ``edges`` (length = bins + 1)."""

    edges: np.ndarray
    counts: Mapping[str, np.ndarray]


def histogram(series: Mapping[str, np.ndarray], bins: int = 40) -> Histogram | None:
    """Integer token lengths of several series (e.g. asked and served) in at most ``bins`` shared integer-aligned
    bins; NaN dropped; ``None`` when no series has a value."""
    clean = {name: v[~np.isnan(v)] for name, v in series.items()}
    present: Sequence[np.ndarray] = [v for v in clean.values() if v.size]
    if not present:
        return None
    low = float(min(v.min() for v in present))
    high = float(max(v.max() for v in present))
    width = max(1.0, float(np.ceil((high - low + 1) / bins)))
    edges = np.arange(np.floor(low), high + width + 1, width) - 0.5
    return Histogram(edges, {name: np.histogram(v, bins=edges)[0] for name, v in clean.items()})
