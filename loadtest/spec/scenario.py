"""Scenario files: TOML in, a validated :class:`Scenario` out, with one clear line for every mistake.

A scenario names its endpoint (or none: the embedded simulator), its request classes and its load plan::

    name = "chat"
    seed = 7

    [endpoint]                      # omit for the embedded simulator
    url = "http://127.0.0.1:8000/v1"  # OpenAI-compatible base URL ...
    model = "my-model"
    # host = "https://adb-1.azuredatabricks.net"; endpoint = "databricks-meta-llama-3-3-70b-instruct"
    # path = "invocations"          # Databricks: /serving-endpoints/{endpoint}/invocations instead of the OpenAI path
    api_key_env = "MY_TOKEN"        # or Databricks auth from the environment / ~/.databrickscfg

    [simulator]                     # used when there is no [endpoint]
    architecture = "llama-3.1-8b"
    gpu = "h100"

    [[classes]]
    name = "chat"
    weight = 3
    prompt_tokens = {dist = "lognormal", mean = 400, sigma = 0.5, min = 16, max = 4000}
    output_tokens = {dist = "uniform", min = 50, max = 300}
    slo = {ttft_p95 = "1s", tpot_p50 = "50ms"}

    [plan]                          # what the report plans for (optional)
    peak_tpm = 1800000              # forecast peak, tokens/min (or peak_rps = 40, or a Python scenario's peak_fps = 5)
    headroom = 0.2
    architectures = ["llama-3.3-70b"]  # estimated beside the measured endpoint

    [prompts]                       # how prompts are sized (optional; docs/load.md)
    tokenizer = "path/to/tokenizer.json"  # or a package / local Hugging Face model; nothing is downloaded
    # overhead = 30                 # the chat template's tokens, when the server reports no usage
    # calibrate = false             # one word per token, as runs before the calibration

    [load]
    duration = "30s"                # default for every stage
    # abort_after = "10s"; server_metrics = "auto"   # run options; the flags --abort-after / --server-metrics win
    stages = [{concurrency = 1}, {rate = 2.0, arrival = "poisson"}, {tokens_per_min = 120000}]
    # shorthands: concurrency = [1, 4, 16] / rate = [1, 2, 4] / tokens_per_min = [60000, 120000]
    # ramp = {kind = "rate", start = 1, stop = 8, steps = 4}   (or kind = "concurrency", factor = 2)

Relative ``dataset`` paths are resolved against the scenario file's folder.

This module owns the top level and the ``[endpoint]``, ``[[classes]]`` and ``[retry]`` tables; the ``[load]`` table
is expanded into stages by :mod:`loadtest.spec.loadplan`, and the keys a ``[simulator]`` table accepts are the
settings of :class:`loadtest.spec.simulator.SimSettings`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.errors import ConfigError
from loadtest.model.catalog import check_architecture
from loadtest.spec.distributions import parse_length
from loadtest.spec.loadplan import LOAD_KEYS, expand_load, load_defaults, parse_sweep
from loadtest.spec.profile import SHAPES
from loadtest.spec.prompts import PromptCalibration, PromptOptions
from loadtest.spec.pyscenario import PythonScenario
from loadtest.spec.pytable import parse_python, step_class
from loadtest.spec.runspec import (
    DEFAULT_ABORT_AFTER_S,
    DEFAULT_HEADROOM,
    NO_FLOWS_PEAK,
    PlanRequest,
    RetryPolicy,
    RunSpec,
    Stage,
    SweepPlan,
    one_peak,
    parse_abort_after,
    parse_server_metrics,
)
from loadtest.spec.simulator import SIM_KEYS, SimSettings
from loadtest.spec.slos import parse_slo, slo_for
from loadtest.spec.tables import check_keys as _check_keys
from loadtest.spec.tables import duration as _duration
from loadtest.spec.tables import positive as _positive
from loadtest.spec.tables import table as _table

__all__ = ["EndpointConfig", "Scenario", "load_scenario", "parse_scenario"]

_TOP = {
    "name",
    "description",
    "seed",
    "endpoint",
    "simulator",
    "classes",
    "load",
    "retry",
    "plan",
    "prompts",
    "python",
}
_PROMPTS = {"tokenizer", "overhead", "calibrate"}
_PLAN = {"peak_tpm", "peak_rps", "peak_fps", "headroom", "architectures", "profile"}
_ENDPOINT = {
    "url",
    "model",
    "host",
    "endpoint",
    "path",
    "api_key_env",
    "include_usage",
    "profile",
    "auth",
    "name",
}
_CLASS = {
    "name",
    "kind",
    "weight",
    "prompt_tokens",
    "output_tokens",
    "stream",
    "ignore_eos",
    "min_tokens",
    "temperature",
    "shared_prefix_tokens",
    "dataset",
    "extra_body",
    "slo",
}
_RETRY = {"policy", "max_wait", "max_retries"}


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Where to send load, as written in a scenario (credentials only by reference)."""

    url: str | None = None
    model: str | None = None
    host: str | None = None
    endpoint: str | None = None
    path: str = "openai"
    api_key_env: str | None = None
    include_usage: bool = True
    profile: str | None = None
    auth: str | None = None
    name: str | None = None

    @property
    def databricks(self) -> bool:
        return self.host is not None or self.endpoint is not None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    seed: int
    endpoint: EndpointConfig | None
    simulator: SimSettings
    classes: tuple[RequestClass, ...]
    stages: tuple[Stage, ...]
    drain_timeout_s: float = 30.0
    retry: RetryPolicy | None = None  # None: no [retry] table (spec.json says {}), which never retries either
    source: str | None = None
    sweep: SweepPlan | None = None
    plan: PlanRequest | None = None
    abort_after_s: float | None = DEFAULT_ABORT_AFTER_S  # None: never stop for a dead endpoint
    prompts: PromptOptions = field(default_factory=PromptOptions)
    server_metrics: str = "auto"  # [load] server_metrics: "auto", "off" or a URL (loadtest.runner.scrape)
    python: PythonScenario | None = None  # a Python scenario's module (loadtest.spec.pyscenario)

    def run_spec(
        self,
        *,
        run_id: str,
        out_dir: str,
        endpoint: EndpointSpec,
        read_timeout_s: float,
        simulated: bool,
        prompts: PromptCalibration | None = None,
    ) -> RunSpec:
        """The run this scenario describes against ``endpoint``, as the engine child reads it (``spec.json``)."""
        return RunSpec(
            run_id=run_id,
            name=self.name,
            out_dir=out_dir,
            endpoint=endpoint,
            request_classes=self.classes,
            stages=self.stages,
            seed=self.seed,
            drain_timeout_s=self.drain_timeout_s,
            retry=self.retry,
            sweep=self.sweep,
            read_timeout_s=read_timeout_s,
            simulated=simulated,
            scenario_source=self.source,
            description=self.description,
            plan=self.plan,
            abort_after_s=self.abort_after_s,
            prompts=prompts,
            python=self.python,
        )


