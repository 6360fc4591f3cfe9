"""Provisioning recommendations per model architecture: provisioned throughput or pay-per-token, and the cost.

For each candidate architecture (on one GPU type) and a forecast (peak tokens/min with a mix), SLOs and headroom:

* **SLO capacity of one replica at the user's mix**, ``K_slo``: the largest closed-loop concurrency whose predicted
  mean TTFT and TPOT (:func:`loadtest.model.predict.predict_closed_loop`, the same model the simulator runs) stay
  within the SLOs, times its total tokens/s. *Estimated* — labelled so — unless a measured value is given.
* **Nominal capacity** at Databricks' reference mix (2,048 in / 256 out), ``K_ref``: what a band's tokens/s are
  quoted against. The ratio ``r = K_slo / K_ref`` is how many of the band's nominal tokens/s the user's mix gets.
* **Provisioned throughput (token bands)**: chunks ``= ⌈D·(1 + h) / (r · c)⌉`` with ``D`` the peak tokens/s, ``h``
  the headroom and ``c`` the ``throughput_chunk_size``; ``max_provisioned_throughput = chunks · c``. With an hourly
  profile the band follows it: each hour's chunks cover that hour's mean plus headroom, the quietest hour's count is
  ``min_provisioned_throughput`` (0: scale to zero, with a cold-start caveat), and the month is billed hour by hour.
  **Model units**: units ``= ⌈D·(1 + h) / (r · u)⌉`` with ``u`` the tokens/s of one unit at the reference mix; they
  do not autoscale (as published for Llama 4 Maverick), so they are billed at the peak's count all month.
  ``c``, ``u`` and their price per hour follow the hardware (:mod:`analysis.cost_basis`): from the price table when
  it gives them, else estimated from the GPU slice one increment stands for and the plan's one GPU-hour basis.
* **Pay-per-token** (:mod:`analysis.pay_per_token`): hour by hour (the profile's hours, else the month's average
  rate), the admitted rate under the quotas (:func:`loadtest.model.quota.ppt_admitted_rate`: input tokens against
  ITPM, ``max_tokens`` reserved against OTPM for the request's model-predicted duration, QPH/QPS); priced for what
  is served. It *fits* when at most ``max_refused`` of the peak's requests are refused (HTTP 429).
* **Cost per month** (730 h). **Break-even**: the monthly volume at which pay-per-token costs what the PT plan does
  — given only when the forecast's peak (all month) and the quotas can reach it, else the reason.

Prices and quotas come from a user-editable TOML table (:mod:`analysis.prices`); a measured capacity replaces the
estimate when a run is given (:mod:`analysis.measured`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from analysis.cost_basis import (
    GpuHourBasis,
    PtRate,
    WorkspaceFacts,
    gpu_hour_basis,
    model_unit_gpus,
    pt_rate,
    reference_mix,
)
from analysis.forecast import HOURS_PER_MONTH, Forecast
from analysis.measured import Measured
from analysis.pay_per_token import DEFAULT_MAX_REFUSED, break_even, pay_per_token
from analysis.prices import PriceBook
from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import check_architecture
from loadtest.model.hardware import Dtype
from loadtest.model.predict import (
    Resource,
    bounding_resource,
    predict_closed_loop,
    reference_tokens_per_s,
    saturation,
)
from loadtest.model.quota import LimitType
from loadtest.model.roofline import Deployment, kv_capacity_tokens
from loadtest.model.serving import DEFAULT_MAX_BATCH, ServingConfig

__all__ = [
    "ArchitecturePlan",
    "PlanSlos",
    "plan",
    "slo_capacity",
]


@dataclass(frozen=True, slots=True)
class PlanSlos:
    """The latency SLOs the plan must meet (seconds); the model predicts means, so these are checked on means."""

    ttft_s: float | None = None
    tpot_s: float | None = None


# plan --format json's names for two fields
_JSON_KEYS = {"breached_slo": "binding", "ppt_quota": "ppt_binding_limit"}


@dataclass(frozen=True, slots=True)
class ArchitecturePlan:
    architecture: str
    deployment: str
    provisioning: str
    gpu_name: str  # the GPU profile's name, e.g. H100-80GB (the plan's `gpu` is the catalog key, h100)
    tensor_parallel: int  # GPUs per replica
    dtype: str
    source: str
    confidence: str
    replica_slo_tokens_per_s: float
    replica_reference_tokens_per_s: float
    reference_mix: tuple[int, int]  # the mix a band's / unit's nominal tokens/s are quoted at
    mix_ratio: float
    slo_concurrency: int | None  # None when measured
    breached_slo: str | None  # estimated: the SLO one more user would break (ttft / tpot), or saturation
    measured_limit: str | None  # measured: what bound the run's capacity (CapacityResult.limit_detail)
    resource: Resource  # what bounds a replica at that load (loadtest.model.predict.bounding_resource)
    pt_rate: PtRate  # one chunk / model unit: tokens/s, GPU slice, DBUs and $ per hour, and their basis
    gpu_hour_basis: GpuHourBasis  # the plan's DBUs per GPU-hour, which estimated PT prices use
    price_source: str | None  # the price-table entry's `source` (default's when the architecture has none)
    chunk_size: float | None
    chunks: int | None  # the band at the peak (max_provisioned_throughput / chunk_size)
    min_chunks: int | None  # the band in the quietest hour (min_provisioned_throughput / chunk_size)
    band_tokens_per_s: float | None
    model_units: int | None
    replicas: int  # at the peak
    gpus: int  # replicas × tensor_parallel, at the peak
    pt_autoscaled: bool  # billed hour by hour between min and max band (a profile and a token band)
    pt_chunks_by_hour: (
        tuple[int, ...] | None
    )  # the band each hour of the profile needs, in chunks (autoscaled)
    pt_cost_per_month: float | None
    ppt_fits: bool | None
    ppt_rate_limited_share: float | None  # of the peak's requests
    ppt_quota: LimitType | None  # the quota that binds at the peak
    ppt_refused_share: float | None  # of the month's volume
    ppt_admitted_share_by_hour: (
        tuple[float, ...] | None
    )  # each profile hour's requests admitted (with quotas)
    ppt_served_tokens_per_month: float | None
    ppt_usd_per_token: float | None  # blended over the mix
    ppt_cost_per_month: float | None
    ppt_ceiling_tokens_per_month: float | None  # the most the quotas admit in a month (None: no quota)
    break_even_tokens_per_month: float | None
    break_even_note: str | None  # why there is no break-even volume, when there is none
    notes: tuple[str, ...] = field(default_factory=tuple)
    workspace: WorkspaceFacts | None = None  # plan --endpoint / --registered-model: what the workspace said

    def configured_vs_recommended(self) -> str | None:
        """``configured 0–1,940 tok/s; recommended 2,910 at peak`` for a row planned from an endpoint's workspace."""
        configured = None if self.workspace is None else self.workspace.configured()
        if configured is None:
            return None
        if self.model_units is not None:
            recommended = f"{self.model_units:,} model units"
        elif self.band_tokens_per_s is not None:
            recommended = f"{self.band_tokens_per_s:,.0f} tok/s"
        else:
            recommended = "none (infeasible)"
        return f"configured {configured}; recommended {recommended} at peak"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "measured_limit":
                continue  # shown in `binds`
            value = getattr(self, name)
            out[_JSON_KEYS.get(name, name)] = self.binds if name == "breached_slo" else value
        out["pt_rate"] = self.pt_rate.to_dict()
        out["gpu_hour_basis"] = {
            "dbu_per_gpu_hour": self.gpu_hour_basis.dbu_per_gpu_hour,
            "how": self.gpu_hour_basis.how,
        }
        out["reference_mix"] = list(self.reference_mix)
        out["pt_estimated"] = self.pt_rate.estimated
        out["workspace"] = None if self.workspace is None else self.workspace.to_dict()
        out["feasible"] = self.feasible
        return out

    @property
    def feasible(self) -> bool:
        """Can this architecture meet the SLOs at the forecast's mix at all? Not when one replica, unloaded, is
        already too slow: then no count of chunks or units helps."""
        return self.replicas > 0

    @property
    def scales_to_zero(self) -> bool:
        return self.pt_autoscaled and self.min_chunks == 0

    @property
    def binds(self) -> str:
        """What bounds the row's capacity, as the table and the JSON say it: the breached SLO (estimated) or
        ``measured: <the run's limit>``."""
        if self.breached_slo is not None:
            return self.breached_slo
        return f"measured: {self.measured_limit}" if self.measured_limit else "measured"


