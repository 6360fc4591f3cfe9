"""The `loadtest plan` output: the table and the JSON. Pure: plans in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from analysis.plan import ArchitecturePlan, Forecast, PlanSlos

__all__ = [
    "PLAN_SCHEMA_VERSION",
    "format_money",
    "format_ppt",
    "format_provisioned",
    "format_tokens",
    "render_plan_json",
    "render_plan_table",
]

_DASH = "–"


def format_money(value: float | None) -> str:
    return _DASH if value is None else f"${value:,.0f}"


def format_tokens(value: float | None) -> str:
    if value is None:
        return _DASH
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:,.1f}{unit}"
    return f"{value:,.0f}"


def format_provisioned(p: ArchitecturePlan) -> str:
    if not p.feasible:
        return f"infeasible ({p.binds})"
    if p.model_units is not None:
        return f"{p.model_units} model units"
    if p.chunks is None or p.band_tokens_per_s is None:
        return _DASH
    return f"{p.chunks} × {p.chunk_size:,.0f} = {p.band_tokens_per_s:,.0f} tok/s"


def format_ppt(p: ArchitecturePlan) -> str:
    if p.ppt_fits is None:
        return "no quotas given"
    if p.ppt_fits:
        return "fits"
    share = p.ppt_rate_limited_share or 0.0
    return f"{share:.0%} of peak 429 ({p.ppt_quota})"


def render_plan_table(plans: Sequence[ArchitecturePlan], forecast: Forecast, price_label: str) -> str:
    rows = [
        (
            "architecture",
            "SLO tok/s/replica",
            "mix/ref",
            "binds",
            "provisioned throughput",
            "replicas",
            "PT $/month",
            "pay-per-token",
            "PPT $/month",
            "break-even tok/month",
            "resource",
            "source",
            "confidence",
        )
    ]
    for p in plans:
        rows.append(
            (
                p.architecture,
                f"{p.replica_slo_tokens_per_s:,.0f}",
                f"{p.mix_ratio:.2f}",
                p.binds,
                format_provisioned(p),
                str(p.replicas),
                format_money(p.pt_cost_per_month),
                format_ppt(p),
                format_money(p.ppt_cost_per_month),
                format_tokens(p.break_even_tokens_per_month),
                p.resource,
                p.source,
                p.confidence,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i in (0, 3, 4, 7, 10, 11, 12) else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(
        f"forecast: peak {forecast.peak_tokens_per_min:,.0f} tokens/min ({forecast.peak_requests_per_s:.2f} req/s) "
        f"at {forecast.prompt_tokens} in / {forecast.output_tokens} out; {format_tokens(forecast.tokens_per_month)} "
        f"tokens/month; prices: {price_label}"
    )
    for p in plans:
        for note in p.notes:
            lines.append(f"note: {p.architecture}: {note}")
    return "\n".join(lines)


PLAN_SCHEMA_VERSION = 1


def render_plan_json(
    plans: Sequence[ArchitecturePlan],
    forecast: Forecast,
    slo: PlanSlos,
    headroom: float,
    price_label: str,
    runs: Sequence[Path],
    gpu: str = "h100",
    warnings: Sequence[str] = (),
) -> str:
    """``plan --format json`` (documented field by field in docs/plan.md, versioned by ``schema_version``): the
    forecast, the SLOs, headroom, hardware, prices, measured runs and warnings, then one object per plan."""
    payload = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "forecast": {
            "peak_tokens_per_min": forecast.peak_tokens_per_min,
            "peak_requests_per_s": forecast.peak_requests_per_s,
            "prompt_tokens": forecast.prompt_tokens,
            "output_tokens": forecast.output_tokens,
            "max_tokens": forecast.max_tokens if forecast.max_tokens is not None else forecast.output_tokens,
            "load_factor": forecast.load_factor if forecast.monthly_tokens is None else None,
            "tokens_per_month": forecast.tokens_per_month,
        },
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s},
        "headroom": headroom,
        "gpu": gpu,
        "prices": price_label,
        "measured_runs": [str(path) for path in runs],
        "warnings": list(warnings),
        "plans": [p.to_dict() for p in plans],
    }
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