def _parse_class(raw: Any, i: int, base: Path | None) -> RequestClass:
    where = f"classes[{i}]"
    table = _table(raw, where)
    _check_keys(table, _CLASS, where)
    kind = table.get("kind", "chat")
    if kind not in ("chat", "completions", "embeddings"):
        raise ConfigError(f"{where}.kind must be chat, completions or embeddings, got {kind!r}")
    name = str(table.get("name", kind))
    prompt = table.get("prompt_tokens", 128)
    output = table.get("output_tokens", 128 if kind != "embeddings" else 1)
    parse_length(prompt, f"{where}.prompt_tokens")
    parse_length(output, f"{where}.output_tokens")
    dataset = table.get("dataset")
    if dataset is not None:
        path = Path(str(dataset))
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise ConfigError(f"{where}.dataset: {path} does not exist")
        dataset = str(path)
    weight = table.get("weight", 1.0)
    _positive(weight, f"{where}.weight")
    prefix = table.get("shared_prefix_tokens", 0)
    if isinstance(prefix, bool) or not isinstance(prefix, int) or prefix < 0:
        raise ConfigError(f"{where}.shared_prefix_tokens must be a whole number ≥ 0")
    slo = parse_slo(table.get("slo", {}), f"{where}.slo")
    if slo_for(kind, slo) != slo:
        raise ConfigError(
            f"{where}.slo: an embeddings class produces no tokens, so it has no tpot or itl SLO"
        )
    for flag in ("stream", "ignore_eos", "min_tokens"):
        if flag in table and not isinstance(table[flag], bool):
            raise ConfigError(f"{where}.{flag} must be true or false")
    return RequestClass(
        name=name,
        kind=kind,
        weight=float(weight),
        prompt_tokens=prompt,
        output_tokens=output,
        stream=bool(table.get("stream", kind != "embeddings")) and kind != "embeddings",
        ignore_eos=bool(table.get("ignore_eos", True)),
        min_tokens=bool(table.get("min_tokens", False)),
        temperature=float(table.get("temperature", 0.0)),
        shared_prefix_tokens=prefix,
        dataset=dataset,
        extra_body=_table(table.get("extra_body", {}), f"{where}.extra_body"),
        slo=slo,
    )