def _meets(pred_ttft: float, pred_tpot: float | None, slo: PlanSlos) -> str | None:
    """Which SLO a prediction breaks, or None."""
    if slo.ttft_s is not None and pred_ttft > slo.ttft_s:
        return "ttft"
    if slo.tpot_s is not None and pred_tpot is not None and pred_tpot > slo.tpot_s:
        return "tpot"
    return None


def slo_capacity(config: ServingConfig, prompt: int, output: int, slo: PlanSlos) -> tuple[float, int, str]:
    """(tokens/s, concurrency, breached SLO) of one replica at the largest closed-loop concurrency meeting ``slo``.

    Searched by doubling then bisection up to the saturation concurrency; the SLO is the one that the next
    concurrency would break, or ``saturation`` when throughput stops growing first.
    """
    top = saturation(config, prompt, output).concurrency

    def tokens(c: int) -> tuple[float, str | None]:
        pred = predict_closed_loop(config, c, prompt, output, start="spread")
        return pred.requests_per_s * (prompt + output), _meets(pred.ttft_s, pred.tpot_s, slo)

    _, broken = tokens(1)
    if broken is not None:
        return 0.0, 0, broken
    low, high = 1, 2
    while high < top and tokens(high)[1] is None:
        low, high = high, min(high * 2, top)
    if high >= top and tokens(top)[1] is None:
        return tokens(top)[0], top, "saturation"
    while high - low > 1:
        mid = (low + high) // 2
        if tokens(mid)[1] is None:
            low = mid
        else:
            high = mid
    return tokens(low)[0], low, tokens(high)[1] or "saturation"


