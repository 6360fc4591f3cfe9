"""From a scenario file and command-line flags to what the engine runs. Pure: no I/O but reading files.

Flags given on the command line override the scenario: ``--endpoint``/``--model`` replace its endpoint,
``-c``/``--rate``/``--tokens-per-min`` replace its stages, ``--duration`` and ``--max-requests`` apply to every
stage that sends requests (an idle stage keeps its length), ``--seed``, ``--name``, ``--abort-after`` and
``--server-metrics`` replace its own, ``--slo``
sets SLOs on every class, ``--peak-tpm`` / ``--peak-rps`` the forecast the report plans for. Without a scenario,
the flags describe one request class and the stages (default: a 1, 4, 16, 64-user sweep of 8 s each on the
simulator, or 1 user for 30 s on an endpoint).

A flags-only run on the simulator without ``--slo`` gets the demo's SLOs (:data:`SIM_DEMO_SLO`), and any simulator
run without a forecast the example peak (:data:`SIM_EXAMPLE_PEAK_TPM`, marked ``example`` in the spec and the
report), so that the first run ends in a capacity verdict and a provisioning recommendation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from loadtest.client.protocol import RequestClass
from loadtest.errors import ConfigError
from loadtest.spec.loadplan import parse_sweep
from loadtest.spec.prompts import PromptOptions
from loadtest.spec.pyscenario import PythonScenario, read_module
from loadtest.spec.pytable import step_class
from loadtest.spec.runspec import (
    DEFAULT_ABORT_AFTER_S,
    DEFAULT_MAX_CONCURRENCY,
    NO_FLOWS_PEAK,
    PlanRequest,
    Stage,
    SweepPlan,
)
from loadtest.spec.scenario import EndpointConfig, Scenario
from loadtest.spec.simulator import SimSettings
from loadtest.spec.slos import slo_for

__all__ = [
    "IDLE_MARGIN_S",
    "SIM_DEFAULTS",
    "SIM_DEMO_SLO",
    "SIM_EXAMPLE_PEAK_TPM",
    "Overrides",
    "apply_overrides",
    "python_from_flags",
    "scenario_from_flags",
    "shorten_idle_for_simulator",
]

# what a flags-only run tells the simulator (and records in its manifest): these four, at the simulator's defaults
SIM_DEFAULTS = SimSettings(
    **{name: SimSettings().value(name) for name in ("architecture", "gpu", "replicas", "max_batch")}
)
SIM_DEFAULT_SWEEP = (1, 4, 16, 64)
# the simulator demo's SLOs and forecast, when a simulator run names none (the report labels both as the demo's)
SIM_DEMO_SLO: Final[Mapping[str, float]] = {"ttft_p95": 0.2, "tpot_p50": 0.05}
SIM_EXAMPLE_PEAK_TPM: Final[float] = 1_000_000.0
SIM_DEFAULT_DURATION_S = 8.0
IDLE_MARGIN_S: Final[float] = 1.0  # an idle stage against the simulator outlasts its scale-down by this much
ENDPOINT_DEFAULT_DURATION_S = 30.0


@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line values; ``None`` (or empty) means "not given"."""

    endpoint: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    include_usage: bool | None = None
    concurrency: tuple[int, ...] = ()
    rates: tuple[float, ...] = ()
    tokens_per_min: tuple[float, ...] = ()
    arrival: str | None = None
    burstiness: float | None = None
    max_concurrency: int | None = None
    duration_s: float | None = None
    max_requests: int | None = None
    drain_timeout_s: float | None = None
    abort_after_s: float | None = None  # 0.0: --abort-after off
    server_metrics: str | None = None  # --server-metrics: "auto", "off" or a URL
    kind: str | None = None
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    stream: bool | None = None
    ignore_eos: bool | None = None
    seed: int | None = None
    name: str | None = None
    sweep_points: int | None = None
    simulator: SimSettings = field(default_factory=SimSettings)
    slos: Mapping[str | None, Mapping[str, float]] = field(
        default_factory=dict
    )  # by class; None: every class
    flow_slo: Mapping[str, float] = field(
        default_factory=dict
    )  # a Python scenario's (flow_e2e_p95, attainment)
    peak_tokens_per_min: float | None = None
    peak_requests_per_s: float | None = None
    peak_flows_per_s: float | None = None  # --peak-fps: a Python scenario's
    profile: str | None = None  # a named hourly shape for the plan
    tokenizer: str | None = None  # --tokenizer
    prompt_overhead: int | None = None  # --prompt-overhead
    calibrate: bool | None = None  # --calibrate/--no-calibrate


