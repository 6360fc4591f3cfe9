"""The flows of a Python scenario (:mod:`analysis.flows`) as ``loadtest analyze`` prints them, and the cells and
sentences the HTML report's flow section shows too (one wording for both)."""

from __future__ import annotations

from collections.abc import Sequence

from analysis.flows import FlowAnalysis, FlowJoin, FlowStage, FlowStep, flow_slo_limits
from analysis.stage_points import SloCheck
from reports.console import format_ci, format_ms, text_table

__all__ = [
    "ERRORS_SHOWN",
    "STAGE_HEADER",
    "STEP_HEADER",
    "answer_line",
    "check_line",
    "interval_cell",
    "join_line",
    "render_flows",
    "seconds",
    "slo_text",
    "stage_cells",
    "step_cells",
    "verdict",
]

_DASH = "–"
ERRORS_SHOWN = 5  # scenario error groups shown, the most frequent
STAGE_HEADER = (
    "stage",
    "flows/s",
    "ok",
    "failed",
    "error",
    "cancelled",
    "unfinished",
    "latency p50",
    "p95",
    "p95 95 % CI",
    "p99",
    "calls/flow",
    "in tok/flow",
    "out tok/flow",
    "goodput/s",
    "attainment",
    "flow SLO",
)
STEP_HEADER = (
    "step",
    "requests",
    "retries",
    "errors",
    "TTFT p50",
    "TTFT p95",
    "E2E p50",
    "E2E p95",
    "cached",
)


def seconds(value: float | None) -> str:
    return _DASH if value is None else f"{value:,.2f} s"


def _number(value: float | None, digits: int = 1) -> str:
    return _DASH if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    return _DASH if value is None else f"{value:.1%}"


def verdict(stage: FlowStage) -> str:
    """``met`` / ``broken`` on the point values, with the conservative verdict when it differs; – without an SLO."""
    point = stage.meets("point")
    if point is None:
        return _DASH
    if not point:
        return "broken"
    return "met" if stage.meets("conservative") else "met (not at 95 %)"


def interval_cell(low: float | None, high: float | None) -> str:
    """A latency interval in a cell: ``3.00 s – 6.00 s``, ``from 3.00 s``, ``up to 6.00 s``, or – (too few flows)."""
    if low is None and high is None:
        return _DASH
    if high is None:
        return f"from {seconds(low)}"
    if low is None:
        return f"up to {seconds(high)}"
    return f"{seconds(low)} – {seconds(high)}"


def stage_cells(stage: FlowStage) -> tuple[str, ...]:
    """A stage's row under :data:`STAGE_HEADER`."""
    o = stage.outcomes
    low, high = stage.latency_ci.get("p95", (None, None))
    ci = interval_cell(low, high)
    return (
        stage.stage,
        _number(stage.flows_per_s, 2),
        f"{o.get('ok', 0):,}",
        f"{o.get('failed', 0):,}",
        f"{o.get('error', 0):,}",
        f"{o.get('cancelled', 0):,}",
        f"{stage.unfinished:,}",
        seconds(stage.latency.get("p50")),
        seconds(stage.latency.get("p95")),
        ci,
        seconds(stage.latency.get("p99")),
        f"{_number(stage.calls.get('mean'))} (p50 {_number(stage.calls.get('p50'), 0)}, "
        f"max {_number(stage.calls.get('max'), 0)})",
        _number(stage.prompt_tokens_mean, 0),
        _number(stage.output_tokens_mean, 0),
        _number(stage.goodput_per_s, 2),
        _share(stage.attainment),
        verdict(stage),
    )


def step_cells(step: FlowStep) -> tuple[str, ...]:
    """A step's row under :data:`STEP_HEADER` (latencies in ms)."""
    return (
        step.step,
        f"{step.requests:,}",
        f"{step.retries:,}",
        f"{step.errors:,} ({step.error_share:.1%})",
        format_ms(step.ttft.get("p50")),
        format_ms(step.ttft.get("p95")),
        format_ms(step.e2e.get("p50")),
        format_ms(step.e2e.get("p95")),
        _share(step.cached_share),
    )


def slo_text(analysis: FlowAnalysis) -> str:
    """The flow SLO in words: ``flow_e2e_p95 ≤ 10.00 s, attainment ≥ 90.0 %``, or that there is none."""
    parts = [f"{key} ≤ {seconds(limit)}" for key, _, limit in flow_slo_limits(analysis.slo)]
    if "attainment" in analysis.slo:
        parts.append(f"attainment ≥ {analysis.slo['attainment']:.1%}")
    return ", ".join(parts) if parts else "no flow SLO (good = ended ok)"


