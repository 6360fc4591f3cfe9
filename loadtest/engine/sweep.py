"""The automatic sweep, as pure rules: which stages to run next and when to stop.

1. **Baseline**: one user, closed loop — the unloaded latency and the rate one user achieves, ``r₁``.
2. **Saturation probe**: ``max_concurrency`` users, closed loop — the most the endpoint completes, ``r_max``.
3. **Between**: ``points`` open-loop stages at ``r₁ + (r_max − r₁)·i/(points+1)``, i = 1…points (GuideLLM's
   sweep spacing, without the end points already measured), Poisson arrivals by default.

Stop early after a stage whose SLO is *clearly* broken — some class's measured percentile above 1.5× its
threshold — or whose queue grows without bound: the latency from intended start of the last third of its
requests is more than twice that of the first third, or arrivals found no free user. Later stages would only be
worse, and an open-loop stage beyond saturation only measures the queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BROKEN_FACTOR",
    "GROWTH_FACTOR",
    "StageObservation",
    "fold",
    "observe",
    "sweep_rates",
    "sweep_verdict",
]

BROKEN_FACTOR = 1.5
GROWTH_FACTOR = 2.0
_METRIC_INDEX = {"ttft": 0, "tpot": 1, "e2e": 2, "ttft_from_intended": 3}


@dataclass(slots=True)
class StageObservation:
    """What the conductor saw of one stage's successful requests, in completion order. For a Python scenario
    (``per_flow``) the completed rate counts the flows that ended ok (``flows_ok``): the sweep's open-loop stages
    are rates of flows, one arrival a flow."""

    scheduled: list[float]
    from_intended: list[float]  # first token (or end) − scheduled
    metrics: list[tuple[float, float, float, float]]  # ttft, tpot, e2e, ttft_from_intended (NaN if undefined)
    classes: list[str]
    ok: int = 0
    window_s: float = 0.0
    no_free_user: int = 0
    per_flow: bool = False
    flows_ok: int = 0

    @property
    def completed_rate(self) -> float:
        done = self.flows_ok if self.per_flow else self.ok
        return done / self.window_s if self.window_s > 0 else 0.0


def sweep_rates(baseline: float, saturation: float, points: int) -> list[float]:
    """Open-loop rates strictly between the baseline and the saturation rate."""
    return [baseline + (saturation - baseline) * i / (points + 1) for i in range(1, points + 1)]


def sweep_verdict(obs: StageObservation, slos: Mapping[str, Mapping[str, float]]) -> str | None:
    """Why the sweep should stop after this stage, or None to go on."""
    if obs.no_free_user:
        return f"{obs.no_free_user} arrivals found no free user: the endpoint is past saturation"
    n = len(obs.from_intended)
    if n >= 30:
        ordered = [x for _, x in sorted(zip(obs.scheduled, obs.from_intended, strict=True))]
        third = n // 3
        first, last = float(np.median(ordered[:third])), float(np.median(ordered[-third:]))
        if first > 0 and last > GROWTH_FACTOR * first:
            return f"the queue grows: latency from intended start {first:.3f}s → {last:.3f}s within the stage"
    for cls, slo in slos.items():
        rows = [m for m, c in zip(obs.metrics, obs.classes, strict=True) if c == cls]
        for key, threshold in slo.items():
            if key == "attainment":
                continue
            metric, _, pct = key.rpartition("_p")
            values = np.array(
                [r[_METRIC_INDEX[metric]] for r in rows if metric in _METRIC_INDEX], dtype=float
            )
            values = values[~np.isnan(values)]
            if values.size >= 10:
                measured = float(np.percentile(values, float(pct)))
                if measured > BROKEN_FACTOR * threshold:
                    return (
                        f"SLO clearly broken: {cls} {key} {measured:.3f}s > {BROKEN_FACTOR}× {threshold:.3f}s"
                    )
    return None


def observe(records: Sequence[Mapping[str, Any]]) -> StageObservation:
    """Build an observation from decoded records (tests; the engine folds records in one at a time)."""
    obs = StageObservation([], [], [], [])
    for r in records:
        fold(obs, r)
    return obs


def fold(obs: StageObservation, r: Mapping[str, Any]) -> None:
    """Fold one decoded record into ``obs`` (successful requests only)."""
    if r.get("error_class") is not None:
        return
    started, scheduled, ended = r["started_at"], r["scheduled_at"], r["ended_at"]
    first = r.get("first_token_at")
    out = r.get("output_tokens") or 0
    nan = float("nan")
    ttft = first - started if first is not None else nan
    tpot = (ended - started - ttft) / (out - 1) if first is not None and out > 1 else nan
    reached = first if first is not None else ended
    obs.ok += 1
    obs.scheduled.append(scheduled)
    obs.from_intended.append(reached - scheduled)
    obs.metrics.append((ttft, tpot, ended - started, first - scheduled if first is not None else nan))
    obs.classes.append(str(r.get("request_class")))
