"""Per-flow metrics of a Python scenario (``docs/metrics.md``, "Flows"): the one place a flow's figures are defined.

A **flow** is one run of a user's task: a line of ``flows.jsonl`` (:mod:`loadtest.rundir.flows`) and the request
records carrying its ``flow_id`` (:mod:`analysis.flow_data` reads both and checks that they join). Per stage (the
flow line's ``stage``: where the task began):

* **flow latency** (:func:`flow_latency`) = the latest ``ended_at`` − the earliest ``started_at`` over the flow's
  records, every attempt included (a retry's wait is the flow's too): from its first call's start to its last
  call's end, without the think time before the first call or after the last. A flow without records has none.
  Its percentiles are over the flows that ended ``ok``, with the 95 % interval of the capacity analysis
  (:func:`analysis.stage_points.percentile_interval`: order statistics, widened by sectioning for an open-loop
  stage);
* **calls per flow** (the line's ``calls``) and **tokens per flow** (its ``prompt_tokens`` / ``output_tokens``,
  the sums of its calls' usage): over the flows that ended ``ok`` (a failed flow stops early);
* **flows/s** = flows that ended ``ok`` / the stage's flow span, from the first flow's task start to the last
  flow's task end (the flows' ``started_at`` / ``ended_at``, the summaries' vLLM-style duration, for tasks);
* **flow goodput**: a flow is *good* when it ended ``ok`` and its latency is within every ``flow_e2e_pXX``
  threshold of the flow SLO (without a threshold: ended ``ok``; a flow without calls cannot break one);
  goodput = good flows / the span; **attainment** = good / the flows that ended, ``cancelled`` ones left out (the
  generator's, as cancelled requests are); the SLO's percentile and attainment are checked as a class's SLO is,
  point and interval (:class:`analysis.stage_points.SloCheck`).

Per step (the records' ``request_class``, among flow records, over the run): requests (retries included), errors,
TTFT and E2E percentiles of the successful ones, and the mean share of a successful request's prompt tokens the
server said came from its prefix cache (``cached_tokens / prompt_tokens``, over those that report it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from analysis.flow_data import (
    FlowCalls,
    FlowJoin,
    FlowTable,
    has_flows,
    join_check,
    read_flow_calls,
    read_flow_table,
)
from analysis.sections import section_of
from analysis.stage_points import (
    SloCheck,
    View,
    open_loop,
    percentile_check,
    percentile_interval,
    share_check,
)
from analysis.summary import PERCENTILES, percentiles
from loadtest.rundir import Manifest, StageWindow, read_manifest
from loadtest.rundir.flows import FLOW_OUTCOMES
from loadtest.spec.pyscenario import flow_latency_percentile

__all__ = [
    "SCENARIO_ERRORS_KEPT",
    "FlowAnalysis",
    "FlowJoin",
    "FlowRun",
    "FlowStage",
    "FlowStep",
    "ScenarioError",
    "analyze_flows",
    "flow_latency",
    "flow_slo_checks",
    "flow_slo_limits",
    "flows_of_run",
    "read_flow_run",
]

SCENARIO_ERRORS_KEPT: Final = 20  # distinct (where, message) groups of "error" flows kept, the most frequent


def flow_latency(calls: FlowCalls, n_flows: int) -> np.ndarray:
    """Each flow's latency in seconds (index: its line in the :class:`~analysis.flow_data.FlowTable`): the latest
    ``ended_at`` − the earliest ``started_at`` of its records, every attempt; NaN for a flow without records."""
    joined = calls.flow >= 0
    f = calls.flow[joined]
    first = np.full(n_flows, np.inf)
    last = np.full(n_flows, -np.inf)
    np.minimum.at(first, f, calls.started_at[joined])
    np.maximum.at(last, f, calls.ended_at[joined])
    with np.errstate(invalid="ignore"):
        latency: np.ndarray = last - first
    latency[~np.isfinite(latency)] = np.nan
    return latency


def flow_slo_limits(slo: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """``(key, percentile, seconds)`` of each ``flow_e2e_pXX`` in a flow SLO, in key order."""
    out = []
    for key, limit in sorted(slo.items()):
        q = flow_latency_percentile(key)
        if q is not None:
            out.append((key, q, float(limit)))
    return out


@dataclass(frozen=True, slots=True)
class FlowStage:
    """One stage's flows (the module docstring). ``started`` = ``ended`` (flow lines) + ``unfinished`` (flows seen
    only in records: no line). ``latency``: p50 … p99, mean and max of the ``latency_n`` latencies of the ``ok``
    flows (seconds; an ``ok`` flow without calls has none);
    ``latency_ci``: ``{"p95": (low, high)}`` (a bound None when there are too few flows). ``calls``: mean, p50 and
    max of the ``ok`` flows' calls."""

    stage: str
    started: int
    ended: int
    unfinished: int
    outcomes: dict[str, int]
    duration_s: float | None
    flows_per_s: float | None
    latency_n: int
    latency: dict[str, float | None]
    latency_ci: dict[str, tuple[float | None, float | None]]
    calls: dict[str, float | None]
    prompt_tokens_mean: float | None
    output_tokens_mean: float | None
    good: int
    goodput_per_s: float | None
    attainment: float | None
    checks: tuple[SloCheck, ...] = ()

    @property
    def judged(self) -> int:
        """The flows attainment is over: those that ended, but cancelled ones."""
        return self.ended - self.outcomes.get("cancelled", 0)

    def meets(self, view: View = "point") -> bool | None:
        """Whether every flow SLO check passes; None without a flow SLO or without a flow to judge."""
        if not self.checks or all(c.value is None for c in self.checks):
            return None
        return all(c.passed(view) for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["latency_ci"] = {k: list(v) for k, v in self.latency_ci.items()}
        out["checks"] = [c.to_dict() for c in self.checks]
        out.update(meets=self.meets("point"), meets_ci=self.meets("conservative"))
        return out


@dataclass(frozen=True, slots=True)
class FlowStep:
    """One step (a ``request_class`` among flow records) over the run: its records (retries included), the retries
    (``attempt`` > 0), the failed ones, TTFT and E2E p50 / p95 of the successful ones (seconds) and their mean
    cached share of the prompt (None when none reported it)."""

    step: str
    requests: int
    retries: int
    errors: int
    ttft: dict[str, float | None]
    e2e: dict[str, float | None]
    cached_share: float | None

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["error_share"] = self.error_share
        return out


@dataclass(frozen=True, slots=True)
class ScenarioError:
    """Flows that ended ``error`` (the scenario's own exception) with the same place and message."""

    where: str | None
    detail: str | None
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "detail": self.detail, "count": self.count}


