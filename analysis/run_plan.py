"""The plan a run's report carries: the forecast the run asked for (its spec's :class:`PlanRequest`), sized with
the run's measured SLO capacity for the architecture it ran on (a simulator run knows it), and estimated by the
model for the other architectures it names — the same computation as ``loadtest plan --run RUN``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analysis.capacity import CapacityResult
from analysis.flow_peak import flow_peak
from analysis.forecast import Forecast
from analysis.frame import RunData
from analysis.goodput import class_slos, slo_metric
from analysis.measured import Measured, mean_mix, measured_from_run
from analysis.plan import ArchitecturePlan, PlanSlos, plan
from analysis.prices import PriceBook, load_prices
from loadtest.client.protocol import RequestClass
from loadtest.errors import ConfigError
from loadtest.spec.profile import shape
from loadtest.spec.runspec import PlanRequest
from scenarios import SHIPPED_DIR

__all__ = ["EXAMPLE_PRICES", "RunPlan", "plan_for_run", "slos_of_classes"]

EXAMPLE_PRICES = SHIPPED_DIR / "prices" / "example.toml"


def slos_of_classes(classes: Iterable[RequestClass], output_tokens: float) -> PlanSlos:
    """The plan's SLOs from a run's classes, so that estimated and measured rows answer the same question: the
    tightest TTFT and TPOT percentile limits over its classes (the model checks them on means); no TPOT when
    requests produce no output."""
    limits: dict[str, float] = {}
    for slo in class_slos(classes).values():
        for key, value in slo.items():
            metric = slo_metric(key)
            if metric is not None and metric[0] in ("ttft", "tpot"):
                limits[metric[0]] = min(value, limits.get(metric[0], value))
    return PlanSlos(limits.get("ttft"), limits.get("tpot") if output_tokens > 0 else None)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run's plan: the request, the forecast it became (the run's mean mix), the SLOs, one row per
    architecture (the measured one first), the GPU and price table used, and what could not be planned."""

    request: PlanRequest
    forecast: Forecast
    slos: PlanSlos
    rows: tuple[ArchitecturePlan, ...]
    measured: Measured | None
    gpu: str
    prices: PriceBook
    notes: tuple[str, ...]


def _reserved(data: RunData, output: int) -> int | None:
    """The ``max_tokens`` the run's requests reserved (their mean), when above what they produced: the plan's
    pay-per-token fit holds it against OTPM as the run's requests would."""
    if "max_tokens" not in data.records:
        return None
    asked = data.records.loc[data.records["ok"], "max_tokens"].dropna()
    if asked.empty:
        return None
    mean = round(float(asked.astype("float64").mean()))
    return mean if mean > output else None


def plan_for_run(
    data: RunData, capacity: CapacityResult, request: PlanRequest | None, *, prices: PriceBook | None = None
) -> RunPlan | str:
    """The plan ``request`` asks for (a run's own is ``data.manifest.spec.plan``), or one line saying why there
    is none (no forecast, no usable mix, nothing to plan)."""
    if request is None or not request.has_peak:
        return (
            "no forecast given: set [plan] peak_tpm in the scenario, or --peak-tpm / --peak-rps / --peak-fps"
        )
    flows = None
    try:
        prompt, output = (round(v) for v in mean_mix(data))
        if request.peak_flows_per_s is not None:
            flows = flow_peak(data.run_dir, request.peak_flows_per_s, data.manifest)
    except ConfigError as exc:
        return str(exc)
    if flows is not None:
        peak = flows.tokens_per_min
    else:
        peak = request.peak_tokens_per_min or (request.peak_requests_per_s or 0.0) * (prompt + output) * 60.0
    forecast = Forecast(
        peak,
        prompt,
        output,
        max_tokens=_reserved(data, output),
        profile=shape(request.profile) if request.profile else None,
        flows=flows,
    )
    slos = slos_of_classes(data.manifest.spec.request_classes, output)
    simulated = data.manifest.simulator
    gpu = str(simulated.settings.value("gpu")) if simulated is not None else "h100"
    notes: list[str] = []
    measured: dict[str, Measured] = {}
    estimated: tuple[str, ...] = ()
    if simulated is not None:
        try:
            arch, found = measured_from_run(data, capacity=capacity)
            measured[arch] = found
        except ConfigError as exc:  # e.g. a pay-per-token run: the model estimates its architecture instead
            notes.append(f"no measured row: {exc}")
            estimated = (str(simulated.settings.value("architecture")),)
    else:
        notes.append(
            "the endpoint's architecture and band are not known to the run: its rows are the model's estimates "
            "(measure with `loadtest plan --run RUN --run-arch A --run-band TOKENS_PER_S`)"
        )
    archs = tuple(measured) + estimated
    archs += tuple(a for a in request.architectures if a not in archs)
    if not archs:
        return "; ".join([*notes, "no architecture to plan: name some in [plan].architectures"])
    book = prices or load_prices(EXAMPLE_PRICES)
    rows: list[ArchitecturePlan] = []
    for arch in archs:
        try:
            rows += plan(
                forecast, slos, [arch], gpu=gpu, headroom=request.headroom, prices=book, measured=measured
            )
        except (ConfigError, ValueError) as exc:
            notes.append(f"{arch} on {gpu}: {exc}")
    if not rows:
        return "; ".join(notes)
    return RunPlan(
        request, forecast, slos, tuple(rows), next(iter(measured.values()), None), gpu, book, tuple(notes)
    )