def _prompts(ov: Overrides, base: PromptOptions) -> PromptOptions:
    """The scenario's ``[prompts]`` with the flags that were given on top."""
    return dataclasses.replace(
        base, **_given(tokenizer=ov.tokenizer, overhead=ov.prompt_overhead, calibrate=ov.calibrate)
    )


def _stages(ov: Overrides, duration: float, stage_defaults: dict[str, Any]) -> tuple[Stage, ...]:
    forms = sum(bool(x) for x in (ov.concurrency, ov.rates, ov.tokens_per_min))
    if forms > 1:
        raise ConfigError("give only one of --concurrency, --rate and --tokens-per-min")
    common: dict[str, Any] = {
        "duration_s": duration,
        "max_requests": ov.max_requests,
        "arrival": ov.arrival or stage_defaults.get("arrival", "poisson"),
        "burstiness": ov.burstiness if ov.burstiness is not None else stage_defaults.get("burstiness", 1.0),
        "max_concurrency": ov.max_concurrency
        or stage_defaults.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
    }
    if ov.rates:
        return tuple(Stage(kind="rate", rate=r, **common) for r in ov.rates)
    if ov.tokens_per_min:
        return tuple(Stage(kind="tokens", tokens_per_min=t, **common) for t in ov.tokens_per_min)
    return tuple(Stage(kind="concurrency", users=n, **common) for n in ov.concurrency)


def scenario_from_flags(ov: Overrides) -> Scenario:
    """The scenario the flags describe when no scenario file is given."""
    _no_flow_slo(ov)
    simulated = ov.endpoint is None
    kind = ov.kind or "chat"
    _check_scopes(ov, (kind,))
    given = {**ov.slos.get(None, {}), **ov.slos.get(kind, {})}
    slo = slo_for(kind, given or (dict(SIM_DEMO_SLO) if simulated and not ov.slos else {}))
    cls = RequestClass(
        name=kind,
        kind=kind,  # type: ignore[arg-type]
        prompt_tokens=ov.prompt_tokens or 128,
        output_tokens=(ov.max_tokens or 128) if kind != "embeddings" else 1,
        stream=(ov.stream if ov.stream is not None else True) and kind != "embeddings",
        ignore_eos=ov.ignore_eos if ov.ignore_eos is not None else True,
        slo=slo,
    )
    duration = ov.duration_s or (SIM_DEFAULT_DURATION_S if simulated else ENDPOINT_DEFAULT_DURATION_S)
    sweep = None
    if ov.sweep_points:
        if ov.concurrency or ov.rates or ov.tokens_per_min:
            raise ConfigError(
                "--sweep chooses its own stages: drop --concurrency, --rate and --tokens-per-min"
            )
        sweep = _sweep(ov, duration, None)
    elif not (ov.concurrency or ov.rates or ov.tokens_per_min):
        ov = dataclasses.replace(ov, concurrency=SIM_DEFAULT_SWEEP if simulated else (1,))
    endpoint = None
    if ov.endpoint is not None:
        endpoint = EndpointConfig(
            url=ov.endpoint,
            model=ov.model,
            api_key_env=ov.api_key_env,
            include_usage=ov.include_usage if ov.include_usage is not None else True,
        )
    return Scenario(
        name=ov.name or ("sim" if simulated else "endpoint"),
        description="",
        seed=ov.seed or 0,
        endpoint=endpoint,
        simulator=SIM_DEFAULTS.merged(ov.simulator),
        classes=(cls,),
        stages=() if sweep else _stages(ov, duration, {}),
        drain_timeout_s=ov.drain_timeout_s or 30.0,
        sweep=sweep,
        plan=_plan(ov, None, simulated),
        abort_after_s=_abort_after(ov).get("abort_after_s", DEFAULT_ABORT_AFTER_S),
        prompts=_prompts(ov, PromptOptions()),
        server_metrics=ov.server_metrics or "auto",
    )


def python_from_flags(path: Path, ov: Overrides) -> Scenario:
    """``loadtest run my_flow.py``: the module with the flags' endpoint, stages and plan (the defaults of a run
    without a scenario file), and no step declared until a ``--slo STEP:...`` names one."""
    _check_python_flags(ov)
    base = scenario_from_flags(dataclasses.replace(ov, slos={}, flow_slo={}, peak_flows_per_s=None))
    scenario = dataclasses.replace(
        base,
        plan=_plan(ov, None, base.endpoint is None, python=True),
        name=ov.name or path.stem,
        classes=(),
        source=str(path),
        python=PythonScenario(module=str(path), source=read_module(path), slo=dict(ov.flow_slo)),
    )
    return _python_slos(scenario, ov)