def _measured_ratio(
    measured: Measured,
    config: ServingConfig,
    mix: tuple[int, int],
    slo: PlanSlos,
    k_slo_model: float,
    notes: list[str],
) -> float:
    """The measured ``r``; when the run's mix is more than 10 % off the forecast's (input or output), scaled by
    the model's ratio between the two mixes (the run sets the level, the model the shape)."""
    ratio = measured.slo_tokens_per_s / measured.band_tokens_per_s
    if measured.mix is None or all(
        abs(a - b) <= 0.1 * max(b, 1) for a, b in zip(measured.mix, mix, strict=True)
    ):
        return ratio
    at_run = slo_capacity(config, *measured.mix, slo)[0]
    if at_run <= 0:
        notes.append(
            f"measured at {measured.mix[0]} in / {measured.mix[1]} out; not rescaled (model has no capacity there)"
        )
        return ratio
    factor = k_slo_model / at_run
    notes.append(
        f"measured at {measured.mix[0]} in / {measured.mix[1]} out, scaled to this mix by the model (×{factor:.2f})"
    )
    return ratio * factor


@dataclass(frozen=True, slots=True)
class _Setup:
    """What every row of one plan shares: hardware choices, the cost basis, the tolerance."""

    gpu: str
    dtype: Dtype | None
    tp: int
    headroom: float
    max_batch: int
    max_refused: float
    prices: PriceBook
    basis: GpuHourBasis
    unit_gpus: float


