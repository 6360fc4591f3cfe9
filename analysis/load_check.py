"""Did each stage get the load it asked for, and did the generator keep up? Pure: records + stage windows in.

Per stage (windows come from the manifest, written by the engine):

* **offered** request rate = requests whose ``scheduled_at`` falls in the stage window / window length — what the
  generator put on the wire, compared with the target (rate stages) or the token target (token-rate stages, using
  usage counts of those requests: ``Σ prompt_tokens`` and ``Σ output_tokens`` per minute);
* **lag** = ``started_at − scheduled_at`` p50 / p99, arrivals that found no free user, arrivals dropped unsent at the
  end of the window, and the engine's CPU share;
* **loop delay** p50 / p99 / max: how late the engine's event loop woke a 10 ms timer while the stage was open
  (the worst worker's; :mod:`loadtest.engine.loopdelay`). Every timestamp the engine takes can be late by that
  much: a chunk that arrives while the loop is busy is stamped when its reader runs. ``None`` for runs made
  before the engine measured it;
* **capped** when arrivals found no free user (every one of ``max_concurrency`` requests in flight: the endpoint
  is past saturation for that cap; or users backing off after requests that got no response, which the reason
  then says) or were dropped unsent at the end of the window. Not a generator failure, but
  the stage did not offer its target: its lag is the wait for a free slot, and TTFT from intended start shows it;
* **engine saturated** when its loop delay p99 is above ``max_loop_delay_s`` (default 15 ms) — the delay measures
  the distortion itself, so a busy engine whose loop stays on time (one hammering a dead endpoint at 100 % of a
  core, loop delay p99 0.8 ms) is not saturated — or, for a run from before the delay was measured, its CPU share
  is at least ``SATURATED_CPU_SHARE`` (0.9 of a core). Closed-loop stages have no schedule to lag behind, so this is
  what catches a generator that distorts their latencies. The 15 ms lies between what was measured on the
  project's 2-core machine (``docs/performance.md``): a healthy engine's p99 was 1.1–5.9 ms (4–200 streams, up to
  34 % of a core); a saturated one's 23–25 ms at the generator's ceiling (95–96 % of a core), 71–99 ms behind
  1,000 streams (86–99.5 %; TTFTs 23–29 ms late at p50) and 44–54 ms behind 500 streams while it shared its core
  with the simulator (72–74 %: the CPU share alone misses that one). The engine at its edge — 256 short streams,
  87–93 % of a core — was at 7.7–10.8 ms, under the bound;
* a **Python scenario's** stage (its ``stage_end`` counts ``flows``): one arrival starts one flow, so its target
  rate is in flows/s. In requests/s (:func:`in_requests`) it is that rate × the stage's requests per flow
  (:func:`requests_per_flow`: the records / the flows of its ``stage_end``, retries and cancelled calls included —
  they were sent), so that the offered load, the capacity's X* and queue growth all compare requests with requests;
  the share of arrivals that waited or were dropped is over its flow arrivals;
* **kept up** unless the generator itself was late — lag p99 above ``max_lag_s`` (default 25 ms) in a stage that
  was not capped: such a stage's latencies omit the delay the generator caused (coordinated omission) — or its
  engine was saturated (capped or not: its timestamps are late).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loadtest.rundir import StageTarget, StageWindow

__all__ = [
    "DEFAULT_MAX_LAG_S",
    "DEFAULT_MAX_LOOP_DELAY_S",
    "MAX_WAITED_SHARE",
    "SATURATED_CPU_SHARE",
    "SCALE_OUT_CPU_SHARE",
    "StageLoad",
    "check_load",
    "falls_short",
    "in_requests",
    "offered_short",
    "requests_per_flow",
    "saturation",
]

DEFAULT_MAX_LAG_S = 0.025
DEFAULT_MAX_LOOP_DELAY_S = 0.015  # measured p99: healthy 1.1–5.9 ms, saturated 23–99 ms (docs/performance.md)
SATURATED_CPU_SHARE = 0.9  # of a core: the engine is one single-threaded event loop
# of a core: above it an engine's p99 timing error grows to several ms (docs/performance.md) — not saturated, but
# more processes would measure more truly (the validity's scale-out advice, analysis.validity)
SCALE_OUT_CPU_SHARE = 0.5
MAX_WAITED_SHARE = 0.01  # arrivals that waited for a free user or were dropped, of all arrivals in a stage


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
    loop_delay_p50_s: float | None
    loop_delay_p99_s: float | None
    loop_delay_max_s: float | None
    engine_saturated: bool
    kept_up: bool
    capped: bool
    reason: str | None
    unreachable: int = (
        0  # requests that got no response: a user backs off after each (loadtest.engine.health)
    )
    # a Python scenario's open-loop stage: its target in flows/s (a rate stage's; target_rps is that in requests/s)
    # and its arrivals (flows started, dropped ones included); None, and left out of the JSON, for any other stage
    target_flows_per_s: float | None = None
    flow_arrivals: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in _FLOW_FIELDS:
            if out[name] is None:
                del out[name]
        return out


_FLOW_FIELDS = ("target_flows_per_s", "flow_arrivals")


def requests_per_flow(meta: StageWindow) -> float | None:
    """A Python scenario's stage: its records / its flows (both from its ``stage_end``: every record sent, retries
    and cancelled calls included; every flow line that ended). None for a stage of requests (no ``flows``), one
    that ended no flow, or one from a run before the engine counted them."""
    if not meta.flows or meta.records is None:
        return None
    return meta.records / meta.flows


def in_requests(meta: StageWindow, rate: float | None) -> float | None:
    """A stage's arrival ``rate`` (its target, or a token-rate stage's starting rate) in requests/s: the rate itself
    for a stage of requests; for a Python scenario's stage, whose arrivals start flows, the flows/s × its
    :func:`requests_per_flow` (None when that is unknown)."""
    if rate is None or meta.flows is None:
        return rate
    per_flow = requests_per_flow(meta)
    return rate * per_flow if per_flow is not None else None


def _pct(values: np.ndarray, q: float) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if values.size else None


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def saturation(
    loop_delay_p99_s: float | None,
    cpu_share: float | None,
    max_loop_delay_s: float = DEFAULT_MAX_LOOP_DELAY_S,
) -> str | None:
    """Why the engine was saturated — ``"engine saturated: event-loop delay p99 84.0 ms > 15 ms, CPU 96% of a
    core ≥ 90%"``, each figure that is known, each bound only where it was crossed — or ``None`` when it was not."""
    slow = loop_delay_p99_s is not None and loop_delay_p99_s > max_loop_delay_s
    # the CPU share is the proxy for runs that did not measure the delay: a busy engine whose loop is on time
    # (one hammering a dead endpoint) takes its timestamps on time
    busy = loop_delay_p99_s is None and cpu_share is not None and cpu_share >= SATURATED_CPU_SHARE
    if not (slow or busy):
        return None
    parts = []
    if loop_delay_p99_s is not None:
        over = f" > {max_loop_delay_s * 1000:g} ms" if slow else ""
        parts.append(f"event-loop delay p99 {_ms(loop_delay_p99_s)}{over}")
    if cpu_share is not None:
        parts.append(f"CPU {cpu_share:.0%} of a core" + (f" ≥ {SATURATED_CPU_SHARE:.0%}" if busy else ""))
    return "engine saturated: " + ", ".join(parts)


