"""Did each stage get the load it asked for, and did the generator keep up? Pure: records + stage windows in.

Per stage (windows come from the manifest, written by the engine):

* **offered** request rate = requests whose ``scheduled_at`` falls in the stage window / window length — what the
  generator put on the wire, compared with the target (rate stages) or the token target (token-rate stages, using
  usage counts of those requests: ``Σ prompt_tokens`` and ``Σ output_tokens`` per minute);
* **lag** = ``started_at − scheduled_at`` p50 / p99, arrivals that found no free user, arrivals dropped unsent at the
  end of the window, and the engine's CPU share;
* **capped** when arrivals found no free user (every one of ``max_concurrency`` requests in flight: the endpoint
  is past saturation for that cap) or were dropped unsent at the end of the window. Not a generator failure, but
  the stage did not offer its target: its lag is the wait for a free slot, and TTFT from intended start shows it;
* **kept up** unless the generator itself was late: lag p99 above ``max_lag_s`` (default 25 ms) in a stage that was
  not capped. Such a stage's latencies omit the delay the generator caused (coordinated omission).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loadtest.rundir import StageTarget, StageWindow

__all__ = ["DEFAULT_MAX_LAG_S", "StageLoad", "check_load"]

DEFAULT_MAX_LAG_S = 0.025


@dataclass(frozen=True, slots=True)
class StageLoad:
    stage: str
    kind: str | None
    window_s: float | None
    target_rps: float | None
    offered_rps: float | None
    target_tokens_per_min: dict[str, float]
    offered_tokens_per_min: dict[str, float]
    no_free_user: int
    dropped: int
    lag_p50_s: float | None
    lag_p99_s: float | None
    generator_cpu_share: float | None
    kept_up: bool
    capped: bool
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _pct(values: np.ndarray, q: float) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if values.size else None


def check_load(
    records: pd.DataFrame, stages: Sequence[StageWindow], max_lag_s: float = DEFAULT_MAX_LAG_S
) -> list[StageLoad]:
    """One :class:`StageLoad` per stage window in ``stages`` (the manifest's ``stages``)."""
    out: list[StageLoad] = []
    for meta in stages:
        label = meta.label
        df = records[records["stage"] == label] if len(records) else records
        start, end = meta.start, meta.window_end
        window = float(end - start) if start is not None and end is not None and end > start else None
        target = meta.target or StageTarget(kind=None)
        kind = target.kind
        in_window = (
            df[(df["scheduled_at"] >= start) & (df["scheduled_at"] <= end)] if window else df.iloc[0:0]
        )
        offered_rps = len(in_window) / window if window else None
        with_usage = in_window[in_window["prompt_tokens"].notna() & in_window["output_tokens"].notna()]
        tokens: dict[str, float] = {}
        if window and len(with_usage):
            # scale the usage of requests that reported it to every request offered in the window
            scale = len(in_window) / len(with_usage)
            tin = float(with_usage["prompt_tokens"].astype("float64").sum()) * scale / window * 60
            tout = float(with_usage["output_tokens"].astype("float64").sum()) * scale / window * 60
            tokens = {"input": tin, "output": tout, "total": tin + tout}
        token_target = {
            key: float(value)
            for key, value in (
                ("total", target.tokens_per_min),
                ("input", target.input_tokens_per_min),
                ("output", target.output_tokens_per_min),
            )
            if value is not None
        }
        lag = df["lag"].to_numpy(dtype="float64") if len(df) else np.array([], dtype="float64")
        lag_p99 = _pct(lag, 99)
        no_free = int(meta.no_free_user or 0)
        dropped = int(meta.dropped or 0)
        capped = bool(no_free or dropped)
        late = lag_p99 is not None and lag_p99 > max_lag_s and not capped
        reasons = []
        if late and lag_p99 is not None:
            reasons.append(
                f"generator lag p99 {lag_p99 * 1000:.0f} ms > {max_lag_s * 1000:.0f} ms (see gen CPU)"
            )
        if no_free:
            reasons.append(f"{no_free} arrivals waited for a free user (the in-flight cap was reached)")
        if dropped:
            reasons.append(f"{dropped} arrivals dropped unsent at the end of the window")
        out.append(
            StageLoad(
                stage=label,
                kind=kind,
                window_s=window,
                target_rps=target.rate,
                offered_rps=offered_rps,
                target_tokens_per_min=token_target,
                offered_tokens_per_min=tokens,
                no_free_user=no_free,
                dropped=dropped,
                lag_p50_s=_pct(lag, 50),
                lag_p99_s=lag_p99,
                generator_cpu_share=meta.generator_cpu_share,
                kept_up=not late,
                capped=capped,
                reason="; ".join(reasons) or None,
            )
        )
    return out
