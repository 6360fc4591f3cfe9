"""Provisioning recommendations per model architecture: provisioned throughput or pay-per-token, and the cost.

For each candidate architecture (on one GPU type) and a forecast (peak tokens/min with a mix), SLOs and headroom:

* **SLO capacity of one replica at the user's mix**, ``K_slo``: the largest closed-loop concurrency whose predicted
  mean TTFT and TPOT (:func:`loadtest.model.predict.predict_closed_loop`, the same model the simulator runs) stay
  within the SLOs, times its total tokens/s. *Estimated* — labelled so — unless a measured value is given.
* **Nominal capacity** at Databricks' reference mix (2,048 in / 256 out), ``K_ref``: what a band's tokens/s are
  quoted against. The ratio ``r = K_slo / K_ref`` is how many of the band's nominal tokens/s the user's mix gets.
* **Provisioned throughput (token bands)**: chunks ``= ⌈D·(1 + h) / (r · c)⌉`` with ``D`` the peak tokens/s, ``h``
  the headroom and ``c`` the ``throughput_chunk_size`` (from the price table, else ``K_ref``); set
  ``min_provisioned_throughput = max_provisioned_throughput = chunks · c``. **Model units**: units ``=
  ⌈D·(1 + h) / (r · u)⌉`` with ``u`` the tokens/s one unit delivers at the reference mix (price table).
* **Pay-per-token**: does the peak fit the quotas (ITPM, OTPM with ``max_tokens`` reserved, QPH)? The admitted rate
  is :func:`loadtest.model.quota.ppt_admitted_rate`; the rest of the peak would be rate-limited (HTTP 429).
* **Cost per month** (730 h): PT ``chunks × $/chunk-hour × 730`` (it runs all month); PPT ``Σ tokens × $/1M``
  over the monthly volume (given, or peak × minutes in a month × load factor). **Break-even**: the monthly
  volume at which both cost the same.

Prices and quotas come from a user-editable TOML table (:mod:`analysis.prices`); a measured capacity replaces the
estimate when a run is given (:mod:`analysis.measured`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis.measured import Measured
from analysis.prices import PriceBook
from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import check_architecture
from loadtest.model.predict import (
    MODEL_UNIT_MIX,
    MODEL_UNIT_TOKENS_PER_S,
    REFERENCE_MIX,
    Resource,
    bounding_resource,
    chunk_of,
    predict_closed_loop,
    reference_tokens_per_s,
    saturation,
)
from loadtest.model.quota import LimitType, QuotaLimits, ppt_admitted_rate
from loadtest.model.roofline import Deployment
from loadtest.model.serving import DEFAULT_MAX_BATCH, ServingConfig

__all__ = [
    "HOURS_PER_MONTH",
    "ArchitecturePlan",
    "Forecast",
    "PlanSlos",
    "plan",
    "slo_capacity",
]

HOURS_PER_MONTH = 730.0
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60.0


@dataclass(frozen=True, slots=True)
class Forecast:
    """Peak demand and its mix. ``max_tokens`` is what requests reserve (default: the output length)."""

    peak_tokens_per_min: float
    prompt_tokens: int
    output_tokens: int
    max_tokens: int | None = None
    monthly_tokens: float | None = None
    load_factor: float = 0.35  # average / peak, used when monthly_tokens is not given

    @property
    def peak_tokens_per_s(self) -> float:
        return self.peak_tokens_per_min / 60.0

    @property
    def peak_requests_per_s(self) -> float:
        return self.peak_tokens_per_s / (self.prompt_tokens + self.output_tokens)

    @property
    def tokens_per_month(self) -> float:
        if self.monthly_tokens is not None:
            return self.monthly_tokens
        return self.peak_tokens_per_min * MINUTES_PER_MONTH * self.load_factor


@dataclass(frozen=True, slots=True)
class PlanSlos:
    """The latency SLOs the plan must meet (seconds); the model predicts means, so these are checked on means."""

    ttft_s: float | None = None
    tpot_s: float | None = None


# plan --format json keeps its keys until its schema is versioned
_JSON_KEYS = {"breached_slo": "binding", "ppt_quota": "ppt_binding_limit"}


@dataclass(frozen=True, slots=True)
class ArchitecturePlan:
    architecture: str
    deployment: str
    provisioning: str
    source: str
    confidence: str
    replica_slo_tokens_per_s: float
    replica_reference_tokens_per_s: float
    mix_ratio: float
    slo_concurrency: int | None  # None when measured
    breached_slo: str | None  # estimated: the SLO one more user would break (ttft / tpot), or saturation
    measured_limit: str | None  # measured: what bound the run's capacity (CapacityResult.limit_detail)
    resource: Resource  # what bounds a replica at that load (loadtest.model.predict.bounding_resource)
    chunk_size: float | None
    chunks: int | None
    band_tokens_per_s: float | None
    model_units: int | None
    replicas: int
    pt_cost_per_month: float | None
    ppt_fits: bool | None
    ppt_rate_limited_share: float | None
    ppt_quota: LimitType | None  # the quota that binds at the peak
    ppt_cost_per_month: float | None
    break_even_tokens_per_month: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for name in self.__dataclass_fields__:
            if name == "measured_limit":
                continue  # shown in `binds`, where the JSON has always had it
            out[_JSON_KEYS.get(name, name)] = self.binds if name == "breached_slo" else getattr(self, name)
        out["feasible"] = self.feasible
        return out

    @property
    def feasible(self) -> bool:
        """Can this architecture meet the SLOs at the forecast's mix at all? Not when one replica, unloaded, is
        already too slow: then no count of chunks or units helps."""
        return self.replicas > 0

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


def _plan_one(
    arch_key: str,
    gpu: str,
    forecast: Forecast,
    slo: PlanSlos,
    headroom: float,
    prices: PriceBook,
    measured: Measured | None,
    max_batch: int,
) -> ArchitecturePlan:
    arch = ARCHITECTURES[arch_key]
    dep = Deployment.of(arch_key, gpu)
    config = ServingConfig(dep, max_batch=max_batch)
    p, o = forecast.prompt_tokens, forecast.output_tokens
    notes: list[str] = []
    ref_mix = MODEL_UNIT_MIX if arch.provisioning == "model_units" else REFERENCE_MIX
    if arch.kind == "embedding":  # reads only: its band is quoted at a full input of up to 2,048 tokens
        ref_mix = REFERENCE_MIX
        if p > arch.context:
            notes.append(f"inputs of {p} tokens exceed the {arch.context}-token context: sized as truncated")
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
    price = prices.get(arch_key)
    demand = forecast.peak_tokens_per_s * (1.0 + headroom)
    chunks = units = None
    chunk = band = None
    pt_cost = None
    if ratio <= 0:
        notes.append(f"one replica cannot meet the SLOs at this mix ({breached} too slow even unloaded)")
        replicas = 0
    elif arch.provisioning == "model_units":
        per_unit = price.model_unit_tokens_per_s or MODEL_UNIT_TOKENS_PER_S
        units = math.ceil(demand / (ratio * per_unit))
        replicas = math.ceil(units * per_unit / k_ref)
        if price.pt_per_model_unit_hour is not None:
            pt_cost = units * price.pt_per_model_unit_hour * HOURS_PER_MONTH
    else:
        chunk = price.throughput_chunk_size or float(chunk_of(k_ref))
        chunks = math.ceil(demand / (ratio * chunk))
        band = chunks * chunk
        replicas = math.ceil(band / k_ref)
        if price.pt_per_chunk_hour is not None:
            pt_cost = chunks * price.pt_per_chunk_hour * HOURS_PER_MONTH
    ppt_fits = share = ppt_quota = ppt_cost = break_even = None
    if any(q is not None for q in (price.itpm, price.otpm, price.qph, price.qps)):
        limits = QuotaLimits(itpm=price.itpm, otpm=price.otpm, qph=price.qph, qps=price.qps)
        offered = forecast.peak_requests_per_s
        admitted, ppt_quota = ppt_admitted_rate(limits, offered, p, forecast.max_tokens or o, o)
        ppt_fits = ppt_quota is None
        share = 1.0 - admitted / offered if offered > 0 else 0.0
    if price.ppt_input_per_million is not None and (o == 0 or price.ppt_output_per_million is not None):
        per_token = (
            (p * price.ppt_input_per_million + o * (price.ppt_output_per_million or 0.0)) / (p + o) / 1e6
        )
        ppt_cost = forecast.tokens_per_month * per_token
        if pt_cost is not None and per_token > 0:
            break_even = pt_cost / per_token
    return ArchitecturePlan(
        architecture=arch_key,
        deployment=dep.name,
        provisioning=arch.provisioning,
        source=source,
        confidence=confidence,
        replica_slo_tokens_per_s=k_slo,
        replica_reference_tokens_per_s=k_ref,
        mix_ratio=ratio,
        slo_concurrency=conc,
        breached_slo=None if measured is not None else breached,
        measured_limit=measured.limit_detail if measured is not None else None,
        resource=bounding_resource(config, p, o, conc or slo_conc),
        chunk_size=chunk,
        chunks=chunks,
        band_tokens_per_s=band,
        model_units=units,
        replicas=replicas,
        pt_cost_per_month=pt_cost,
        ppt_fits=ppt_fits,
        ppt_rate_limited_share=share,
        ppt_quota=ppt_quota,
        ppt_cost_per_month=ppt_cost,
        break_even_tokens_per_month=break_even,
        notes=tuple(notes),
    )


def plan(
    forecast: Forecast,
    slo: PlanSlos,
    architectures: Sequence[str],
    *,
    gpu: str = "h100",
    headroom: float = 0.2,
    prices: PriceBook | None = None,
    measured: Mapping[str, Measured] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[ArchitecturePlan]:
    """One :class:`ArchitecturePlan` per decoder architecture in ``architectures`` (see the module docstring)."""
    if headroom < 0:
        raise ConfigError("headroom must be ≥ 0")
    book = prices or PriceBook(label="no prices", entries={})
    out = []
    for key in architectures:
        check_architecture(key, "--arch")
        if ARCHITECTURES[key].kind == "embedding" and forecast.output_tokens > 0:
            raise ConfigError(f"{key} is an embedding model (it only reads): plan it with 0 output tokens")
        if ARCHITECTURES[key].kind == "decoder" and forecast.output_tokens == 0:
            raise ConfigError(f"{key} generates text: give the output tokens per request (> 0)")
        out.append(_plan_one(key, gpu, forecast, slo, headroom, book, (measured or {}).get(key), max_batch))
    return out
