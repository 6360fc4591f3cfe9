"""What the first requests after idle cost: the cold-start measures of a burst that follows an idle stage.

A **burst** is a stage that sends requests right after an ``idle`` stage (``{idle = "35m"}`` in a scenario's
stages, :class:`loadtest.spec.runspec.Stage`): the scenario marks the shape, the records give the measures. Times
are seconds from ``t0``, the ``started_at`` of the burst's first request; cancelled records (the run stopping) are
left out. The definitions are in ``docs/metrics.md`` ("Cold start"):

* ``first_request`` — the first request's outcome (``ok`` or its error kind), TTFT and E2E;
* ``first_token_s`` — the earliest ``first_token_at`` of a successful request, − t0 (the endpoint is serving);
* ``first_success_s`` — the earliest ``ended_at`` of a successful request, − t0 (a complete answer);
* ``errors_before_first_success`` — failed requests that ended before that, by kind: ``HTTP <status>`` for an
  HTTP error (503, 504, 429, ...), else the error class (``timeout``, ``connection``, ``stream_cut``, ...);
* ``errors_settled_s`` — the right edge of the last time bin whose error share (failed / ended in the bin) is
  above :data:`SETTLED_ERROR_SHARE`; ``None`` without errors; ``errors_settled`` is False when that bin is the
  window's last (the errors never stopped);
* the **ramp** — per bin of ``bin_s`` from t0, successful output tokens/s (successful requests/s when the stage
  produces no output tokens, e.g. embeddings), from :func:`analysis.timeline.timeline`'s series;
  ``plateau`` — the ramp's mean over the bins in the second half of the stage's window; ``time_to_90pct_s`` —
  the right edge of the first bin at or above 90 % of the plateau.

Bins are ``bin_s`` wide: by default the smallest readable width (1, 2, 3, 4, 5, 10, ... s) of at least a second
and at least the median E2E of the burst's successful requests, so that a closed loop's waves of completions read
as a rate.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from analysis.timeline import timeline
from loadtest.rundir import StageWindow
from loadtest.spec.runspec import Stage

__all__ = [
    "PLATEAU_SHARE",
    "SETTLED_ERROR_SHARE",
    "ColdStart",
    "FirstRequest",
    "cold_start_bin_s",
    "cold_starts",
    "error_kind",
]

SETTLED_ERROR_SHARE: Final[float] = 0.01  # the error rate has fallen to ~0 when a bin's share is at most this
PLATEAU_SHARE: Final[float] = 0.9  # time_to_90pct_s: the first bin at this share of the plateau
_READABLE_S: Final = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True, slots=True)
class FirstRequest:
    """The burst's first request: ``outcome`` is ``ok`` or its error kind; times in seconds (``None``: none)."""

    outcome: str
    ttft_s: float | None
    e2e_s: float | None


@dataclass(frozen=True, slots=True)
class ColdStart:
    """The cold-start measures of one burst (module docstring); series per bin from ``t0`` (epoch seconds)."""

    stage: str
    after: str
    idle_s: float
    t0: float
    requests: int
    first_request: FirstRequest
    first_token_s: float | None
    first_success_s: float | None
    errors_before_first_success: Mapping[str, int]
    errors: int
    errors_settled_s: float | None
    errors_settled: bool
    bin_s: float
    ramp_unit: str
    ramp: tuple[float, ...]
    ok_per_s: tuple[float, ...]
    errors_per_s: tuple[float, ...]
    plateau: float | None
    time_to_90pct_s: float | None
    window_s: float | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """``analyze --format json``'s ``cold_starts[]`` (keys in docs/metrics.md)."""
        return {
            "stage": self.stage,
            "after": self.after,
            "idle_s": self.idle_s,
            "t0": self.t0,
            "requests": self.requests,
            "first_request": {
                "outcome": self.first_request.outcome,
                "ttft_s": self.first_request.ttft_s,
                "e2e_s": self.first_request.e2e_s,
            },
            "first_token_s": self.first_token_s,
            "first_success_s": self.first_success_s,
            "errors_before_first_success": dict(self.errors_before_first_success),
            "errors": self.errors,
            "errors_settled_s": self.errors_settled_s,
            "errors_settled": self.errors_settled,
            "window_s": self.window_s,
            "bin_s": self.bin_s,
            "ramp_unit": self.ramp_unit,
            "plateau": self.plateau,
            "time_to_90pct_s": self.time_to_90pct_s,
            "ramp": list(self.ramp),
            "ok_per_s": list(self.ok_per_s),
            "errors_per_s": list(self.errors_per_s),
        }


def error_kind(status: object, error_class: object) -> str:
    """``HTTP 503`` for an HTTP error answer, else the error class (``timeout``, ``connection``, ...)."""
    if error_class in ("server_error", "client_error", "rate_limited") and _number(status) is not None:
        return f"HTTP {int(float(status))}"  # type: ignore[arg-type]
    return str(error_class)


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def cold_start_bin_s(records: pd.DataFrame) -> float:
    """The default bin: the smallest readable width ≥ 1 s and ≥ the median E2E of the successful ``records``."""
    e2e = (records["ended_at"] - records["started_at"])[records["ok"]].to_numpy(dtype="float64")
    e2e = e2e[~np.isnan(e2e)]
    floor = max(1.0, float(np.median(e2e))) if e2e.size else 1.0
    return next((w for w in _READABLE_S if w >= floor), 60.0 * math.ceil(floor / 60.0))


