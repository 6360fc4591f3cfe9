"""What the gate measures (:mod:`analysis.gate`), each metric of one stage (and class) with its interval. Pure:
a run in, :class:`Measure` out. The generator's own cancellations (Ctrl-C, a drain timeout) are left out.

**Measures**, each with its interval:

* a latency percentile over the successful requests, with the distribution-free order-statistic interval of
  :func:`analysis.stage_points.percentile_ci` (the binomial method, as for the capacity verdicts);
* ``error_rate`` = failed / all, ``attainment`` (goodput) = good / all — good as in :mod:`analysis.goodput`,
  against the gate's latency thresholds for the class when it has any, else the class's own SLOs — each with the
  Clopper–Pearson interval;
* a throughput over the stage's rate window (:func:`analysis.stage_points.rate_window`: an open-loop stage's
  sending window, else first start → last end), with a batch-means interval: the steady part of the sending
  window cut into ``k ≤ 20`` equal bins of at least one median request, what each bin delivered (output tokens as
  they streamed, input tokens over the prefill, requests over their life), Student's *t* on the bins' spread and
  the relative half-width applied to the value. Fewer than :data:`MIN_BINS` bins give no interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]

from analysis.frame import RunData, flat_gaps
from analysis.goodput import good_mask, slo_metric
from analysis.stage_points import percentile_ci, rate_window
from loadtest.errors import ConfigError
from loadtest.rundir import StageWindow
from loadtest.spec.slo_flags import metric_kind

__all__ = [
    "CONFIDENCE",
    "JOINT_CONFIDENCE",
    "MIN_BINS",
    "Measure",
    "StageFrames",
    "measure",
    "run_stages",
]

CONFIDENCE = 0.95
JOINT_CONFIDENCE = math.sqrt(CONFIDENCE)  # each run's interval in a comparison: both hold together with 95 %
MAX_BINS = 20
MIN_BINS = 5


@dataclass(frozen=True, slots=True)
class Measure:
    """One metric of one stage (and class): the value, its interval, how many samples, or why it has none."""

    value: float | None
    low: float | None
    high: float | None
    samples: int
    problem: str | None = None  # why it means nothing (too few samples): the check is invalid
    ok: int = 0  # successful requests in the stage (and class)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def run_stages(data: RunData) -> list[str]:
    """The run's stage labels in order: its manifest's windows (an automatic sweep's too), else its spec's."""
    windows = data.manifest.stages
    return [w.label for w in windows] if windows else data.manifest.stage_order


def _window(data: RunData, stage: str) -> StageWindow:
    for w in data.manifest.stages or ():
        if w.label == stage:
            return w
    return StageWindow(label=stage)


class StageFrames:
    """A run's records split by stage once (the generator's cancellations left out), so that many checks do not
    each filter a million rows again; the chunk gaps are kept only when an ITL is measured."""

    def __init__(self, data: RunData, gaps: bool = True) -> None:
        self.data = data
        records = (
            data.records
            if gaps or "chunk_gaps" not in data.records
            else data.records.drop(columns="chunk_gaps")
        )
        if records.empty:
            self._stages: dict[str, pd.DataFrame] = {}
        else:
            kept = records[(records["error_class"] != "cancelled").to_numpy(dtype=bool)]
            self._stages = {
                str(label): group for label, group in kept.groupby("stage", observed=True, sort=False)
            }
        self._empty = records.iloc[0:0]

    def rows(self, stage: str, cls: str | None) -> pd.DataFrame:
        df = self._stages.get(stage, self._empty)
        if cls is None or df.empty:
            return df
        return df[(df["request_class"] == cls).to_numpy(dtype=bool)]


def measure(
    frames: StageFrames,
    stage: str,
    cls: str | None,
    metric: str,
    good_slos: Mapping[str, Mapping[str, float]],
    confidence: float = CONFIDENCE,
) -> Measure:
    """``metric`` in ``stage`` (of class ``cls``, or all) with its interval at ``confidence`` (module docstring)."""
    df = frames.rows(stage, cls)
    n = len(df)
    kind = metric_kind(metric)
    if kind == "share":
        if n == 0:
            return Measure(None, None, None, 0)
        ok = df["ok"].to_numpy(dtype=bool)
        hit = ~ok if metric == "error_rate" else good_mask(df, good_slos)
        k = int(hit.sum())
        ci = stats.binomtest(k, n).proportion_ci(confidence)
        return Measure(k / n, float(ci.low), float(ci.high), n, ok=int(ok.sum()))
    if kind == "throughput":
        return _throughput(df, _window(frames.data, stage), metric, confidence)
    parsed = slo_metric(metric)
    if parsed is None:  # parse_thresholds checked the name: only a metric this module does not know gets here
        raise ConfigError(f"cannot gate on {metric}")
    name, q = parsed
    ok = df["ok"].to_numpy(dtype=bool) if n else np.zeros(0, dtype=bool)
    if name == "itl":
        gaps = flat_gaps(df["chunk_gaps"]) if n else (np.zeros(0), np.zeros(0, dtype="int64"))
        values = np.asarray(gaps[0][np.repeat(ok, gaps[1])], dtype="float64")
    else:
        values = df[name].to_numpy(dtype="float64", na_value=np.nan)[ok] if n else np.zeros(0)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Measure(None, None, None, 0, None, ok=int(ok.sum()))
    point, low, high = percentile_ci(values, q, confidence)
    problem = None
    if low is None or high is None:
        problem = f"too few samples for a p{q:g}: {values.size:,} leave its {confidence * 100:.3g} % interval unbounded"
    return Measure(point, low, high, int(values.size), problem, ok=int(ok.sum()))


def _throughput(df: pd.DataFrame, meta: StageWindow, metric: str, confidence: float) -> Measure:
    if df.empty:
        return Measure(None, None, None, 0)
    started = df["started_at"].to_numpy(dtype="float64")
    ended = df["ended_at"].to_numpy(dtype="float64")
    ok = df["ok"].to_numpy(dtype=bool)
    duration, sent = rate_window(started, ended, meta)
    if not duration:
        return Measure(None, None, None, len(df), "the stage has no duration to take a rate over")
    prompt = np.where(ok, np.nan_to_num(df["prompt_tokens"].to_numpy(dtype="float64", na_value=np.nan)), 0.0)
    output = np.where(ok, np.nan_to_num(df["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)), 0.0)
    amounts = {
        "req_per_s": ok.astype("float64"),
        "input_tok_per_s": prompt,
        "output_tok_per_s": output,
        "total_tok_per_s": prompt + output,
    }
    value = float(amounts[metric][sent].sum()) / duration
    n_ok = int(ok.sum())
    if value == 0.0:  # nothing delivered (nothing succeeded, or no such tokens): exactly 0, no spread
        return Measure(0.0, 0.0, 0.0, len(df), ok=n_ok)
    rel = _batch_spread(df, meta, ok, prompt, output, metric, confidence)
    if rel is None:
        return Measure(value, None, None, len(df), ok=n_ok)
    return Measure(value, max(0.0, value * (1 - rel)), value * (1 + rel), len(df), ok=n_ok)


def _batch_spread(
    df: pd.DataFrame,
    meta: StageWindow,
    ok: np.ndarray,
    prompt: np.ndarray,
    output: np.ndarray,
    metric: str,
    confidence: float,
) -> float | None:
    """The relative half-width of a throughput's interval by batch means: the steady part of the sending window
    (after the first median request) cut into ``k`` equal bins of at least one median request, ``k`` ≤
    :data:`MAX_BINS`; what each bin delivered — output tokens spread evenly from a request's first token to its
    end, input tokens from its start to its first token (the prefill), a request over its whole life — and
    Student's *t* on the bins. None with fewer than :data:`MIN_BINS` bins."""
    started = df["started_at"].to_numpy(dtype="float64")
    ended = df["ended_at"].to_numpy(dtype="float64")
    e2e = (ended - started)[ok]
    if not ok.any():
        return None
    typical = float(np.median(e2e))
    start = (meta.start if meta.start is not None else float(started.min())) + typical
    end = meta.window_end if meta.window_end is not None else float(started.max())
    span = end - start
    bins = min(MAX_BINS, int(span / typical)) if typical > 0 else MAX_BINS
    if span <= 0 or bins < MIN_BINS:
        return None
    edges = start + span * np.arange(bins + 1) / bins
    first = started + np.nan_to_num(df["ttft"].to_numpy(dtype="float64", na_value=np.nan), nan=0.0)
    sums = np.zeros(bins)
    if metric in ("output_tok_per_s", "total_tok_per_s"):
        sums += _spread(first[ok], ended[ok], output[ok], edges)
    if metric in ("input_tok_per_s", "total_tok_per_s"):
        sums += _spread(started[ok], first[ok], prompt[ok], edges)
    if metric == "req_per_s":
        sums += _spread(started[ok], ended[ok], np.ones(int(ok.sum())), edges)
    mean = float(sums.mean())
    if mean <= 0:
        return None
    t = float(stats.t.ppf((1 + confidence) / 2, bins - 1))
    return t * float(sums.std(ddof=1)) / (mean * math.sqrt(bins))


def _spread(a: np.ndarray, b: np.ndarray, amount: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per bin (``edges``), the share of each ``amount`` delivered evenly over ``[a, b]`` that falls in it."""
    b = np.maximum(b, a + 1e-9)
    overlap = np.minimum(b[:, None], edges[None, 1:]) - np.maximum(a[:, None], edges[None, :-1])
    return np.asarray(
        (np.clip(overlap, 0.0, None) * (amount / (b - a))[:, None]).sum(axis=0), dtype="float64"
    )