def _parse_retry(raw: Any) -> RetryPolicy:
    """``[retry] policy = "none" | "retry-after", max_wait = "30s", max_retries = 3``: what a user does after a
    429. ``retry-after`` waits the server's Retry-After (1 s if absent), at most ``max_wait``, then sends the same
    request again as a new attempt (a new record with ``attempt`` + 1)."""
    table = _table(raw, "[retry]")
    _check_keys(table, _RETRY, "[retry]")
    policy = table.get("policy", "none")
    if policy not in ("none", "retry-after"):
        raise ConfigError(f"[retry].policy must be 'none' or 'retry-after', got {policy!r}")
    retries = table.get("max_retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError("[retry].max_retries must be a whole number ≥ 0")
    return RetryPolicy(
        policy=policy,
        max_wait_s=_duration(table.get("max_wait", "30s"), "[retry].max_wait"),
        max_retries=retries,
    )


def parse_plan(raw: Any) -> PlanRequest:
    """``[plan] peak_tpm = 1800000`` (or ``peak_rps``, or a Python scenario's ``peak_fps``: flows/s),
    ``headroom = 0.2``, ``architectures = [...]`` (names from the model's catalog), ``profile = "business-hours"``
    (a named hourly shape): what the run's report plans for."""
    table = _table(raw, "[plan]")
    _check_keys(table, _PLAN, "[plan]")
    forms = ("peak_tpm", "peak_rps", "peak_fps")
    one_peak({key: table.get(key) for key in forms}, "[plan]: give ")
    peaks = {key: _positive(table[key], f"[plan].{key}") for key in forms if key in table}
    headroom = table.get("headroom", DEFAULT_HEADROOM)
    if isinstance(headroom, bool) or not isinstance(headroom, int | float) or headroom < 0:
        raise ConfigError(f"[plan].headroom must be a fraction ≥ 0, got {headroom!r}")
    archs = table.get("architectures", [])
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ConfigError("[plan].architectures must be a list of architecture names")
    for arch in archs:
        check_architecture(arch, "[plan].architectures")
    profile = table.get("profile")
    if profile is not None and profile not in SHAPES:
        raise ConfigError(f"[plan].profile must be one of {', '.join(SHAPES)}, got {profile!r}")
    return PlanRequest(
        peak_tokens_per_min=peaks.get("peak_tpm"),
        peak_requests_per_s=peaks.get("peak_rps"),
        peak_flows_per_s=peaks.get("peak_fps"),
        headroom=float(headroom),
        architectures=tuple(archs),
        profile=profile,
    )


def parse_prompts(raw: Any, base: Path | None) -> PromptOptions:
    """``[prompts] tokenizer = "…", overhead = 30, calibrate = true``: how prompts are sized
    (:mod:`loadtest.spec.prompts`). A relative tokenizer path that exists next to the scenario is taken from
    there; anything else is a name, resolved when the run starts."""
    table = _table(raw, "[prompts]")
    _check_keys(table, _PROMPTS, "[prompts]")
    tokenizer = table.get("tokenizer")
    if tokenizer is not None and (not isinstance(tokenizer, str) or not tokenizer):
        raise ConfigError("[prompts].tokenizer must be a path or a name")
    if tokenizer is not None and base is not None and (base / tokenizer).exists():
        tokenizer = str(base / tokenizer)
    overhead = table.get("overhead")
    if overhead is not None and (isinstance(overhead, bool) or not isinstance(overhead, int) or overhead < 0):
        raise ConfigError("[prompts].overhead must be a whole number of tokens ≥ 0")
    calibrate = table.get("calibrate", True)
    if not isinstance(calibrate, bool):
        raise ConfigError("[prompts].calibrate must be true or false")
    return PromptOptions(tokenizer=tokenizer, overhead=overhead, calibrate=calibrate)


def parse_scenario(raw: dict[str, Any], *, source: Path | None = None) -> Scenario:
    """Validate a scenario's TOML table."""
    _check_keys(raw, _TOP, "scenario")
    base = source.parent if source is not None else None
    endpoint = None
    if "endpoint" in raw:
        table = _table(raw["endpoint"], "[endpoint]")
        _check_keys(table, _ENDPOINT, "[endpoint]")
        endpoint = EndpointConfig(**table)
        if endpoint.url is None and not endpoint.databricks:
            raise ConfigError("[endpoint] needs url (OpenAI-compatible) or host + endpoint (Databricks)")
        if endpoint.databricks and endpoint.endpoint is None:
            raise ConfigError(
                "[endpoint]: a Databricks endpoint needs 'endpoint' (the serving endpoint name)"
            )
        if endpoint.path not in ("openai", "invocations"):
            raise ConfigError("[endpoint].path must be 'openai' or 'invocations'")
    simulator = _table(raw.get("simulator", {}), "[simulator]")
    _check_keys(simulator, SIM_KEYS, "[simulator]")
    python = parse_python(raw["python"], base) if "python" in raw else None
    classes_raw = raw.get("classes", [] if python is not None else [{}])
    if not isinstance(classes_raw, list) or (not classes_raw and python is None):
        raise ConfigError("classes must be a non-empty array of tables ([[classes]])")
    if python is not None:
        classes = tuple(step_class(c, i) for i, c in enumerate(classes_raw))
    else:
        classes = tuple(_parse_class(c, i, base) for i, c in enumerate(classes_raw))
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must be unique, got {names}")
    load = _table(raw.get("load", {"concurrency": [1]}), "[load]")
    _check_keys(load, LOAD_KEYS, "[load]")
    defaults = load_defaults(load)
    stages = expand_load(load, defaults)
    labels = [s.label for s in stages]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"stage labels must be unique (name repeated stages), got {labels}")
    retry = _parse_retry(raw.get("retry", {}))
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed must be an integer")
    plan = parse_plan(raw["plan"]) if "plan" in raw else None
    if plan is not None and plan.peak_flows_per_s is not None and python is None:
        raise ConfigError(NO_FLOWS_PEAK.format(given="[plan] peak_fps"))
    return Scenario(
        name=str(raw.get("name", source.stem if source else "scenario")),
        description=str(raw.get("description", "")),
        seed=seed,
        endpoint=endpoint,
        simulator=SimSettings.from_mapping(simulator),
        classes=classes,
        stages=tuple(stages),
        drain_timeout_s=_duration(load.get("drain_timeout", "30s"), "load.drain_timeout"),
        retry=retry,
        source=str(source) if source else None,
        sweep=parse_sweep(load["sweep"], defaults) if "sweep" in load else None,
        plan=plan,
        abort_after_s=_abort_after(load.get("abort_after", DEFAULT_ABORT_AFTER_S)),
        prompts=parse_prompts(raw.get("prompts", {}), base),
        server_metrics=_server_metrics(load.get("server_metrics", "auto")),
        python=python,
    )


def _abort_after(raw: Any) -> float | None:
    try:
        return parse_abort_after(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f'load.abort_after: {exc} (or "off")') from None


def _server_metrics(raw: Any) -> str:
    try:
        return parse_server_metrics(raw)
    except ValueError as exc:
        raise ConfigError(f"load.server_metrics {exc}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    if not path.is_file():
        raise ConfigError(f"no scenario file at {path}")
    if path.suffix == ".py":
        raise ConfigError(
            f"{path.name} is a Python scenario: loadtest run {path} (or [python] module = ... in a TOML)"
        )
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    try:
        return parse_scenario(raw, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
