"""The report's provisioning-plan section: the forecast and its assumptions, one row per architecture, the
measured row's basis, the notes, and the plan's charts."""

from __future__ import annotations

from reports.console import format_ms
from reports.html.blocks import escape as _e
from reports.html.blocks import table as _table
from reports.html.charts import cost_volume_chart, figure_html, plan_chart
from reports.html.collect import RunView
from reports.plan_table import (
    basis_line,
    format_break_even,
    format_gpu_hour,
    format_hardware,
    format_peak,
    format_ppt,
    format_ppt_cost,
    format_provisioned,
    format_pt_cost,
    format_tokens,
)

__all__ = ["plan_section"]


def plan_section(view: RunView, vid: str) -> str:
    plan = view.plan
    if isinstance(plan, str):
        return f'<section id="{vid}-plan"><h3>Provisioning plan</h3><p>{_e(plan)}</p></section>'
    f = plan.forecast
    example = (
        " This is an example forecast, not yours: set [plan] peak_tpm or --peak-tpm."
        if plan.request.example
        else ""
    )
    slos = (
        ", ".join(
            f"{name} ≤ {format_ms(value)} ms (mean)"
            for name, value in (("TTFT", plan.slos.ttft_s), ("TPOT", plan.slos.tpot_s))
            if value
        )
        or "none"
    )
    if plan.slos.ttft_s is not None or plan.slos.tpot_s is not None:
        slos += (
            " — the tightest of the run's percentile SLOs, which the model checks on its mean latencies, so "
            "estimated rows are optimistic against a percentile"
        )
    shape = (
        f" (hourly profile {f.profile.name}: mean {f.profile.mean_share:.0%} of the peak; token bands autoscale "
        "hour by hour)"
        if f.profile is not None
        else " (the peak's band held all month)"
    )
    intro = (
        f"Forecast: peak {format_peak(f)} at the run's "
        f"mix of {f.prompt_tokens} in / {f.output_tokens} out, {format_tokens(f.tokens_per_month)} tokens/month"
        f"{shape}; "
        f"headroom {plan.request.headroom:.0%}; SLOs {slos}; GPU {plan.gpu}; prices: {plan.prices.label}.{example}"
    )
    rows = [
        [
            r.architecture,
            format_hardware(r),
            r.source,
            f"{r.replica_slo_tokens_per_s:,.0f}",
            f"{r.mix_ratio:.2f}",
            r.binds,
            format_provisioned(r),
            str(r.gpus),
            format_pt_cost(r),
            format_gpu_hour(r),
            format_ppt(r),
            format_ppt_cost(r),
            format_break_even(r),
        ]
        for r in plan.rows
    ]
    table = (
        _table(
            [
                "architecture",
                "hardware",
                "basis",
                "SLO tok/s per replica",
                "mix / reference",
                "binds",
                "provisioned throughput",
                "GPUs",
                "PT $/month",
                "$ per GPU-hour",
                "pay-per-token",
                "PPT $/month",
                "break-even tokens/month",
            ],
            rows,
            text=(0, 1, 2, 5, 6, 10),
        )
        + f'<p class="note">{_e(basis_line(plan.rows, plan.prices))}</p>'
    )
    measured = plan.measured
    basis = ""
    if measured is not None:
        ci = f"± {measured.relative_ci:.0%}, 95 %" if measured.relative_ci is not None else "no interval"
        bound = " (a lower bound: every stage met the SLOs)" if measured.lower_bound else ""
        basis = (
            f"<p>Measured row: {measured.slo_tokens_per_s:,.0f} tokens/s within the SLOs on a band of "
            f"{measured.band_tokens_per_s:,.0f} tokens/s ({_e(ci)}){_e(bound)}; "
            f"limit: {_e(measured.limit_detail)}. Estimated rows are the roofline model's "
            "(docs/capacity-model.md), not measured.</p>"
        )
    notes = "".join(f"<li>{_e(r.architecture)}: confidence {_e(r.confidence)}</li>" for r in plan.rows)
    notes += "".join(
        f"<li>{_e(r.architecture)}: {_e(n)}</li>"
        for r in plan.rows
        for n in (*r.notes, *([r.break_even_note] if r.break_even_note else []))
    ) + "".join(f"<li>{_e(n)}</li>" for n in plan.notes)
    notes_html = f'<ul class="note">{notes}</ul>' if notes else ""
    charts = figure_html(plan_chart(f"{vid}-plan-chart", plan.rows)) + figure_html(
        cost_volume_chart(f"{vid}-cost-volume", plan.rows[0], f)
    )
    return (
        f'<section id="{vid}-plan"><h3>Provisioning plan</h3><p>{_e(intro)}</p>{basis}{table}{notes_html}{charts}'
        "</section>"
    )
