"""The gate's flow metrics (:mod:`analysis.gate`): a Python scenario's flows in one stage, as
:class:`~analysis.gate_measures.Measure`. Pure: a run's :class:`~analysis.flows.FlowRun` in.

Each is what the flow analysis computes (:meth:`analysis.flows.FlowRun.stage`, the figures and intervals
``loadtest analyze`` and the report show), against the gate's limit:

* ``flow_e2e_pQ``: the Q-th percentile of the latencies of the flows that ended ``ok`` (first call's start → last
  call's end), with the order-statistic 95 % interval, widened by sectioning in an open-loop stage. An interval
  not bounded within the sample means nothing, as for a request percentile: the check is invalid;
* ``flow_error_rate``: flows that ended ``failed`` or ``error`` / flows that ended (``cancelled`` ones, the
  generator's, left out), with the Clopper–Pearson interval (an open-loop stage's widened by sectioning);
* ``flow_attainment``: flows that ended ``ok`` within every flow latency limit / the same flows, interval alike.
  The limits are the gate's ``flow_e2e`` thresholds for the stage (unscoped or scoped to it) when there are any,
  else the run's flow SLO's — as a request's are its class's (:func:`good_limits`).

A flow spans its steps' classes, so a flow threshold's scope is a stage or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from analysis.flows import FlowRun
from analysis.gate_measures import Measure
from loadtest.errors import ConfigError
from loadtest.spec.pyscenario import flow_latency_percentile
from loadtest.spec.slo_flags import Threshold

__all__ = ["flow_measure", "flow_missing", "good_limits", "not_a_stage"]


def not_a_stage(flag: str, scope: str, stages: Sequence[str]) -> ConfigError:
    return ConfigError(
        f"{flag}: a flow spans its steps' classes, so its scope is a stage ({', '.join(stages) or 'none'}), "
        f"not {scope!r}"
    )


def good_limits(thresholds: Sequence[Threshold], stage: str, own: Mapping[str, float]) -> dict[str, float]:
    """The flow latency limits a flow of ``stage`` must meet to be good: the gate's ``flow_e2e`` thresholds for the
    stage (unscoped or scoped to it) when there are any, else those of the run's flow SLO ``own``."""
    given = {
        t.metric: t.limit for t in thresholds if t.flow and t.kind == "latency" and t.scope in (None, stage)
    }
    return given or {k: v for k, v in own.items() if k != "attainment"}


def flow_measure(run: FlowRun, stage: str, metric: str, limit: float, good: Mapping[str, float]) -> Measure:
    """``metric`` (``flow_e2e_pQ``, ``flow_error_rate``, ``flow_attainment``) in ``stage`` (the module docstring);
    ``good``: the latency limits of a good flow (:func:`good_limits`)."""
    if metric == "flow_attainment":
        key, slo = "attainment", {**good, "attainment": limit}
    elif metric == "flow_error_rate":
        key, slo = "error_rate", {"error_rate": limit}
    else:
        key, slo = metric, {metric: limit}
    figures = run.stage(stage, slo)
    check = next(c for c in figures.checks if c.key == key)
    ok = figures.outcomes.get("ok", 0)
    if key in ("attainment", "error_rate"):
        return Measure(check.value, check.ci_low, check.ci_high, figures.judged, ok=ok)
    problem = None
    if check.value is not None and (check.ci_low is None or check.ci_high is None):
        q = f"{flow_latency_percentile(metric) or 0:g}"
        sections = " (in an open loop, also enough for each of its sections)" if run.open_loop(stage) else ""
        problem = (
            f"too few flows for a p{q}: {figures.latency_n:,} leave its 95 % interval unbounded{sections}"
        )
    return Measure(check.value, check.ci_low, check.ci_high, figures.latency_n, problem, ok=ok)


def flow_missing(metric: str, m: Measure) -> str:
    """Why a flow measure has no value."""
    if metric in ("flow_error_rate", "flow_attainment"):
        return "no flow ended in the stage (cancelled ones aside)"
    if m.ok == 0:
        return "no flow of the stage ended ok"
    return f"none of the stage's {m.ok:,} ok flows made a call"