@dataclass(frozen=True, slots=True)
class FlowAnalysis:
    """A run's flows: the flow SLO, per stage, per step, the join check and the scenario's errors (at most
    :data:`SCENARIO_ERRORS_KEPT` groups, the most frequent; ``error_flows`` counts them all)."""

    slo: dict[str, float]
    stages: tuple[FlowStage, ...]
    steps: tuple[FlowStep, ...]
    join: FlowJoin
    errors: tuple[ScenarioError, ...] = ()
    error_flows: int = 0
    error_groups: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "slo": dict(self.slo),
            "stages": [s.to_dict() for s in self.stages],
            "steps": [s.to_dict() for s in self.steps],
            "join": self.join.to_dict(),
            "errors": [e.to_dict() for e in self.errors],
            "error_flows": self.error_flows,
            "error_groups": self.error_groups,
        }


def _stage_order(flows: FlowTable, windows: Sequence[StageWindow], order: Sequence[str]) -> list[str]:
    present = set(flows.stage.tolist())
    named = [w.label for w in windows] + list(order) + list(dict.fromkeys(flows.stage.tolist()))
    return [label for label in dict.fromkeys(named) if label in present]


def _unfinished(calls: FlowCalls) -> Counter[str]:
    """Orphan flows per stage: the stage of each one's first record."""
    rows = np.flatnonzero(calls.orphan >= 0)
    if rows.size == 0:
        return Counter()
    rows = rows[np.lexsort((calls.started_at[rows], calls.orphan[rows]))]
    firsts = rows[np.r_[True, calls.orphan[rows][1:] != calls.orphan[rows][:-1]]]
    return Counter(calls.stages[c] if c >= 0 else "" for c in calls.stage[firsts])


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def _stage(
    label: str,
    flows: FlowTable,
    latency: np.ndarray,
    slo: Mapping[str, float],
    window: StageWindow | None,
    unfinished: int,
) -> FlowStage:
    rows = np.flatnonzero(flows.stage == label)
    outcome = flows.outcome[rows]
    outcomes = {name: 0 for name in FLOW_OUTCOMES} | dict(Counter(str(o) for o in outcome))
    ok = outcome == "ok"
    started, ended = flows.started_at[rows], flows.ended_at[rows]
    span = float(np.nanmax(ended) - np.nanmin(started)) if rows.size else 0.0
    duration = span if span > 0 else None
    sections = section_of(started)
    is_open = window is not None and open_loop(window)
    lat = latency[rows]
    quantiles: dict[str, float | None] = percentiles(lat[ok])
    ci: dict[str, tuple[float | None, float | None]] = {}
    for q in PERCENTILES:
        _, low, high, _ = percentile_interval(lat[ok], q, sections[ok], is_open)
        ci[f"p{q}"] = (low, high)
    limits = flow_slo_limits(slo)
    good = ok.copy()
    for _, _, limit in limits:
        good &= ~(lat > limit)  # NaN (no calls) cannot break it
    checks = [
        percentile_check(key, None, limit, lat[ok], q, sections[ok], is_open) for key, q, limit in limits
    ]
    counted = outcome != "cancelled"
    if "attainment" in slo:
        checks.append(
            share_check(
                "attainment", None, slo["attainment"], good[counted], sections[counted], True, is_open
            )
        )
    if "error_rate" in slo:  # the gate's flow_error_rate: flows that failed or raised, of those judged
        broke = (outcome == "failed") | (outcome == "error")
        checks.append(
            share_check(
                "error_rate", None, slo["error_rate"], broke[counted], sections[counted], False, is_open
            )
        )
    calls = flows.calls[rows][ok].astype("float64")
    return FlowStage(
        stage=label,
        started=int(rows.size) + unfinished,
        ended=int(rows.size),
        unfinished=unfinished,
        outcomes=outcomes,
        duration_s=duration,
        flows_per_s=float(ok.sum()) / duration if duration else None,
        latency_n=int((~np.isnan(lat[ok])).sum()),
        latency=quantiles,
        latency_ci=ci,
        calls={
            "mean": _mean(calls),
            "p50": float(np.median(calls)) if calls.size else None,
            "max": float(calls.max()) if calls.size else None,
        },
        prompt_tokens_mean=_mean(flows.prompt_tokens[rows][ok].astype("float64")),
        output_tokens_mean=_mean(flows.output_tokens[rows][ok].astype("float64")),
        good=int(good.sum()),
        goodput_per_s=float(good.sum()) / duration if duration else None,
        attainment=float(good[counted].mean()) if counted.any() else None,
        checks=tuple(checks),
    )


