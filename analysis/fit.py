"""Fits for prediction: ``TPOT ≈ t0 + t1·C`` (continuous batching: each decode step costs a fixed part plus a part
per sequence in the batch) and Little's law to predict latency at an untested rate. Pure functions.

LatencyPrediction at an arrival rate X with mean TTFT ``T`` and ``n`` output tokens per request: Little's law
``C = X·E2E`` with ``E2E = T + TPOT·(n − 1)`` and ``TPOT = t0 + t1·C`` gives
``C = X·(T + t0·(n − 1)) / (1 − X·t1·(n − 1))``, defined while the denominator is positive (beyond
``1 / (t1·(n − 1))`` the queue grows without bound: no prediction). A prediction outside half the lowest to twice
the highest measured rate is flagged ``extrapolated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LatencyPrediction", "LinearFit", "fit_linear", "predict_latency"]


@dataclass(frozen=True, slots=True)
class LinearFit:
    """``y ≈ t0 + t1·x`` by least squares over ``points`` measured points spanning ``x_min``–``x_max``."""

    t0: float
    t1: float
    r2: float | None
    points: int
    x_min: float
    x_max: float

    def at(self, x: float) -> float:
        return self.t0 + self.t1 * x

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class LatencyPrediction:
    rate_rps: float
    concurrency: float | None
    tpot_s: float | None
    e2e_s: float | None
    extrapolated: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def fit_linear(x: Sequence[float | None], y: Sequence[float | None]) -> LinearFit | None:
    """Least squares ``y = t0 + t1·x`` over the pairs where both are known; None with fewer than 2 distinct x.
    ``r2 = 1 − SS_res / SS_tot`` (None when every y is equal)."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    xs = np.array([p[0] for p in pairs], dtype="float64")
    ys = np.array([p[1] for p in pairs], dtype="float64")
    if xs.size < 2 or np.ptp(xs) == 0:
        return None
    design = np.column_stack([np.ones_like(xs), xs])
    (t0, t1), *_ = np.linalg.lstsq(design, ys, rcond=None)
    ss_tot = float(((ys - ys.mean()) ** 2).sum())
    ss_res = float(((ys - (t0 + t1 * xs)) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else None
    return LinearFit(float(t0), float(t1), r2, int(xs.size), float(xs.min()), float(xs.max()))


def predict_latency(
    fit: LinearFit,
    rate_rps: float,
    ttft_s: float,
    output_tokens: float,
    measured_rates: Sequence[float],
) -> LatencyPrediction:
    """Little's-law prediction at ``rate_rps`` (module docstring)."""
    rates = [r for r in measured_rates if r > 0]
    extrapolated = not rates or rate_rps > 2 * max(rates) or rate_rps < min(rates) / 2
    steps = max(output_tokens - 1.0, 0.0)
    denominator = 1.0 - rate_rps * fit.t1 * steps
    if denominator <= 0:
        limit = 1.0 / (fit.t1 * steps)
        return LatencyPrediction(
            rate_rps, None, None, None, extrapolated, f"past the fitted saturation {limit:.2f} req/s"
        )
    concurrency = rate_rps * (ttft_s + fit.t0 * steps) / denominator
    tpot = fit.at(concurrency)
    note = "extrapolated: beyond 2× the measured range" if extrapolated else "within the measured range"
    return LatencyPrediction(rate_rps, concurrency, tpot, ttft_s + tpot * steps, extrapolated, note)
