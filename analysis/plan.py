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
  is :func:`loadtest.sim.quota.ppt_admitted_rate`; the rest of the peak would be rate-limited (HTTP 429).
* **Cost per month** (730 h): PT ``chunks × $/chunk-hour × 730`` (it runs all month); PPT ``Σ tokens × $/1M``
  over the monthly volume (given, or peak × minutes in a month × load factor). **Break-even**: the monthly
  volume at which both cost the same.

Prices and quotas come from a user-editable TOML table; the shipped one holds examples, labelled as such.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.capacity import capacity_from_run
from analysis.frame import RunData
from analysis.goodput import class_slos
from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import check_architecture, unknown_name
from loadtest.model.predict import REFERENCE_MIX, feasible_batch, predict_closed_loop, saturation
from loadtest.model.quota import QuotaLimits, ppt_admitted_rate
from loadtest.model.roofline import Deployment, decode_cost
from loadtest.model.serving import ServingConfig
from loadtest.sim.config import SimConfig

__all__ = [
    "HOURS_PER_MONTH",
    "ArchitecturePlan",
    "Forecast",
    "Measured",
    "PriceBook",
    "PriceEntry",
    "SloTargets",
    "load_prices",
    "measured_from_run",
    "plan",
    "slo_capacity",
]

HOURS_PER_MONTH = 730.0
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60.0
MODEL_UNIT_MIX = (3500, 300)


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
class SloTargets:
    """Latency targets the plan must meet (seconds); the model predicts means, so these are checked on means."""

    ttft_s: float | None = None
    tpot_s: float | None = None


@dataclass(frozen=True, slots=True)
class PriceEntry:
    ppt_input_per_million: float | None = None
    ppt_output_per_million: float | None = None
    pt_per_chunk_hour: float | None = None
    pt_per_model_unit_hour: float | None = None
    throughput_chunk_size: float | None = None
    model_unit_tokens_per_s: float | None = None
    itpm: int | None = None
    otpm: int | None = None
    qph: int | None = None
    qps: int | None = None


@dataclass(frozen=True, slots=True)
class PriceBook:
    label: str
    entries: Mapping[str, PriceEntry]
    source: str | None = None

    def get(self, architecture: str) -> PriceEntry:
        return self.entries.get(architecture, self.entries.get("default", PriceEntry()))


@dataclass(frozen=True, slots=True)
class Measured:
    """A measured SLO capacity for one architecture: tokens/s meeting the SLOs at the user's mix on an endpoint
    whose band was ``band_tokens_per_s`` (nominal), with a relative 95 % interval (``None``: no interval, e.g. too
    few requests for the percentile's bound). ``lower_bound``: every tested stage met the SLOs, so the capacity is
    at least this. ``binding``: what limited it (from the run)."""

    slo_tokens_per_s: float
    band_tokens_per_s: float
    relative_ci: float | None = 0.05
    run: str | None = None
    binding: str | None = None
    lower_bound: bool = False
    mix: tuple[int, int] | None = None  # the run's mean (input, output) tokens per request
    slos: str | None = None  # the run's SLOs, as text


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
    binding: str
    resource: str  # what bounds a replica at that load: kv (cache caps the batch), memory or compute
    chunk_size: float | None
    chunks: int | None
    band_tokens_per_s: float | None
    model_units: int | None
    replicas: int
    pt_cost_per_month: float | None
    ppt_fits: bool | None
    ppt_rate_limited_share: float | None
    ppt_binding_limit: str | None
    ppt_cost_per_month: float | None
    break_even_tokens_per_month: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _meets(pred_ttft: float, pred_tpot: float | None, slo: SloTargets) -> str | None:
    """Which SLO a prediction breaks, or None."""
    if slo.ttft_s is not None and pred_ttft > slo.ttft_s:
        return "ttft"
    if slo.tpot_s is not None and pred_tpot is not None and pred_tpot > slo.tpot_s:
        return "tpot"
    return None