def cold_starts(
    records: pd.DataFrame,
    stages: Sequence[Stage],
    windows: Sequence[StageWindow] = (),
    bin_s: float | None = None,
) -> list[ColdStart]:
    """The measures of every burst after an idle stage, in stage order (empty when the plan has none, or a burst
    recorded nothing). ``windows`` give each stage's window end (without one the burst's last record ends it);
    ``bin_s`` overrides the default bin (:func:`cold_start_bin_s`)."""
    out: list[ColdStart] = []
    ends = {w.label: w.window_end for w in windows}
    for before, stage in itertools.pairwise(stages):
        if not before.idle or stage.idle:
            continue
        rows = records[(records["stage"] == stage.label) & (records["error_class"] != "cancelled")]
        if rows.empty:
            continue
        measured = _measure(rows, stage.label, before, ends.get(stage.label), bin_s)
        if measured is not None:
            out.append(measured)
    return out


def _measure(
    rows: pd.DataFrame, label: str, idle: Stage, window_end: float | None, bin_s: float | None
) -> ColdStart | None:
    started = rows["started_at"].to_numpy(dtype="float64")
    if np.isnan(started).all():
        return None
    ok = rows["ok"].to_numpy(dtype=bool)
    ended = rows["ended_at"].to_numpy(dtype="float64")
    first_token = rows["first_token_at"].to_numpy(dtype="float64", na_value=np.nan)
    t0 = float(np.nanmin(started))
    first = int(np.nanargmin(started))
    kinds = [
        "ok" if good else error_kind(status, cls)
        for good, status, cls in zip(ok, rows["status"], rows["error_class"], strict=True)
    ]
    first_request = FirstRequest(
        kinds[first],
        _seconds(first_token[first] - started[first]),
        _seconds(ended[first] - started[first]),
    )
    ok_end = ended[ok]
    success = _seconds(np.nanmin(ok_end) - t0) if ok.any() and not np.isnan(ok_end).all() else None
    ok_token = first_token[ok]
    token = _seconds(np.nanmin(ok_token) - t0) if ok.any() and not np.isnan(ok_token).all() else None
    cutoff = t0 + success if success is not None else math.inf
    before = Counter(k for k, good, end in zip(kinds, ok, ended, strict=True) if not good and end < cutoff)
    width = bin_s if bin_s is not None else cold_start_bin_s(rows)
    span = max(float(np.nanmax(ended)) - t0, 1e-9)
    line = timeline(rows, target_bins=max(1, math.ceil(span / width)), min_bin_s=width)
    assert line is not None  # rows have a start; a record without an end has no bin and is left out
    width = line.bin_s
    failed_per_s = sum(line.errors_per_s.values(), np.zeros_like(line.completed_per_s))
    ok_per_s = np.maximum(line.completed_per_s - failed_per_s, 0.0)
    tokens = rows["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)[ok]
    by_tokens = bool(np.nansum(tokens) > 0) if tokens.size else False
    ramp = line.output_tok_per_s if by_tokens else ok_per_s
    window_s = (window_end - t0) if window_end is not None and window_end > t0 else span
    last_bin = max(0, min(len(ramp), math.ceil(window_s / width - 1e-9)) - 1)  # the window's last bin
    settled_s, settled = _settled(failed_per_s, line.completed_per_s, width, last_bin)
    plateau, t90 = _plateau(ramp, width, window_s)
    return ColdStart(
        stage=label,
        after=idle.label,
        idle_s=idle.duration_s,
        t0=t0,
        requests=len(rows),
        first_request=first_request,
        first_token_s=token,
        first_success_s=success,
        errors_before_first_success=dict(sorted(before.items())),
        errors=int((~ok).sum()),
        errors_settled_s=settled_s,
        errors_settled=settled,
        bin_s=width,
        ramp_unit="output tok/s" if by_tokens else "req/s",
        ramp=tuple(float(v) for v in ramp),
        ok_per_s=tuple(float(v) for v in ok_per_s),
        errors_per_s=tuple(float(v) for v in failed_per_s),
        plateau=plateau,
        time_to_90pct_s=t90,
        window_s=window_s,
    )


def _seconds(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _settled(failed: np.ndarray, ended: np.ndarray, width: float, last_bin: int) -> tuple[float | None, bool]:
    """(right edge of the last bin whose error share is above the bound, whether the errors stopped in the window)."""
    share = np.divide(failed, ended, out=np.zeros_like(failed), where=ended > 0)
    above = np.flatnonzero(share > SETTLED_ERROR_SHARE)
    if not above.size:
        return None, True
    last = int(above[-1])
    return (last + 1) * width, last < last_bin


def _plateau(ramp: np.ndarray, width: float, window_s: float) -> tuple[float | None, float | None]:
    """(the ramp's mean over the bins inside the second half of the window, the right edge of the first bin at
    :data:`PLATEAU_SHARE` of it)."""
    edges = np.arange(len(ramp) + 1) * width
    inside = (edges[:-1] >= window_s / 2 - 1e-9) & (edges[1:] <= window_s + 1e-9)
    if not inside.any():
        return None, None
    plateau = float(ramp[inside].mean())
    if plateau <= 0:
        return plateau, None
    reached = np.flatnonzero(ramp >= PLATEAU_SHARE * plateau)
    return plateau, float(edges[int(reached[0]) + 1]) if reached.size else None