def _count(demand: float, per_increment: float) -> int:
    """Increments covering ``demand`` tokens/s (0 for none); a relative 1e-9 slack keeps an exact fit exact."""
    return 0 if demand <= 0 else math.ceil(demand / per_increment * (1 - 1e-9))


def _provision(
    forecast: Forecast, setup: _Setup, rate: PtRate, effective: float, k_ref: float, notes: list[str]
) -> tuple[int, list[int], bool, float | None, int]:
    """(increments at the peak, increments each hour, autoscaled?, $ per month, replicas at the peak).

    ``effective``: tokens/s of the forecast's mix one increment delivers within the SLOs (``r × tokens``). Token
    bands follow a profile hour by hour (each hour's band covers its mean plus headroom); model units, and every
    forecast without a profile, hold the peak's count all month."""
    peak = _count(forecast.peak_tokens_per_s * (1 + setup.headroom), effective)
    replicas = math.ceil(peak * rate.tokens_per_s / k_ref * (1 - 1e-9))
    hours = [peak]
    autoscaled = forecast.profile is not None and rate.unit == "chunk"
    if autoscaled:
        assert forecast.profile is not None
        hours = [
            _count(forecast.peak_tokens_per_s * share * (1 + setup.headroom), effective)
            for share in forecast.profile.shares
        ]
        idle = sum(1 for n in hours if n == 0)
        if idle:
            notes.append(
                f"scales to zero in {idle} of the profile's {len(hours)} hours: the first request after idle waits "
                "for a cold start, which this plan does not model (measure it before relying on it)"
            )
    elif forecast.profile is not None:
        notes.append(
            "model-unit endpoints do not autoscale (published for Llama 4 Maverick, assumed for every model-unit "
            "model): billed at the peak's units every hour"
        )
    cost = None
    if rate.usd_per_hour is not None:
        cost = sum(hours) / len(hours) * HOURS_PER_MONTH * rate.usd_per_hour
    return peak, hours, autoscaled, cost, replicas