def _steps(calls: FlowCalls) -> tuple[FlowStep, ...]:
    out = []
    ttft = calls.first_token_at - calls.started_at
    e2e = calls.ended_at - calls.started_at
    with np.errstate(invalid="ignore", divide="ignore"):
        cached = calls.cached_tokens / calls.prompt_tokens
    cached[~(calls.prompt_tokens > 0)] = np.nan
    where = []
    for code, name in enumerate(calls.steps):
        rows = calls.step == code
        ok = rows & calls.ok
        steps = calls.step_index[rows]
        where.append(float(steps[steps >= 0].mean()) if (steps >= 0).any() else np.inf)
        out.append(
            FlowStep(
                step=name,
                requests=int(rows.sum()),
                retries=int((rows & (calls.attempt > 0)).sum()),
                errors=int((rows & ~calls.ok).sum()),
                ttft=percentiles(ttft[ok], (50, 95)),
                e2e=percentiles(e2e[ok], (50, 95)),
                cached_share=_mean(cached[ok]),
            )
        )
    ranked = sorted(zip(where, out, strict=True), key=lambda pair: (pair[0], pair[1].step))
    return tuple(step for _, step in ranked)


def _scenario_errors(flows: FlowTable) -> tuple[list[ScenarioError], int, int]:
    rows = np.flatnonzero(flows.outcome == "error")
    groups = Counter(zip(flows.where[rows].tolist(), flows.error_detail[rows].tolist(), strict=True))
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1], str(kv[0][0]), str(kv[0][1])))
    kept = [ScenarioError(where, detail, n) for (where, detail), n in ranked[:SCENARIO_ERRORS_KEPT]]
    return kept, int(rows.size), len(groups)