def _no_flow_slo(ov: Overrides) -> None:
    if ov.flow_slo:
        raise ConfigError(
            f"--slo {', '.join(ov.flow_slo)}: a flow SLO is a Python scenario's (docs/scenarios-python.md), "
            "and this run has none"
        )


def _check_python_flags(ov: Overrides) -> None:
    given = [
        flag
        for flag, value in (
            ("--kind", ov.kind),
            ("--prompt-tokens", ov.prompt_tokens),
            ("--max-tokens", ov.max_tokens),
            ("--stream/--no-stream", ov.stream),
            ("--ignore-eos/--no-ignore-eos", ov.ignore_eos),
        )
        if value is not None
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: a Python scenario's module says what each call sends; "
            "these flags describe a TOML scenario's requests"
        )


def _python_slos(scenario: Scenario, ov: Overrides) -> Scenario:
    """A Python scenario's ``--slo`` flags: ``STEP:ttft_p95<1s`` declares the step when the scenario did not (as a
    chat step); an unscoped one applies to every declared step."""
    if not ov.slos:
        return scenario
    classes = list(scenario.classes)
    if ov.slos.get(None) and not classes:
        raise ConfigError(
            "--slo: a Python scenario's SLOs name a step (--slo turn:ttft_p95<1s), or its TOML declares the "
            "steps ([[classes]] name = ...)"
        )
    names = {c.name for c in classes}
    classes += [
        step_class({"name": scope}, len(classes)) for scope in ov.slos if scope and scope not in names
    ]
    return dataclasses.replace(
        scenario,
        classes=tuple(
            dataclasses.replace(
                c, slo=slo_for(c.kind, {**c.slo, **ov.slos.get(None, {}), **ov.slos.get(c.name, {})})
            )
            for c in classes
        ),
    )


def _abort_after(ov: Overrides) -> dict[str, float | None]:
    """``--abort-after`` when given: seconds, or ``None`` for ``off`` (given as 0.0)."""
    if ov.abort_after_s is None:
        return {}
    return {"abort_after_s": ov.abort_after_s or None}


def _sweep(ov: Overrides, duration: float, base: SweepPlan | None) -> SweepPlan:
    return parse_sweep(
        {"points": ov.sweep_points or (base.points if base else 5)},
        {
            "duration": duration,
            "max_concurrency": ov.max_concurrency
            or (base.max_concurrency if base else DEFAULT_MAX_CONCURRENCY),
            "arrival": ov.arrival or (base.arrival if base else "poisson"),
            "burstiness": ov.burstiness if ov.burstiness is not None else (base.burstiness if base else 1.0),
        },
    )


def _given(**values: Any) -> dict[str, Any]:
    """The values that were given (not None)."""
    return {key: value for key, value in values.items() if value is not None}


def apply_overrides(scenario: Scenario, ov: Overrides) -> Scenario:
    """The scenario with every flag that was given applied on top."""
    changes: dict[str, Any] = {}
    if ov.endpoint is not None:
        changes["endpoint"] = EndpointConfig(
            url=ov.endpoint,
            model=ov.model,
            api_key_env=ov.api_key_env,
            include_usage=ov.include_usage if ov.include_usage is not None else True,
        )
    elif scenario.endpoint is not None:
        ep = scenario.endpoint
        changes["endpoint"] = dataclasses.replace(
            ep,
            model=ov.model or ep.model,
            api_key_env=ov.api_key_env or ep.api_key_env,
            include_usage=ep.include_usage if ov.include_usage is None else ov.include_usage,
        )
    if ov.sweep_points or (scenario.sweep and not (ov.concurrency or ov.rates or ov.tokens_per_min)):
        base = scenario.sweep
        changes["stages"] = ()
        changes["sweep"] = _sweep(
            ov, ov.duration_s or (base.duration_s if base else None) or scenario.stages[0].duration_s, base
        )
    elif ov.concurrency or ov.rates or ov.tokens_per_min:
        first = scenario.stages[0] if scenario.stages else Stage(kind="concurrency", users=1, duration_s=30.0)
        changes["sweep"] = None
        defaults = {
            "arrival": first.arrival,
            "burstiness": first.burstiness,
            "max_concurrency": first.max_concurrency,
        }
        changes["stages"] = _stages(ov, ov.duration_s or first.duration_s, defaults)
    else:
        stage_changes = _given(
            duration_s=ov.duration_s,
            max_requests=ov.max_requests,
            arrival=ov.arrival,
            burstiness=ov.burstiness,
            max_concurrency=ov.max_concurrency,
        )
        if stage_changes:  # an idle stage keeps its length: it is the endpoint's scale-down time, not a load
            changes["stages"] = tuple(
                s if s.idle else dataclasses.replace(s, **stage_changes) for s in scenario.stages
            )
    changes.update(
        _given(
            seed=ov.seed, name=ov.name, drain_timeout_s=ov.drain_timeout_s, server_metrics=ov.server_metrics
        )
    )
    changes.update(_abort_after(ov))
    if ov.simulator.given():
        changes["simulator"] = scenario.simulator.merged(ov.simulator)
    class_changes = _given(
        stream=ov.stream,
        ignore_eos=ov.ignore_eos,
        prompt_tokens=ov.prompt_tokens,
        output_tokens=ov.max_tokens,
    )
    if scenario.python is None:
        _no_flow_slo(ov)
    if scenario.python is not None:
        _check_python_flags(ov)
        if ov.flow_slo:
            changes["python"] = dataclasses.replace(
                scenario.python, slo={**scenario.python.slo, **ov.flow_slo}
            )
    elif class_changes:
        changes["classes"] = tuple(
            dataclasses.replace(
                c,
                **{k: v for k, v in class_changes.items() if not (k == "stream" and c.kind == "embeddings")},
            )
            for c in scenario.classes
        )
    if ov.slos and scenario.python is not None:
        changes["classes"] = _python_slos(scenario, ov).classes
    elif ov.slos:
        base = changes.get("classes", scenario.classes)
        _check_scopes(ov, tuple(c.name for c in base))
        changes["classes"] = tuple(
            dataclasses.replace(
                c, slo=slo_for(c.kind, {**c.slo, **ov.slos.get(None, {}), **ov.slos.get(c.name, {})})
            )
            for c in base
        )
    changes["plan"] = _plan(
        ov,
        scenario.plan,
        "endpoint" not in changes and scenario.endpoint is None,
        scenario.python is not None,
    )
    changes["prompts"] = _prompts(ov, scenario.prompts)
    return dataclasses.replace(scenario, **changes)