def slo_capacity(config: ServingConfig, prompt: int, output: int, slo: SloTargets) -> tuple[float, int, str]:
    """(tokens/s, concurrency, binding) of one replica at the largest closed-loop concurrency meeting ``slo``.

    Searched by doubling then bisection up to the saturation concurrency; ``binding`` is the SLO that the next
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
    slo: SloTargets,
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


def _resource(config: ServingConfig, prompt: int, output: int, concurrency: int) -> str:
    """The resource that bounds one replica at ``concurrency`` (its SLO load; saturation when 0): ``kv`` when the
    KV cache caps the batch there, else the larger roofline term of a decode step (prefill only: compute)."""
    cap = feasible_batch(config, prompt, output)
    batch = min(concurrency or cap, cap)
    if batch >= cap and cap < config.max_batch:
        return "kv"
    if output == 0 or config.deployment.architecture.kind == "embedding":
        return "compute"
    return decode_cost(config.deployment, max(batch, 1), prompt + output / 2).bound


def _plan_one(
    arch_key: str,
    gpu: str,
    forecast: Forecast,
    slo: SloTargets,
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
        ref_mix = (min(REFERENCE_MIX[0], arch.context), 0)
        if p > arch.context:
            notes.append(f"inputs of {p} tokens exceed the {arch.context}-token context: sized as truncated")
            p = arch.context
    k_ref = saturation(config, *ref_mix).requests_per_s * sum(ref_mix)
    k_slo, slo_conc, binding = slo_capacity(config, p, o, slo)
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
        binding = measured.binding or "measured"
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
        notes.append(f"one replica cannot meet the SLOs at this mix ({binding} too slow even unloaded)")
        replicas = 0
    elif arch.provisioning == "model_units":
        per_unit = price.model_unit_tokens_per_s or 65.0
        units = math.ceil(demand / (ratio * per_unit))
        replicas = math.ceil(units * per_unit / k_ref)
        if price.pt_per_model_unit_hour is not None:
            pt_cost = units * price.pt_per_model_unit_hour * HOURS_PER_MONTH
    else:
        chunk = price.throughput_chunk_size or float(int(k_ref) // 10 * 10)
        chunks = math.ceil(demand / (ratio * chunk))
        band = chunks * chunk
        replicas = math.ceil(band / k_ref)
        if price.pt_per_chunk_hour is not None:
            pt_cost = chunks * price.pt_per_chunk_hour * HOURS_PER_MONTH
    ppt_fits = share = limit = ppt_cost = break_even = None
    if any(q is not None for q in (price.itpm, price.otpm, price.qph, price.qps)):
        limits = QuotaLimits(itpm=price.itpm, otpm=price.otpm, qph=price.qph, qps=price.qps)
        offered = forecast.peak_requests_per_s
        admitted, binding_limit = ppt_admitted_rate(limits, offered, p, forecast.max_tokens or o, o)
        ppt_fits = binding_limit is None
        share = 1.0 - admitted / offered if offered > 0 else 0.0
        limit = binding_limit
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
        binding=binding,
        resource=_resource(config, p, o, conc or slo_conc),
        chunk_size=chunk,
        chunks=chunks,
        band_tokens_per_s=band,
        model_units=units,
        replicas=replicas,
        pt_cost_per_month=pt_cost,
        ppt_fits=ppt_fits,
        ppt_rate_limited_share=share,
        ppt_binding_limit=limit,
        ppt_cost_per_month=ppt_cost,
        break_even_tokens_per_month=break_even,
        notes=tuple(notes),
    )


def plan(
    forecast: Forecast,
    slo: SloTargets,
    architectures: Sequence[str],
    *,
    gpu: str = "h100",
    headroom: float = 0.2,
    prices: PriceBook | None = None,
    measured: Mapping[str, Measured] | None = None,
    max_batch: int = 256,
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


def _sim_band(sim: Mapping[str, Any], max_batch: int) -> float:
    """Nominal tokens/s of the simulated endpoint a run measured: its PT band, or (model units) its replicas times
    one replica's tokens/s at the model-unit reference mix."""
    sizing = {k: v for k, v in sim.items() if k in _SIM_SIZING}
    try:
        config = SimConfig(**sizing)
        band = config.band()
        replicas = config.replica_count
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"the run's simulator settings are not usable: {exc}") from None
    if config.mode == "ppt":
        raise ConfigError(
            "that run measured a pay-per-token endpoint (its quotas), not a provisioned band: plan from a PT run"
        )
    if band is not None:
        return float(band[1])
    engine = ServingConfig(config.deployment(), max_batch=config.max_batch or max_batch)
    return replicas * saturation(engine, *MODEL_UNIT_MIX).requests_per_s * sum(MODEL_UNIT_MIX)


_SIM_SIZING = frozenset(
    {"architecture", "gpu", "tp", "dtype", "replicas", "max_batch", "mode", "chunks", "chunk_size"}
    | {"min_provisioned_throughput", "max_provisioned_throughput"}
)