def analyze_flows(
    flows: FlowTable,
    calls: FlowCalls,
    slo: Mapping[str, float],
    windows: Sequence[StageWindow] = (),
    order: Sequence[str] = (),
) -> FlowAnalysis:
    """The flow analysis (the module docstring) of ``flows`` and their ``calls``, against the flow ``slo``
    (``{"flow_e2e_p95": 10.0, "attainment": 0.9}``); ``windows`` (the manifest's) say which stages are open loop
    and, with ``order``, the order of the stages."""
    latency = flow_latency(calls, len(flows))
    unfinished = _unfinished(calls)
    by_label = {w.label: w for w in windows}
    labels = _stage_order(flows, windows, order)
    labels += [s for s in unfinished if s not in labels and s]
    errors, error_flows, groups = _scenario_errors(flows)
    return FlowAnalysis(
        slo=dict(slo),
        stages=tuple(
            _stage(label, flows, latency, slo, by_label.get(label), unfinished.get(label, 0))
            for label in labels
        ),
        steps=_steps(calls),
        join=join_check(flows, calls),
        errors=tuple(errors),
        error_flows=error_flows,
        error_groups=groups,
    )


def flows_of_run(run_dir: Path, manifest: Manifest | None = None) -> FlowAnalysis | None:
    """The flow analysis of a run directory; None for a run without flows (no Python scenario in its spec and no
    ``flows.jsonl``)."""
    manifest = manifest if manifest is not None else read_manifest(run_dir)
    if not has_flows(run_dir, manifest):
        return None
    python = manifest.spec.python
    flows = read_flow_table(run_dir)
    calls = read_flow_calls(run_dir, flows)
    slo = python.slo if python is not None else {}
    return analyze_flows(flows, calls, slo, manifest.stages or (), manifest.stage_order)


@dataclass(frozen=True, slots=True)
class FlowRun:
    """A run's flows read once, to judge any of its stages against any flow SLO — the gate's thresholds
    (:mod:`analysis.gate_flows`) — with the figures and intervals of :func:`analyze_flows`. ``windows``: the
    manifest's, by label."""

    flows: FlowTable
    latency: np.ndarray
    unfinished: Counter[str]
    windows: Mapping[str, StageWindow]

    def stage(self, label: str, slo: Mapping[str, float]) -> FlowStage:
        """Stage ``label``'s flows against ``slo`` (a flow SLO's keys, or ``error_rate``: the share of the judged
        flows that ended ``failed`` or ``error``)."""
        return _stage(
            label, self.flows, self.latency, slo, self.windows.get(label), self.unfinished.get(label, 0)
        )

    def open_loop(self, label: str) -> bool:
        window = self.windows.get(label)
        return window is not None and open_loop(window)


def read_flow_run(run_dir: Path, manifest: Manifest) -> FlowRun | None:
    """A run directory's :class:`FlowRun`; None for a run without flows (as :func:`flows_of_run`)."""
    if not has_flows(run_dir, manifest):
        return None
    flows = read_flow_table(run_dir)
    calls = read_flow_calls(run_dir, flows)
    return FlowRun(
        flows,
        flow_latency(calls, len(flows)),
        _unfinished(calls),
        {w.label: w for w in manifest.stages or ()},
    )


# a flow SLO check's key beside the classes' checks of a stage (analysis.capacity): the gate's names for them
_CAPACITY_KEYS: Final = {"attainment": "flow_attainment", "error_rate": "flow_error_rate"}


def flow_slo_checks(run_dir: Path, manifest: Manifest) -> dict[str, tuple[SloCheck, ...]]:
    """Each stage's checks of the run's flow SLO (``[python] slo``), as :meth:`FlowRun.stage` computes them, keyed
    ``flow_e2e_pXX`` and ``flow_attainment`` (:attr:`SloCheck.is_flow`) so that they stand beside the classes' in a
    stage's point (:func:`analysis.capacity.capacity`). Empty for a run without flows or without a flow SLO; a stage
    without a flow to judge (:meth:`FlowStage.meets` is None) has none."""
    python = manifest.spec.python
    if python is None or not python.slo:
        return {}
    run = read_flow_run(run_dir, manifest)
    if run is None:
        return {}
    out: dict[str, tuple[SloCheck, ...]] = {}
    for label in dict.fromkeys(run.flows.stage.tolist()):
        stage = run.stage(str(label), python.slo)
        if stage.meets() is not None:
            out[str(label)] = tuple(replace(c, key=_CAPACITY_KEYS.get(c.key, c.key)) for c in stage.checks)
    return out