def _plan_one(
    arch_key: str,
    forecast: Forecast,
    slo: PlanSlos,
    setup: _Setup,
    measured: Measured | None,
    workspace: WorkspaceFacts | None = None,
) -> ArchitecturePlan:
    arch = ARCHITECTURES[arch_key]
    dep = Deployment.of(arch_key, setup.gpu, tp=setup.tp, dtype=setup.dtype)
    if kv_capacity_tokens(dep) == 0:
        raise ValueError(
            f"its weights ({dep.weight_bytes / 1e9:,.0f} GB in {dep.dtype}) leave no room for a KV cache on "
            f"{dep.tp} × {dep.gpu.name}: give a larger --tp"
        )
    config = ServingConfig(dep, max_batch=setup.max_batch)
    p, o = forecast.prompt_tokens, forecast.output_tokens
    notes: list[str] = []
    ref_mix = reference_mix(arch_key)
    if arch.kind == "embedding" and p > arch.context:  # reads only: clipped to its context
        notes.append(
            f"inputs of {p:,} tokens exceed the {arch.context:,}-token context: the same requests/s sized and priced "
            f"as truncated to {arch.context:,} tokens"
        )
        kept = arch.context / p
        forecast = replace(
            forecast,
            peak_tokens_per_min=forecast.peak_tokens_per_min * kept,
            prompt_tokens=arch.context,
            monthly_tokens=None if forecast.monthly_tokens is None else forecast.monthly_tokens * kept,
        )
        p = arch.context
    k_ref = reference_tokens_per_s(config, ref_mix)
    k_slo, slo_conc, breached = slo_capacity(config, p, o, slo)
    conc: int | None = slo_conc
    source, confidence = (
        "estimated (roofline model)",
        "model: 6.9 % median, 24.6 % worst error on 24 published points",
    )
    if arch.kind == "embedding":
        confidence = "model: no published embedding benchmark to hold it against; measure before buying"
    ratio = k_slo / k_ref if k_ref > 0 else 0.0
    if measured is not None:
        ratio = _measured_ratio(measured, config, (p, o), slo, k_slo, notes)
        k_slo, conc = ratio * k_ref, None
        source = f"measured ({measured.run or 'run'})"
        if measured.relative_ci is None:
            confidence = "measured; no 95 % CI (too few requests for the SLO percentiles' bounds)"
        else:
            confidence = f"±{measured.relative_ci:.0%} (95 % CI of the measured SLO capacity)"
        if measured.slos:
            notes.append(f"measured against the run's SLOs ({measured.slos})")
        if measured.lower_bound:
            notes.append(
                "every measured stage met the SLOs: the capacity is a lower bound, the count an upper one"
            )
    resolved = setup.prices.resolve(arch_key)
    entry = resolved.entry
    if (note := resolved.note(arch_key)) is not None:
        notes.append(note)
    rate = pt_rate(
        dep, setup.max_batch, entry, setup.basis, setup.prices.usd_per_dbu, setup.unit_gpus, workspace
    )
    if dep.tp == 16:
        notes.append(
            "TP 16 spans two nodes: its efficiency (0.5) is an extrapolation, not a calibrated point"
        )
    if rate.unit == "model unit" and rate.tokens_basis == "estimated":
        notes.append(
            f"a model unit estimated as the GPU slice of the one published unit (Llama 4 Maverick: 65 tokens/s at "
            f"3,500 in / 300 out, {setup.unit_gpus:.3f} of a GPU in the model, whose TP-16 efficiency is "
            f"extrapolated): {rate.tokens_per_s:,.0f} tokens/s here"
        )
    chunks = min_chunks = units = None
    chunk = band = None
    pt_cost = None
    autoscaled = False
    by_hour: tuple[int, ...] | None = None
    if ratio <= 0:
        notes.append(f"one replica cannot meet the SLOs at this mix ({breached} too slow even unloaded)")
        replicas = 0
    else:
        if abs(1 / ratio - 1) > 0.2:
            unit = "chunks" if rate.unit == "chunk" else "model units"
            notes.append(
                f"mix / reference {ratio:.2f}: a {rate.unit}'s nominal {rate.tokens_per_s:,.0f} tokens/s are quoted at "
                f"{ref_mix[0]:,} in / {ref_mix[1]:,} out (by a saturated replica); at {p:,} in / {o:,} "
                f"out within the SLOs it delivers {ratio * rate.tokens_per_s:,.0f}, so {1 / ratio:.2f}× the "
                f"{unit} the nominal figure suggests"
            )
        count, hourly, autoscaled, pt_cost, replicas = _provision(
            forecast, setup, rate, ratio * rate.tokens_per_s, k_ref, notes
        )
        low = min(hourly)
        by_hour = tuple(hourly) if autoscaled else None
        if rate.unit == "model unit":
            units = count
        else:
            chunk, chunks, min_chunks, band = rate.tokens_per_s, count, low, count * rate.tokens_per_s
    hold = predict_closed_loop(config, max(conc or slo_conc, 1), p, o).e2e_s if o > 0 else 0.0
    ppt = pay_per_token(forecast, entry, p, o, hold, setup.max_refused)
    if ppt.quota == "output_tokens_per_minute" and forecast.reserved_tokens > o:
        notes.append(
            f"max_tokens {forecast.reserved_tokens:,} is reserved against OTPM for each request's ~{hold:.1f} s "
            "(the model's end-to-end latency), then credited back to its output"
        )
    even_volume, why_not = break_even(pt_cost, ppt, forecast)
    if workspace is not None and rate.source is not None:
        dbus = (
            f", {rate.dbu_per_hour:g} DBU/h"
            if rate.dbu_basis == "workspace API" and rate.dbu_per_hour
            else ""
        )
        entity = (
            f" ({workspace.entity_name} version {workspace.entity_version})" if workspace.endpoint else ""
        )  # a registered model's source names it already
        notes.append(f"chunk of {rate.tokens_per_s:,.0f} tokens/s{dbus} from the {rate.source}{entity}")
    return ArchitecturePlan(
        architecture=arch_key,
        deployment=dep.name,
        provisioning=arch.provisioning,
        gpu_name=dep.gpu.name,
        tensor_parallel=dep.tp,
        dtype=dep.dtype,
        source=source,
        confidence=confidence,
        replica_slo_tokens_per_s=k_slo,
        replica_reference_tokens_per_s=k_ref,
        reference_mix=ref_mix,
        mix_ratio=ratio,
        slo_concurrency=conc,
        breached_slo=None if measured is not None else breached,
        measured_limit=measured.limit_detail if measured is not None else None,
        resource=bounding_resource(config, p, o, conc or slo_conc),
        pt_rate=rate,
        gpu_hour_basis=setup.basis,
        price_source=entry.source,
        chunk_size=chunk,
        chunks=chunks,
        min_chunks=min_chunks,
        band_tokens_per_s=band,
        model_units=units,
        replicas=replicas,
        gpus=replicas * dep.tp,
        pt_autoscaled=autoscaled,
        pt_chunks_by_hour=by_hour,
        pt_cost_per_month=pt_cost,
        ppt_fits=ppt.fits,
        ppt_rate_limited_share=ppt.peak_share,
        ppt_quota=ppt.quota,
        ppt_refused_share=ppt.refused_share,
        ppt_admitted_share_by_hour=ppt.by_hour,
        ppt_served_tokens_per_month=ppt.served,
        ppt_usd_per_token=ppt.per_token,
        ppt_cost_per_month=ppt.cost,
        ppt_ceiling_tokens_per_month=ppt.ceiling_tokens_per_month,
        break_even_tokens_per_month=even_volume,
        break_even_note=why_not,
        notes=tuple(notes),
        workspace=workspace,
    )


