"""Per-request SLO verdicts (goodput) and the client/server token-count check. Pure: frames in, arrays out.

A request is **good** when it succeeded and meets every latency threshold of its class (DistServe's and vLLM's
``--goodput`` definition): an SLO ``ttft_p95 = 1s`` is checked per request as ``ttft ≤ 1 s``; the percentile in the
key matters for the stage-level verdict (:mod:`analysis.capacity`), not here. ``itl_pXX`` is checked against the
request's own pXX of its chunk gaps. A metric a request does not have (TPOT of a one-token answer, ITL of an
unstreamed one) cannot break its SLO. **Goodput** = good requests / stage duration; **attainment** = good / all
requests, failures included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.frame import flat_gaps
from loadtest.client.protocol import RequestClass

__all__ = [
    "MISMATCH_TOLERANCE",
    "class_slos",
    "good_mask",
    "request_itl_percentile",
    "slo_metric",
    "token_mismatch",
]

MISMATCH_TOLERANCE = 0.10
_METRICS = ("ttft", "ttft_from_intended", "tpot", "itl", "e2e")


def slo_metric(key: str) -> tuple[str, float] | None:
    """``"ttft_p95"`` → ``("ttft", 95.0)``; None for anything else (``attainment``, unknown keys)."""
    metric, sep, pct = key.rpartition("_p")
    if not sep or metric not in _METRICS:
        return None
    try:
        q = float(pct)
    except ValueError:
        return None
    return (metric, q) if 0 < q < 100 else None


def class_slos(classes: Iterable[RequestClass]) -> dict[str, dict[str, float]]:
    """``{class name: {slo key: threshold seconds or attainment fraction}}`` of the classes that have SLOs (a
    run's ``manifest.spec.request_classes``)."""
    out: dict[str, dict[str, float]] = {}
    for cls in classes:
        slo = {str(key): float(value) for key, value in cls.slo.items()}
        if slo:
            out[cls.name] = slo
    return out


def request_itl_percentile(values: np.ndarray, lengths: np.ndarray, q: float | Sequence[float]) -> np.ndarray:
    """Each row's own ``q``-th percentile (linear) of its gaps; NaN for rows without gaps. Several ``q`` give one
    row per ``q`` (shape ``(len(q), rows)``) from one selection. Rows of equal length are handled together as one 2-D
    block, so the cost is one vectorised percentile per distinct length; when every row with gaps has the same
    length (the usual case: fixed output lengths) the block is a view of ``values``, not a gathered copy."""
    qs = np.atleast_1d(np.asarray(q, dtype="float64"))
    out = np.full((qs.size, lengths.size), np.nan)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    distinct = np.unique(lengths[lengths > 0])
    for length in distinct:
        rows = np.flatnonzero(lengths == length)
        if distinct.size == 1:  # the values are exactly these rows' gaps, back to back
            block = values[: rows.size * length].reshape(rows.size, length)
        else:
            block = values[offsets[rows][:, None] + np.arange(length)]
        out[:, rows] = np.percentile(block, qs, axis=1)
    return out if np.ndim(q) else out[0]


def good_mask(records: pd.DataFrame, slos: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Boolean per row: succeeded and met every latency SLO of its class (see the module docstring)."""
    good = records["ok"].to_numpy(dtype=bool).copy()
    if not slos or not len(records):
        return good
    classes = records["request_class"].to_numpy(dtype=object)
    gaps: tuple[np.ndarray, np.ndarray] | None = None
    for name, slo in slos.items():
        rows = classes == name
        if not rows.any():
            continue
        for key, threshold in slo.items():
            parsed = slo_metric(key)
            if parsed is None:
                continue
            metric, q = parsed
            if metric == "itl":
                if gaps is None:
                    gaps = flat_gaps(records["chunk_gaps"])
                idx = np.flatnonzero(rows)
                sel = np.repeat(rows, gaps[1])
                value = np.full(len(records), np.nan)
                value[idx] = request_itl_percentile(gaps[0][sel], gaps[1][idx], q)
            else:
                value = records[metric].to_numpy(dtype="float64")
            broken = rows & ~np.isnan(value) & (value > threshold)
            good &= ~broken
    return good


def token_mismatch(records: pd.DataFrame, tolerance: float = MISMATCH_TOLERANCE) -> tuple[int, int]:
    """``(checked, mismatched)``: successful records with both a usage count and a client count, and those where
    ``|client − usage| / usage > tolerance``. The client counts content chunks, so a server that merges tokens
    into chunks (llama.cpp) shows a mismatch that is about chunks, not lost tokens."""
    if not len(records):
        return 0, 0
    usage = records["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    client = records["client_output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    source = records["token_source"].to_numpy(dtype=object)
    both = records["ok"].to_numpy(dtype=bool) & (source == "usage") & ~np.isnan(client) & (usage > 0)
    diff = np.abs(client[both] - usage[both]) / usage[both]
    return int(both.sum()), int((diff > tolerance).sum())
