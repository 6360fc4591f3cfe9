"""Sectioning: a confidence interval for an estimate from correlated data, from the estimate's spread over
consecutive sections of the data. Pure numpy / scipy.

A stage's requests, in the order they started, are cut into :data:`SECTIONS` consecutive sections of (nearly) equal
size. An estimate ``θ̂`` from the whole stage (a percentile, a share, the capacity X* built on them) is computed on
each section as well, ``θ̂_1 … θ̂_K``, and

    ``θ̂ ± t_{K−1, 0.975} · S / √K``,  ``S² = Σ_k (θ̂_k − θ̂)² / (K − 1)``

is its 95 % interval (Asmussen & Glynn, *Stochastic Simulation* (2007), III.5a; Nakayama, "Confidence intervals
using sectioning for quantiles", 2014: the centre is the whole-sample estimate, the spread the sections'). It holds
when sections are long compared with how long the data stay correlated — then each ``θ̂_k`` is a nearly independent
estimate from ``n / K`` values whose variance is ``K`` times the whole one's, correlation included — and it needs no
model of that correlation. Latencies of a queue are correlated over its busy periods, and the arrivals that made
them are a random process whose rate in any stretch of the stage scatters around the offered one (±1/√n): both
show up as differences between sections, which an order-statistic interval (independent values assumed) cannot
see. Few, long sections suit short stages near saturation; ``K = 5`` (t = 2.78) was chosen on a study of M/D/c
sweeps, ``docs/metrics.md`` ("Capacity").

A section's percentile needs values beyond it: at least :data:`MIN_BEYOND` on the thinner side in every section
(a p95 needs sections of 40, so a stage of 200; a p99 a stage of 1,000), else there is no sectioned interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

__all__ = ["MIN_BEYOND", "SECTIONS", "percentile_sections", "section_of", "sectioned_ci", "share_sections"]

SECTIONS = 5
MIN_BEYOND = 2.0  # values beyond a percentile (on its thinner side) each section needs
_T = float(stats.t.ppf(0.975, SECTIONS - 1))


def section_of(started: np.ndarray) -> np.ndarray:
    """Each request's section, 0 … K − 1, by the order in which the requests started (ties keep their order)."""
    n = started.size
    out = np.empty(n, dtype="int64")
    out[np.argsort(started, kind="stable")] = np.arange(n) * SECTIONS // max(n, 1)
    return out


def _enough(counts: np.ndarray, share: float) -> bool:
    """Every section has ``MIN_BEYOND`` values beyond a point that leaves ``share`` of them on its thinner side."""
    return bool(counts.size and counts.min() * min(share, 1.0 - share) >= MIN_BEYOND)


def percentile_sections(
    values: np.ndarray, sections: np.ndarray, q: float
) -> tuple[float | None, ...] | None:
    """The ``q``-th percentile (numpy's linear method) of each section's values; None when a section has too few
    values beyond it (see the module docstring)."""
    counts = np.bincount(sections, minlength=SECTIONS)
    if not _enough(counts, q / 100):
        return None
    return tuple(float(np.percentile(values[sections == k], q)) for k in range(SECTIONS))


def share_sections(hits: np.ndarray, sections: np.ndarray, share: float) -> tuple[float | None, ...] | None:
    """Each section's share of ``hits`` (booleans); None when a section is too small to hold ``MIN_BEYOND`` of the
    rarer outcome at ``share``."""
    counts = np.bincount(sections, minlength=SECTIONS)
    if not _enough(counts, share):
        return None
    hit = np.bincount(sections, weights=hits.astype("float64"), minlength=SECTIONS)
    return tuple(float(h / c) for h, c in zip(hit, counts, strict=True))


def sectioned_ci(point: float, sections: Sequence[float | None] | None) -> tuple[float, float] | None:
    """``point ± t_{K−1} · S / √K`` over the sections' estimates (the module docstring); None without them."""
    if sections is None or len(sections) != SECTIONS or any(v is None for v in sections):
        return None
    spread = np.array(sections, dtype="float64") - point
    half = _T * float(np.sqrt((spread**2).sum() / (SECTIONS - 1) / SECTIONS))
    return point - half, point + half