def measured_from_run(
    data: RunData,
    architecture: str | None = None,
    band_tokens_per_s: float | None = None,
    max_batch: int = 256,
) -> tuple[str, Measured]:
    """``(architecture, Measured)`` from a run: its highest SLO-compliant req/s (:func:`capacity_from_run`, with
    the 95 % CI) times the mean input + output tokens of its successful requests, against the band it ran on.

    A simulator run knows both its architecture and its band (``manifest.target.simulator``); a run against a
    real endpoint needs them given: the architecture served and its provisioned tokens/s (``max`` of the band).
    """
    sim = (data.manifest.get("target") or {}).get("simulator")
    sim = sim if isinstance(sim, Mapping) else None
    if architecture is None and sim is not None:
        architecture = str(sim.get("architecture", SimConfig.__dataclass_fields__["architecture"].default))
    arch = architecture
    if arch is None:
        raise ConfigError(
            f"{data.run_dir} ran against an endpoint: give the architecture it served (--run-arch)"
        )
    check_architecture(arch, "--run-arch" if architecture is not None else str(data.run_dir))
    if band_tokens_per_s is None:
        if sim is None:
            raise ConfigError(
                f"{data.run_dir} ran against an endpoint: give its provisioned tokens/s (--run-band)"
            )
        band_tokens_per_s = _sim_band({"architecture": arch, **sim}, max_batch)
    if band_tokens_per_s <= 0:
        raise ConfigError("the measured endpoint's band must be > 0 tokens/s")
    cap = capacity_from_run(data)
    if cap.max_rps is None:
        raise ConfigError(f"{data.run_dir}: {cap.basis}; there is no SLO-compliant throughput to plan from")
    ok = data.records[data.records["ok"]]
    total = (ok["prompt_tokens"].astype("float64") + ok["output_tokens"].astype("float64")).dropna()
    if total.empty:
        raise ConfigError(f"{data.run_dir} has no successful request with usage counts")
    per_request = float(total.mean())
    mix = (
        round(float(ok["prompt_tokens"].astype("float64").mean())),
        round(float(ok["output_tokens"].astype("float64").mean())),
    )
    lo, hi = cap.max_rps_ci
    rel = None
    if lo is not None and hi is not None:
        rel = max(cap.max_rps - lo, hi - cap.max_rps) / cap.max_rps
    binding = cap.binding_detail if cap.binding is not None else "none reached in the run"
    return arch, Measured(
        slo_tokens_per_s=cap.max_rps * per_request,
        band_tokens_per_s=band_tokens_per_s,
        relative_ci=rel,
        run=data.run_dir.name,
        binding=f"measured: {binding}",
        lower_bound=all(point.meets() for point in cap.points),
        mix=mix,
        slos="; ".join(f"{cls}: {_slo_text(slo)}" for cls, slo in class_slos(data.manifest).items()) or None,
    )


def _slo_text(slo: Mapping[str, float]) -> str:
    return ", ".join(f"{k} ≥ {v:g}" if k == "attainment" else f"{k} ≤ {v:g} s" for k, v in slo.items())


def load_prices(path: Path) -> PriceBook:
    """A price/quota table: ``label = "..."`` and one ``[models."<architecture>"]`` table per model (or
    ``default``) with any of the :class:`PriceEntry` fields. Quotas are positive integers, prices numbers ≥ 0,
    chunk sizes and model-unit rates numbers > 0; an unknown model name or key is an error, not ignored."""
    import difflib

    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read price table {path}: {exc}") from None

    def hint(key: str, known: list[str]) -> str:
        close = difflib.get_close_matches(key, known, n=1)
        return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"

    for key in raw:
        if key not in ("label", "models"):
            raise ConfigError(f"{path}: unknown key '{key}'{hint(key, ['label', 'models'])}")
    label = raw.get("label", path.name)
    if not isinstance(label, str):
        raise ConfigError(f"{path}: label must be a string, got {label!r}")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{path}: [models] must be a table of tables")
    allowed = set(PriceEntry.__dataclass_fields__)
    entries: dict[str, PriceEntry] = {}
    for name, table in models.items():
        where = f'{path}: [models."{name}"]'
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key in table:
            if key not in allowed:
                raise ConfigError(f"{where}: unknown key '{key}'{hint(key, sorted(allowed))}")
        if name != "default" and name not in ARCHITECTURES:
            raise unknown_name("architecture", name, ["default", *sorted(ARCHITECTURES)], where)
        for key, value in table.items():
            number = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and math.isfinite(value)
            )
            if key in ("itpm", "otpm", "qph", "qps"):
                ok, what = number and isinstance(value, int) and value > 0, "a positive integer"
            elif key in ("throughput_chunk_size", "model_unit_tokens_per_s"):
                ok, what = number and value > 0, "a number > 0"
            else:  # a price
                ok, what = number and value >= 0, "a number ≥ 0"
            if not ok:
                raise ConfigError(f"{where}: {key} must be {what}, got {value!r}")
        entries[name] = PriceEntry(**table)
    return PriceBook(label=label, entries=entries, source=str(path))
