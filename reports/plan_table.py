"""The `loadtest plan` output: the table and the JSON. Pure: plans in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from analysis.forecast import Forecast, format_volume
from analysis.pay_per_token import DEFAULT_MAX_REFUSED
from analysis.plan import ArchitecturePlan, PlanSlos
from analysis.prices import PriceBook

__all__ = [
    "PLAN_SCHEMA_VERSION",
    "PlanContext",
    "basis_line",
    "forecast_line",
    "format_break_even",
    "format_gpu_hour",
    "format_hardware",
    "format_money",
    "format_peak",
    "format_ppt",
    "format_ppt_cost",
    "format_provisioned",
    "format_pt_cost",
    "format_tokens",
    "render_hourly",
    "render_plan_json",
    "render_plan_table",
]

_DASH = "–"


def format_money(value: float | None) -> str:
    return _DASH if value is None else f"${value:,.0f}"


def format_tokens(value: float | None) -> str:
    return _DASH if value is None else format_volume(value)


def format_hardware(p: ArchitecturePlan) -> str:
    """``H100-80GB × 4 fp16``: the GPU, GPUs per replica (tensor-parallel size) and precision of one replica."""
    return f"{p.gpu_name} × {p.tensor_parallel} {p.dtype}"


def format_provisioned(p: ArchitecturePlan) -> str:
    if not p.feasible:
        return f"infeasible ({p.binds})"
    if p.model_units is not None:
        units = f"{p.model_units} model units"
        configured = None if p.workspace is None else p.workspace.configured()
        return units if configured is None else f"{units}; configured {configured}"
    if p.chunks is None or p.band_tokens_per_s is None:
        return _DASH
    band = f"{p.chunks} × {p.chunk_size:,.0f} = {p.band_tokens_per_s:,.0f} tok/s"
    if p.pt_autoscaled and p.min_chunks is not None and p.min_chunks != p.chunks:
        low = "0, scale to zero" if p.scales_to_zero else f"{p.min_chunks} × {p.chunk_size:,.0f}"
        band += f" (min {low})"
    if p.workspace is not None and (configured := p.workspace.configured()) is not None:
        band += f"; configured {configured}"
    return band


def format_pt_cost(p: ArchitecturePlan) -> str:
    """The PT cost, ``est.`` when any figure behind its price is the model's rather than the table's."""
    if p.pt_cost_per_month is None:
        return _DASH
    return format_money(p.pt_cost_per_month) + (" est." if p.pt_rate.estimated else "")


def format_gpu_hour(p: ArchitecturePlan) -> str:
    value = p.pt_rate.usd_per_gpu_hour
    return _DASH if value is None or not p.feasible else f"${value:,.2f}"


_SHORT_QUOTA = {
    "input_tokens_per_minute": "ITPM",
    "output_tokens_per_minute": "OTPM",
    "queries_per_hour": "QPH",
    "queries_per_second": "QPS",
}


def format_ppt(p: ArchitecturePlan) -> str:
    if p.ppt_fits is None:
        return "no quotas given"
    share = p.ppt_rate_limited_share or 0.0
    quota = _SHORT_QUOTA.get(p.ppt_quota or "", "")
    if p.ppt_fits:
        return "fits" if share == 0 else f"fits ({share:.1%} of peak 429, {quota})"
    return f"does not fit: {share:.0%} of peak 429 ({quota})"


def format_ppt_cost(p: ArchitecturePlan) -> str:
    """The pay-per-token cost of what is served, with the served share when the quotas refuse part of it."""
    text = format_money(p.ppt_cost_per_month)
    refused = p.ppt_refused_share or 0.0
    if p.ppt_cost_per_month is not None and refused >= 0.005:
        text += f" (serves {1 - refused:.0%})"
    return text


def format_break_even(p: ArchitecturePlan) -> str:
    if p.break_even_tokens_per_month is not None:
        return format_tokens(p.break_even_tokens_per_month)
    return "none (see note)" if p.break_even_note else _DASH


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a plan was asked with, beside its forecast: the SLOs, headroom, price table, hardware choices, the
    pay-per-token tolerance, the measured runs and the warnings."""

    slo: PlanSlos
    headroom: float
    prices: PriceBook
    gpu: str = "h100"
    dtype: str | None = None
    tp: int = 0
    max_refused: float = DEFAULT_MAX_REFUSED
    runs: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    endpoint: str | None = None  # plan --endpoint: the serving endpoint read from its workspace
    registered_model: tuple[str, str] | None = None  # plan --registered-model: (name, version) read from it


def render_plan_table(plans: Sequence[ArchitecturePlan], forecast: Forecast, context: PlanContext) -> str:
    rows = [
        (
            "architecture",
            "hardware",
            "SLO tok/s/replica",
            "mix/ref",
            "binds",
            "provisioned throughput",
            "GPUs",
            "PT $/month",
            "$/GPU-h",
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
                format_hardware(p),
                f"{p.replica_slo_tokens_per_s:,.0f}",
                f"{p.mix_ratio:.2f}",
                p.binds,
                format_provisioned(p),
                str(p.gpus),
                format_pt_cost(p),
                format_gpu_hour(p),
                format_ppt(p),
                format_ppt_cost(p),
                format_break_even(p),
                p.resource,
                p.source,
                p.confidence,
            )
        )
    text_columns = (0, 1, 4, 5, 9, 12, 13, 14)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i in text_columns else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(forecast_line(forecast) + f"; prices: {context.prices.label}")
    lines.append(basis_line(plans, context.prices))
    for p in plans:
        if (versus := p.configured_vs_recommended()) is not None and p.workspace is not None:
            lines.append(f"endpoint {p.workspace.endpoint}: {versus} ({p.architecture})")
        for note in p.notes:
            lines.append(f"note: {p.architecture}: {note}")
        if p.break_even_note:
            lines.append(f"note: {p.architecture}: {p.break_even_note}")
    return "\n".join(lines)