def check_line(stage: FlowStage, check: SloCheck) -> str:
    """One check of one stage with its basis: ``s1: flow_e2e_p95 5.70 s (limit ≤ 5.00 s): broken; 95 % CI from
    3.00 s, no upper bound; over 3 flows``."""
    if check.value is None:
        return f"{stage.stage}: {check.key}: no flow to judge"
    if check.key == "attainment":
        value, limit, sign, unit, n = f"{check.value:.1%}", f"{check.limit:.1%}", "≥", "%", stage.judged
        pair = (
            None if check.ci_low is None else 100 * check.ci_low,
            None if check.ci_high is None else 100 * check.ci_high,
        )
    else:
        value, limit, sign, unit, n = seconds(check.value), seconds(check.limit), "≤", "s", stage.latency_n
        pair = (check.ci_low, check.ci_high)
    state = "met" if check.passed("point") else "broken"
    if check.passed("point") and not check.passed("conservative"):
        state = "met, not at 95 %"
    interval = format_ci(pair, 1 if unit == "%" else 2, unit).replace("too few requests", "too few flows")
    return f"{stage.stage}: {check.key} {value} (limit {sign} {limit}): {state}; {interval}; over {n:,} flows"


def join_line(join: FlowJoin) -> str:
    """The join check in one sentence (:mod:`analysis.flow_data`)."""
    if join.is_exact:
        return f"every one of the {join.flows:,} flows joined its records exactly"
    parts = [f"{join.exact:,} of {join.flows:,} flows joined their records exactly"]
    if join.missing:
        parts.append(f"{join.missing:,} lack a step's record")
    if join.extra:
        parts.append(f"{join.extra:,} have a record beyond their steps or twice")
    if join.disordered:
        parts.append(f"{join.disordered:,} have their steps out of order")
    if join.orphan_records:
        parts.append(
            f"{join.orphan_records:,} record(s) of {join.orphan_flows:,} flow(s) have no flow line "
            "(flows that had not ended when the run stopped)"
        )
    if join.examples:
        parts.append("e.g. " + ", ".join(join.examples))
    return "; ".join(parts)


def _indent(lines: Sequence[str]) -> list[str]:
    return ["  " + line for line in lines]


def render_flows(analysis: FlowAnalysis) -> str:
    """``flows:`` — per stage, the flow SLO's checks, per step, the scenario's errors and the join check when it
    is not exact."""
    lines = [
        "flows (flow latency: first call's start to last call's end; over the flows that ended ok):",
        f"  flow SLO: {slo_text(analysis)}",
    ]
    if analysis.stages:
        lines += _indent(text_table([STAGE_HEADER, *(stage_cells(s) for s in analysis.stages)]))
    else:
        lines.append("  no flow ended")
    checks = [check_line(s, c) for s in analysis.stages for c in s.checks]
    if checks:
        lines += ["  flow SLO checks:", *_indent(_indent(checks))]
    if analysis.steps:
        lines.append("  per step (ms; retries included in requests):")
        lines += _indent(_indent(text_table([STEP_HEADER, *(step_cells(s) for s in analysis.steps)])))
    if analysis.error_flows:
        lines.append(f"  scenario errors (flows that ended with an exception): {analysis.error_flows:,}")
        for e in analysis.errors[:ERRORS_SHOWN]:
            lines.append(f"    {e.count:,}× {e.where or '(unknown place)'}: {e.detail or '(no message)'}")
        if analysis.error_groups > ERRORS_SHOWN:
            lines.append(f"    … and {analysis.error_groups - ERRORS_SHOWN:,} other place(s) or message(s)")
    if not analysis.join.is_exact:
        lines.append(f"  join check: {join_line(analysis.join)}")
    return "\n".join(lines)


def answer_line(analysis: FlowAnalysis) -> str:
    """The flows in one line for the end of ``loadtest run``: the stage with the most good flows per second, its
    flow latency p95, how the flow SLO fared per stage, and the scenario's errors."""
    if not analysis.stages:
        return "flows: no flow ended"
    best = max(analysis.stages, key=lambda s: s.goodput_per_s or 0.0)
    parts = [
        f"{_number(best.goodput_per_s, 2)} good flows/s at {best.stage} "
        f"(flow latency p95 {seconds(best.latency.get('p95'))}, {_number(best.calls.get('mean'))} calls/flow)"
    ]
    judged = [s for s in analysis.stages if s.meets("point") is not None]
    if judged:
        met = sum(1 for s in judged if s.meets("point"))
        parts.append(f"flow SLO ({slo_text(analysis)}) met in {met} of {len(judged)} stages")
    if analysis.error_flows:
        top = analysis.errors[0] if analysis.errors else None
        where = f" — most often {top.where}: {top.detail}" if top is not None and top.where else ""
        noun = "flow" if analysis.error_flows == 1 else "flows"
        parts.append(f"{analysis.error_flows:,} {noun} ended with the scenario's own exception{where}")
    return "flows: " + "; ".join(parts)
