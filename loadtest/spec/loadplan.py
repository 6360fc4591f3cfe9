"""The ``[load]`` table of a scenario → its stages (:class:`Stage`) or an automatic sweep (:class:`SweepPlan`).

Forms: ``stages = [...]`` (tables; ``{idle = "35m"}`` is a stage without any request), the shorthands
``concurrency`` / ``rate`` / ``tokens_per_min`` (a number or a list), ``ramp = {kind, start, stop, steps | factor}``
and ``sweep = {points}``. ``duration``, ``arrival``, ``burstiness``, ``max_concurrency`` and ``max_requests`` in
``[load]`` are every stage's defaults.
"""

from __future__ import annotations

from typing import Any

from loadtest.errors import ConfigError
from loadtest.spec.arrivals import ArrivalProcess
from loadtest.spec.runspec import DEFAULT_MAX_CONCURRENCY, Stage, SweepPlan
from loadtest.spec.tables import check_keys as _check_keys
from loadtest.spec.tables import duration as _duration
from loadtest.spec.tables import positive as _positive
from loadtest.spec.tables import table as _table

__all__ = ["LOAD_KEYS", "expand_load", "load_defaults", "parse_sweep"]

LOAD_KEYS = {
    "duration",
    "max_concurrency",
    "drain_timeout",
    "abort_after",
    "server_metrics",
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


def _parse_stage(raw: Any, where: str, defaults: dict[str, Any]) -> Stage:
    table = _table(raw, where)
    if "idle" in table:
        _check_keys(table, {"idle", "name"}, f"{where} (an idle stage)")
        return Stage(
            kind="idle", duration_s=_duration(table["idle"], f"{where}.idle"), name=table.get("name")
        )
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
            "(or input_/output_tokens_per_min), or idle"
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


def parse_sweep(raw: Any, defaults: dict[str, Any]) -> SweepPlan:
    """``sweep = {points = 5}`` (or ``true``): an automatic sweep (:mod:`loadtest.engine.sweep`); stage duration,
    ``max_concurrency`` (the saturation probe's users), arrival and burstiness come from ``[load]``."""
    table = {} if raw is True else _table(raw, "load.sweep")
    _check_keys(table, {"points"}, "load.sweep")
    points = int(_positive(table.get("points", 5), "load.sweep.points", integer=True))
    return SweepPlan(
        points=points,
        duration_s=_duration(defaults["duration"], "load.duration"),
        max_concurrency=int(_positive(defaults["max_concurrency"], "load.max_concurrency", integer=True)),
        arrival=defaults["arrival"],
        burstiness=float(defaults["burstiness"]),
    )


def expand_load(load: dict[str, Any], defaults: dict[str, Any]) -> list[Stage]:
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
    stages = [_parse_stage(raw, f"load.stages[{i}]", defaults) for i, raw in enumerate(raw_stages)]
    if all(s.idle for s in stages):
        raise ConfigError("load.stages: every stage is idle; a run needs a stage that sends requests")
    return stages


def load_defaults(load: dict[str, Any]) -> dict[str, Any]:
    """Every stage's defaults from ``[load]``."""
    return {
        "duration": load.get("duration", "30s"),
        "arrival": load.get("arrival", "poisson"),
        "burstiness": load.get("burstiness", 1.0),
        "max_concurrency": load.get("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        "max_requests": load.get("max_requests"),
    }