def _check_scopes(ov: Overrides, classes: tuple[str, ...]) -> None:
    """Every ``--slo CLASS:…`` names a class of the run."""
    for scope in ov.slos:
        if scope is not None and scope not in classes:
            raise ConfigError(f"--slo {scope}:…: no request class {scope!r} (classes: {', '.join(classes)})")


def _plan(
    ov: Overrides, given: PlanRequest | None, simulated: bool, python: bool = False
) -> PlanRequest | None:
    """The forecast the report plans for: the flags' peak (and profile) over the scenario's; the demo's example on
    the simulator when neither gives one. A peak in flows/s is refused here, before any load, unless the scenario
    is a Python one (``python``)."""
    if ov.peak_flows_per_s is not None and not python:
        raise ConfigError(NO_FLOWS_PEAK.format(given="--peak-fps"))
    if ov.profile is not None:
        given = dataclasses.replace(given or PlanRequest(), profile=ov.profile)
    flags = PlanRequest(ov.peak_tokens_per_min, ov.peak_requests_per_s, peak_flows_per_s=ov.peak_flows_per_s)
    if flags.has_peak:
        base = given or PlanRequest()
        return dataclasses.replace(
            base,
            peak_tokens_per_min=ov.peak_tokens_per_min,
            peak_requests_per_s=ov.peak_requests_per_s,
            peak_flows_per_s=ov.peak_flows_per_s,
            example=False,
        )
    if given is not None and (
        given.peak_tokens_per_min or given.peak_requests_per_s or given.peak_flows_per_s
    ):
        return given
    if simulated:
        return dataclasses.replace(
            given or PlanRequest(), peak_tokens_per_min=SIM_EXAMPLE_PEAK_TPM, example=True
        )
    return given


def shorten_idle_for_simulator(scenario: Scenario) -> tuple[Scenario, str | None]:
    """Against the embedded simulator with ``scale_to_zero``, an idle stage lasts the simulator's
    ``scale_down_after_s`` plus :data:`IDLE_MARGIN_S` when that is shorter than written: an idle stage is there to
    let the endpoint scale down (Databricks: 30 minutes), and the simulator's scale-down time is known. Returns the
    scenario and a line saying what was shortened (``None`` when nothing was)."""
    settings = scenario.simulator
    if not settings.value("scale_to_zero") or not any(s.idle for s in scenario.stages):
        return scenario, None
    enough = float(settings.value("scale_down_after_s")) + IDLE_MARGIN_S
    stages = tuple(
        dataclasses.replace(s, duration_s=enough) if s.idle and s.duration_s > enough else s
        for s in scenario.stages
    )
    if stages == scenario.stages:
        return scenario, None
    note = (
        f"idle stages last {enough:g}s against the simulator: it scales to zero after "
        f"{settings.value('scale_down_after_s'):g}s without requests"
    )
    return dataclasses.replace(scenario, stages=stages), note