def check_load(
    records: pd.DataFrame,
    stages: Sequence[StageWindow],
    max_lag_s: float = DEFAULT_MAX_LAG_S,
    max_loop_delay_s: float = DEFAULT_MAX_LOOP_DELAY_S,
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
        saturated = saturation(meta.loop_delay_p99_s, meta.generator_cpu_share, max_loop_delay_s)
        reasons = [saturated] if saturated else []
        if late and lag_p99 is not None:
            reasons.append(
                f"generator lag p99 {lag_p99 * 1000:.0f} ms > {max_lag_s * 1000:.0f} ms (see gen CPU)"
            )
        unreachable = _unreachable(df)
        if no_free:
            reasons.append(f"{no_free} arrivals waited for a free user ({_why_waited(unreachable)})")
        if dropped:
            reasons.append(f"{dropped} arrivals dropped unsent at the end of the window")
        flow_rate = target.rate if meta.flows is not None else None
        flow_arrivals = None  # a flow stage's open loop (a rate or token-rate stage): its arrivals are flows
        if meta.flows is not None and (target.rate or target.initial_rate) is not None:
            flow_arrivals = meta.arrivals if meta.arrivals is not None else meta.flows + dropped
        out.append(
            StageLoad(
                stage=label,
                kind=kind,
                window_s=window,
                target_rps=in_requests(meta, target.rate),
                offered_rps=offered_rps,
                target_tokens_per_min=token_target,
                offered_tokens_per_min=tokens,
                no_free_user=no_free,
                dropped=dropped,
                lag_p50_s=_pct(lag, 50),
                lag_p99_s=lag_p99,
                generator_cpu_share=meta.generator_cpu_share,
                loop_delay_p50_s=meta.loop_delay_p50_s,
                loop_delay_p99_s=meta.loop_delay_p99_s,
                loop_delay_max_s=meta.loop_delay_max_s,
                engine_saturated=saturated is not None,
                kept_up=not late and saturated is None,
                capped=capped,
                reason="; ".join(reasons) or None,
                unreachable=unreachable,
                target_flows_per_s=flow_rate,
                flow_arrivals=flow_arrivals,
            )
        )
    return out


def _unreachable(df: pd.DataFrame) -> int:
    """Requests that got no response at all (refused, reset, timed out before a status): after each, a user backs
    off (:mod:`loadtest.engine.health`), so an open-loop arrival can wait for a free user below the cap."""
    if not len(df) or "status" not in df or "error_class" not in df:  # a frame built by hand may lack them
        return 0
    error = df["error_class"]
    return int((df["status"].isna() & error.isin(("connection", "timeout"))).sum())


def _why_waited(unreachable: int) -> str:
    why = "the in-flight cap was reached"
    if unreachable:
        why += f", or users were backing off after {unreachable:,} requests that got no response"
    return why


def falls_short(expected: float, sent: float, per_arrival: float = 1.0) -> bool:
    """``sent`` requests are clearly fewer than the ``expected`` of a target rate: under 90 % of it and more than
    three Poisson standard deviations below (a short Poisson stage falls 10 % short by chance). The Poisson count is
    of arrivals: with ``per_arrival`` requests each (a Python scenario's requests per flow) both are taken in
    arrivals, whose count scatters by √n — in requests it scatters √per_arrival times more than √requests."""
    expected, sent = expected / per_arrival, sent / per_arrival
    return sent < 0.9 * expected and sent < expected - 3.0 * math.sqrt(expected)


def offered_short(load: StageLoad) -> str | None:
    """Why a stage did not offer its planned load (the in-flight cap, dropped arrivals, too few sent), or None. The
    arrivals are the requests sent in the window and the dropped ones; a Python scenario's, the flows it started
    (an arrival is a flow), dropped ones included."""
    window = load.window_s
    sent = (load.offered_rps or 0.0) * window if window else 0.0
    arrivals = load.flow_arrivals if load.flow_arrivals is not None else sent + load.dropped
    waited = max(load.no_free_user, load.dropped)  # a dropped arrival had found no free user too
    if arrivals and waited / arrivals > MAX_WAITED_SHARE:
        return (
            f"{waited:,} of {arrivals:,.0f} arrivals ({waited / arrivals:.1%}) waited for a free user or were "
            f"dropped ({_why_waited(load.unreachable)}; more than {MAX_WAITED_SHARE:.0%} is not the planned load)"
        )
    target = load.target_rps
    per_flow = target / load.target_flows_per_s if target and load.target_flows_per_s else 1.0
    if target and window and load.offered_rps is not None and falls_short(target * window, sent, per_flow):
        flows = f" ({load.target_flows_per_s:.3g} flows/s)" if load.target_flows_per_s else ""
        return f"offered {load.offered_rps:.3g} req/s of the {target:.3g} req/s planned{flows}"
    return None