def plan(
    forecast: Forecast,
    slo: PlanSlos,
    architectures: Sequence[str],
    *,
    gpu: str = "h100",
    dtype: Dtype | None = None,
    tp: int = 0,
    headroom: float = 0.2,
    prices: PriceBook | None = None,
    measured: Mapping[str, Measured] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_refused: float = DEFAULT_MAX_REFUSED,
    workspace: Mapping[str, WorkspaceFacts] | None = None,
) -> list[ArchitecturePlan]:
    """One :class:`ArchitecturePlan` per architecture in ``architectures`` (see the module docstring). ``dtype``
    None: each model's native one; ``tp`` 0: the smallest that fits; ``workspace``: by architecture, what an
    endpoint's workspace said (its chunk size and DBUs replace the price table's and the estimates)."""
    if headroom < 0:
        raise ConfigError("headroom must be ≥ 0")
    book = prices or PriceBook(label="no prices", entries={})
    setup = _Setup(
        gpu,
        dtype,
        tp,
        headroom,
        max_batch,
        max_refused,
        book,
        gpu_hour_basis(book, gpu, max_batch),
        model_unit_gpus(gpu, max_batch),
    )
    out = []
    for key in architectures:
        check_architecture(key, "--arch")
        if ARCHITECTURES[key].kind == "embedding" and forecast.output_tokens > 0:
            raise ConfigError(f"{key} is an embedding model (it only reads): plan it with 0 output tokens")
        if ARCHITECTURES[key].kind == "decoder" and forecast.output_tokens == 0:
            raise ConfigError(f"{key} generates text: give the output tokens per request (> 0)")
        facts = (workspace or {}).get(key)
        out.append(_plan_one(key, forecast, slo, setup, (measured or {}).get(key), facts))
    return out
