"""The answer a run gives, as text: the verdict (X* with its interval, the SLOs, the binding limit, the knee) and
the plan's headline. One source for the report's first screen and the lines ``loadtest run`` ends with."""

from __future__ import annotations

from collections.abc import Mapping

from analysis.validity import SCALE_OUT
from reports.coldstart_text import cold_start_line
from reports.console import format_ci, format_ms, format_number
from reports.flow_text import answer_line as flow_answer_line
from reports.html.collect import RunView
from reports.plan_table import format_ppt, format_ppt_cost, format_provisioned, format_pt_cost

__all__ = ["answer_lines", "plan_line", "slo_text", "verdict_lines"]

_DASH = "–"


def _flow_slo(view: RunView) -> Mapping[str, float]:
    """A Python scenario's flow SLO (judged with the classes' in every stage: analysis.capacity), or none."""
    return view.flows.slo if view.flows is not None else {}


def slo_text(view: RunView) -> str:
    given = [*view.slos.items(), *([("flow SLO", _flow_slo(view))] if _flow_slo(view) else [])]
    if not given:
        return "no SLOs given"
    parts = []
    for cls, slo in given:
        limits = ", ".join(
            f"{k} ≥ {v:g}" if k == "attainment" else f"{k} ≤ {format_ms(v)} ms" for k, v in slo.items()
        )
        parts.append(f"{cls}: {limits}")
    return "; ".join(parts)


def verdict_lines(view: RunView) -> tuple[str, str, list[str]]:
    """(headline, interval, details) of the verdict, as text."""
    cap = view.capacity
    no_slos = not view.slos and not _flow_slo(view)
    if view.requests == 0:
        headline, interval = "no requests recorded", "the run has no records: there is nothing to judge"
    elif cap.max_rps is None:
        headline = "no SLO-compliant throughput" if not no_slos else "no throughput measured"
        interval = cap.basis
    else:
        what = "max throughput" if no_slos else "max SLO-compliant throughput"
        headline = (
            f"{what}: {cap.max_rps:,.2f} req/s · {format_number(cap.max_output_tok_per_s, 0)} output tok/s"
        )
        interval = f"{format_ci(cap.max_rps_ci, 2, 'req/s')}; {cap.basis}"
    details = [f"SLOs: {slo_text(view)}"]
    behind = [load.stage for load in view.loads if not load.kept_up]
    if behind:
        details.append(
            "binding limit: possibly the generator — it did not keep up in "
            + ", ".join(behind)
            + " (see validity)"
        )
    elif cap.limit is not None:
        details.append(f"binding limit: {cap.limit} — {cap.limit_detail}")
    else:
        details.append(f"binding limit: none reached — {cap.limit_detail}")
    if (
        cap.server_evidence
    ):  # what the endpoint's own metrics say, on the same line (the run's answer keeps it)
        details[-1] += "; server metrics: " + "; ".join(cap.server_evidence)
    if cap.knee_stage is not None:
        details.append(f"knee: {cap.knee_stage} ({format_number(cap.knee_rps, 2)} req/s)")
    return headline, interval, details


def plan_line(view: RunView) -> str:
    """The plan's headline: the first (measured) row's provisioning and both costs, for the forecast."""
    plan = view.plan
    if isinstance(plan, str):
        return f"Plan: {plan}"
    row = plan.rows[0]
    flags = "--peak-fps (flows/s) or --peak-tpm" if view.flows is not None else "--peak-tpm"
    example = f" (example forecast — set yours with {flags})" if plan.request.example else ""
    caveat, verb = "", "Provision"
    if plan.measured is not None and plan.measured.lower_bound and row.source.startswith("measured"):
        verb = "Provision at most"
        caveat = (
            " An upper bound on the count: every stage met the SLOs, so the endpoint was never pushed to its "
            "limit — sweep higher to size it."
        )
    flows = plan.forecast.flows
    per_flow = (
        f" ({flows.flows_per_s:,.4g} flows/s × {flows.tokens_per_flow:,.0f} tokens/flow × 60, measured over "
        f"{flows.flows:,} ok flows)"
        if flows is not None
        else ""
    )
    return (
        f"{verb} {row.architecture} — {row.source}: {format_provisioned(row)}, "
        f"{format_pt_cost(row)}/month; pay-per-token: {format_ppt(row)}, "
        f"{format_ppt_cost(row)}/month — for a peak of "
        f"{plan.forecast.peak_tokens_per_min:,.0f} tokens/min{per_flow}{example}.{caveat}"
    )


def answer_lines(view: RunView) -> list[str]:
    """What ``loadtest run`` prints last: why the run was stopped (its endpoint dead), the verdict, its interval,
    the binding limit, a Python scenario's flows, the plan, the advice to use more load processes
    (:data:`analysis.validity.SCALE_OUT`) and a warning when the run is doubtful or invalid for a gate."""
    headline, interval, details = verdict_lines(view)
    lines = [f"verdict: {headline}", f"  {interval}"]
    if view.manifest.failure is not None:
        lines.insert(0, f"stopped: {view.manifest.failure.reason}")
    lines += [f"  {d}" for d in details if d.startswith(("binding limit", "SLOs"))]
    lines += [cold_start_line(cs) for cs in view.cold_starts]
    if view.flows is not None:
        lines.append(flow_answer_line(view.flows))
    lines.append(f"plan: {plan_line(view).removeprefix('Plan: ')}")
    advice = view.validity.text_of(SCALE_OUT)
    if advice is not None:
        lines.append(f"{SCALE_OUT}: {advice}")
    doubtful = [label for label, _, flag in view.validity.items if flag]
    if view.validity.invalid:
        stages = sorted({p.stage or "the run" for p in view.validity.problems})
        lines.append(f"validity: invalid for a gate over {', '.join(stages)}: see the report")
    elif doubtful:
        lines.append(f"validity: doubtful ({', '.join(doubtful)}): see the report")
    return lines
