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

    [load]
    duration = "30s"                # default for every stage
    stages = [{concurrency = 1}, {rate = 2.0, arrival = "poisson"}, {tokens_per_min = 120000}]
    # shorthands: concurrency = [1, 4, 16] / rate = [1, 2, 4] / tokens_per_min = [60000, 120000]
    # ramp = {kind = "rate", start = 1, stop = 8, steps = 4}   (or kind = "concurrency", factor = 2)

Relative ``dataset`` paths are resolved against the scenario file's folder.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.client.protocol import RequestClass
from loadtest.errors import ConfigError
from loadtest.spec.arrivals import ArrivalProcess
from loadtest.spec.distributions import parse_length
from loadtest.spec.runspec import Stage, parse_duration

__all__ = [
    "SLO_METRICS",
    "EndpointConfig",
    "Scenario",
    "load_scenario",
    "parse_scenario",
    "parse_slo",
    "parse_sweep",
]

SLO_METRICS = ("ttft", "ttft_from_intended", "tpot", "itl", "e2e")
_TOP = {"name", "description", "seed", "endpoint", "simulator", "classes", "load", "retry"}
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
_SIM = {
    "architecture",
    "gpu",
    "replicas",
    "max_batch",
    "tp",
    "mode",
    "itpm",
    "otpm",
    "qph",
    "qps",
    "chunk_size",
    "chunks",
    "jitter_cv",
    "reject_stream_options",
    "min_provisioned_throughput",
    "max_provisioned_throughput",
    "faults",
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
_LOAD = {
    "duration",
    "max_concurrency",
    "drain_timeout",
    "stages",
    "concurrency",
    "rate",
    "tokens_per_min",
    "ramp",
    "arrival",
    "burstiness",
    "max_requests",
    "sweep",
}
_STAGE = {
    "concurrency",
    "rate",
    "tokens_per_min",
    "input_tokens_per_min",
    "output_tokens_per_min",
    "duration",
    "arrival",
    "burstiness",
    "max_concurrency",
    "max_requests",
    "name",
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
    simulator: dict[str, Any]
    classes: tuple[RequestClass, ...]
    stages: tuple[Stage, ...]
    drain_timeout_s: float = 30.0
    retry: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    sweep: dict[str, Any] | None = None


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def _table(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    return raw


def _duration(raw: Any, where: str) -> float:
    try:
        return parse_duration(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _positive(raw: Any, where: str, *, integer: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise ConfigError(f"{where} must be a positive number, got {raw!r}")
    if integer and int(raw) != raw:
        raise ConfigError(f"{where} must be a whole number, got {raw!r}")
    return float(raw)


def parse_slo(raw: Any, where: str) -> dict[str, float]:
    """``{ttft_p95 = "1s", tpot_p50 = "50ms", attainment = 0.9}`` → ``{"ttft_p95": 1.0, ...}`` (seconds)."""
    slo: dict[str, float] = {}
    for key, value in _table(raw, where).items():
        if key == "attainment":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise ConfigError(f"{where}.attainment must be a fraction in (0, 1], got {value!r}")
            slo[key] = float(value)
            continue
        metric, _, pct = key.rpartition("_p")
        if metric not in SLO_METRICS or not pct.replace(".", "", 1).isdigit() or not 0 < float(pct) < 100:
            raise ConfigError(f"{where}: unknown SLO '{key}' (use e.g. ttft_p95, tpot_p50, itl_p99, e2e_p90)")
        slo[key] = _duration(value, f"{where}.{key}")
    return slo


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
        slo=parse_slo(table.get("slo", {}), f"{where}.slo"),
    )


def _parse_stage(raw: Any, where: str, defaults: dict[str, Any]) -> Stage:
    table = _table(raw, where)
    _check_keys(table, _STAGE, where)
    kinds: list[str] = [k for k in ("concurrency", "rate") if k in table]
    token_keys = [
        k for k in ("tokens_per_min", "input_tokens_per_min", "output_tokens_per_min") if k in table
    ]
    if token_keys:
        kinds.append("tokens")
    if len(kinds) != 1:
        raise ConfigError(
            f"{where} needs exactly one of concurrency, rate or tokens_per_min "
            "(or input_/output_tokens_per_min)"
        )
    if "tokens_per_min" in table and len(token_keys) > 1:
        raise ConfigError(f"{where}: give tokens_per_min or input_/output_tokens_per_min, not both")
    duration = _duration(table.get("duration", defaults["duration"]), f"{where}.duration")
    arrival = table.get("arrival", defaults["arrival"])
    burstiness = table.get("burstiness", defaults["burstiness"])
    try:
        ArrivalProcess(arrival, float(burstiness))
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: burstiness must be a positive number") from None
    if arrival not in ("constant", "poisson", "gamma"):
        raise ConfigError(f"{where}.arrival must be constant, poisson or gamma, got {arrival!r}")
    max_requests = table.get("max_requests", defaults["max_requests"])
    if max_requests is not None:
        max_requests = int(_positive(max_requests, f"{where}.max_requests", integer=True))
    common: dict[str, Any] = {
        "duration_s": duration,
        "arrival": arrival,
        "burstiness": float(burstiness),
        "max_requests": max_requests,
        "max_concurrency": int(
            _positive(
                table.get("max_concurrency", defaults["max_concurrency"]),
                f"{where}.max_concurrency",
                integer=True,
            )
        ),
        "name": table.get("name"),
    }
    if kinds[0] == "concurrency":
        users = int(_positive(table["concurrency"], f"{where}.concurrency", integer=True))
        return Stage(kind="concurrency", users=users, **common)
    if kinds[0] == "rate":
        return Stage(kind="rate", rate=_positive(table["rate"], f"{where}.rate"), **common)
    rates: dict[str, Any] = {k: _positive(table[k], f"{where}.{k}") for k in token_keys}
    return Stage(kind="tokens", **rates, **common)


def parse_sweep(raw: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """``sweep = {points = 5}`` (or ``true``): an automatic sweep (:mod:`loadtest.engine.sweep`); stage duration,
    ``max_concurrency`` (the saturation probe's users), arrival and burstiness come from ``[load]``."""
    table = {} if raw is True else _table(raw, "load.sweep")
    _check_keys(table, {"points"}, "load.sweep")
    points = int(_positive(table.get("points", 5), "load.sweep.points", integer=True))
    return {
        "points": points,
        "duration_s": _duration(defaults["duration"], "load.duration"),
        "max_concurrency": int(_positive(defaults["max_concurrency"], "load.max_concurrency", integer=True)),
        "arrival": defaults["arrival"],
        "burstiness": float(defaults["burstiness"]),
    }


def _expand_load(load: dict[str, Any], defaults: dict[str, Any]) -> list[Stage]:
    forms = [k for k in ("stages", "concurrency", "rate", "tokens_per_min", "ramp", "sweep") if k in load]
    if len(forms) != 1:
        raise ConfigError(
            "[load] needs exactly one of stages, concurrency, rate, tokens_per_min, ramp or sweep"
        )
    form = forms[0]
    if form == "sweep":
        return []
    raw_stages: list[Any]
    if form == "stages":
        raw_stages = load["stages"]
        if not isinstance(raw_stages, list):
            raise ConfigError("load.stages must be a list of tables")
    elif form in ("concurrency", "rate", "tokens_per_min"):
        values = load[form] if isinstance(load[form], list) else [load[form]]
        raw_stages = [{form: v} for v in values]
    else:
        ramp = _table(load["ramp"], "load.ramp")
        _check_keys(ramp, {"kind", "start", "stop", "steps", "factor", "step"}, "load.ramp")
        kind = ramp.get("kind", "concurrency")
        key = {"concurrency": "concurrency", "rate": "rate", "tokens": "tokens_per_min"}.get(kind)
        if key is None:
            raise ConfigError("load.ramp.kind must be concurrency, rate or tokens")
        start = _positive(ramp.get("start"), "load.ramp.start")
        stop = _positive(ramp.get("stop"), "load.ramp.stop")
        if stop < start:
            raise ConfigError("load.ramp.stop must be ≥ start")
        values_f: list[float] = []
        if "factor" in ramp:
            factor = _positive(ramp["factor"], "load.ramp.factor")
            if factor <= 1:
                raise ConfigError("load.ramp.factor must be > 1")
            v = start
            while v <= stop * (1 + 1e-9):
                values_f.append(v)
                v *= factor
        else:
            steps = int(_positive(ramp.get("steps", 5), "load.ramp.steps", integer=True))
            values_f = [start + (stop - start) * i / max(1, steps - 1) for i in range(steps)]
        raw_stages = [{key: round(v) if key == "concurrency" else v} for v in values_f]
    if not raw_stages:
        raise ConfigError("the load plan has no stages")  # pragma: no cover - lists are checked above
    return [_parse_stage(raw, f"load.stages[{i}]", defaults) for i, raw in enumerate(raw_stages)]


def _parse_retry(raw: Any) -> dict[str, Any]:
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
    return {
        "policy": policy,
        "max_wait_s": _duration(table.get("max_wait", "30s"), "[retry].max_wait"),
        "max_retries": retries,
    }


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
    _check_keys(simulator, _SIM, "[simulator]")
    classes_raw = raw.get("classes", [{}])
    if not isinstance(classes_raw, list) or not classes_raw:
        raise ConfigError("classes must be a non-empty array of tables ([[classes]])")
    classes = tuple(_parse_class(c, i, base) for i, c in enumerate(classes_raw))
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must be unique, got {names}")
    load = _table(raw.get("load", {"concurrency": [1]}), "[load]")
    _check_keys(load, _LOAD, "[load]")
    defaults = {
        "duration": load.get("duration", "30s"),
        "arrival": load.get("arrival", "poisson"),
        "burstiness": load.get("burstiness", 1.0),
        "max_concurrency": load.get("max_concurrency", 256),
        "max_requests": load.get("max_requests"),
    }
    stages = _expand_load(load, defaults)
    labels = [s.label for s in stages]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"stage labels must be unique (name repeated stages), got {labels}")
    retry = _parse_retry(raw.get("retry", {}))
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed must be an integer")
    return Scenario(
        name=str(raw.get("name", source.stem if source else "scenario")),
        description=str(raw.get("description", "")),
        seed=seed,
        endpoint=endpoint,
        simulator=simulator,
        classes=classes,
        stages=tuple(stages),
        drain_timeout_s=_duration(load.get("drain_timeout", "30s"), "load.drain_timeout"),
        retry=retry,
        source=str(source) if source else None,
        sweep=parse_sweep(load["sweep"], defaults) if "sweep" in load else None,
    )


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    if not path.is_file():
        raise ConfigError(f"no scenario file at {path}")
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