def render_hourly(plans: Sequence[ArchitecturePlan], forecast: Forecast) -> str:
    """``plan --hourly``: each hour of the profile — its load, the chunks each token-band row needs then, and the
    share of requests each row's pay-per-token quotas admit then."""
    prof = forecast.profile
    if prof is None:
        return "hourly: no --profile given (the forecast is one peak)"
    header = ["hour", "load", "tokens/min"]
    for p in plans:
        if p.pt_chunks_by_hour is not None:
            header.append(f"{p.architecture} chunks")
        if p.ppt_admitted_share_by_hour is not None:
            header.append(f"{p.architecture} PPT admitted")
    rows = [header]
    for hour, share in enumerate(prof.shares):
        row = [str(hour), f"{share:.0%}", f"{forecast.peak_tokens_per_min * share:,.0f}"]
        for p in plans:
            if p.pt_chunks_by_hour is not None:
                row.append(str(p.pt_chunks_by_hour[hour]))
            if p.ppt_admitted_share_by_hour is not None:
                row.append(f"{p.ppt_admitted_share_by_hour[hour]:.0%}" if share > 0 else _DASH)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_peak(forecast: Forecast) -> str:
    """The peak with its basis: ``1,800,000 tokens/min (9.23 req/s)``, or for a peak in flows/s the conversion
    with what it was measured over (:meth:`analysis.forecast.FlowPeak.describe`)."""
    if forecast.flows is not None:
        return forecast.flows.describe()
    return f"{forecast.peak_tokens_per_min:,.0f} tokens/min ({forecast.peak_requests_per_s:,.2f} req/s)"


def forecast_line(forecast: Forecast) -> str:
    """The forecast in one line: peak, mix, monthly volume and how it was found (profile, volume, load factor)."""
    if forecast.profile is not None:
        prof = forecast.profile
        volume = f"profile {prof.name} ({prof.hours} h, mean {prof.mean_share:.0%} of the peak)"
    elif forecast.monthly_tokens is not None:
        volume = "as given"
    else:
        volume = (
            f"peak × load factor {forecast.load_factor:g}; PT held at the peak's band, --profile autoscales"
        )
    return (
        f"forecast: peak {format_peak(forecast)} "
        f"at {forecast.prompt_tokens:,} in / {forecast.output_tokens:,} out; "
        f"{format_tokens(forecast.tokens_per_month)} tokens/month ({volume})"
    )


def basis_line(plans: Sequence[ArchitecturePlan], book: PriceBook) -> str:
    """Where every PT price comes from: the $/DBU and, when a row is estimated, the GPU-hour basis."""
    usd = f"${book.usd_per_dbu:g}/DBU" if book.usd_per_dbu is not None else "no usd_per_dbu (PT not priced)"
    if book.usd_per_dbu_source:
        usd += f" ({book.usd_per_dbu_source})"
    estimated = next((p for p in plans if p.pt_rate.estimated), None)
    gpu_hour = ""
    if estimated is not None:
        basis = estimated.gpu_hour_basis
        if basis.dbu_per_gpu_hour is None:
            gpu_hour = f"; {basis.how}"
        else:
            gpu_hour = (
                f"; est. = a chunk or model unit's size or price estimated by the model at "
                f"{basis.dbu_per_gpu_hour:,.0f} DBU per GPU-hour, from {basis.how}"
            )
    return f"cost basis: {usd}{gpu_hour}"


PLAN_SCHEMA_VERSION = 4


def render_plan_json(plans: Sequence[ArchitecturePlan], forecast: Forecast, context: PlanContext) -> str:
    """``plan --format json`` (documented field by field in docs/plan.md, versioned by ``schema_version``): the
    forecast and its profile, the SLOs, headroom, hardware choices, the price table and cost basis, measured runs
    and warnings, then one object per architecture."""
    book = context.prices
    prof = forecast.profile
    payload = {
        "schema_version": PLAN_SCHEMA_VERSION,
        "forecast": {
            "peak_tokens_per_min": forecast.peak_tokens_per_min,
            "peak_requests_per_s": forecast.peak_requests_per_s,
            "prompt_tokens": forecast.prompt_tokens,
            "output_tokens": forecast.output_tokens,
            "max_tokens": forecast.reserved_tokens,
            "load_factor": forecast.load_factor if forecast.monthly_tokens is None and prof is None else None,
            "tokens_per_month": forecast.tokens_per_month,
            "profile": None
            if prof is None
            else {
                "name": prof.name,
                "hours": prof.hours,
                "mean_share": prof.mean_share,
                "shares": list(prof.shares),
            },
        },
        "slo": {"ttft_s": context.slo.ttft_s, "tpot_s": context.slo.tpot_s},
        "headroom": context.headroom,
        "gpu": context.gpu,
        "dtype": context.dtype,
        "tp": context.tp or None,
        "max_refused": context.max_refused,
        "prices": book.label,
        "price_table": book.source,
        "cost_basis": {
            "usd_per_dbu": book.usd_per_dbu,
            "usd_per_dbu_source": book.usd_per_dbu_source,
            "dbu_per_gpu_hour": plans[0].gpu_hour_basis.dbu_per_gpu_hour if plans else book.dbu_per_gpu_hour,
            "how": plans[0].gpu_hour_basis.how if plans else None,
        },
        "measured_runs": [str(path) for path in context.runs],
        "endpoint": context.endpoint,
        "registered_model": None
        if context.registered_model is None
        else {"name": context.registered_model[0], "version": context.registered_model[1]},
        "warnings": list(context.warnings),
        "plans": [p.to_dict() for p in plans],
    }
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
