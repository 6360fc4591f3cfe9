"""SLO tables of a scenario: a request class's (or a Python scenario's step's) ``slo = {ttft_p95 = "1s", ...}``
and a Python scenario's flow SLO (``[python] slo = {flow_e2e_p95 = "10s"}``), each key checked with one line."""

from __future__ import annotations

from typing import Any

from loadtest.errors import ConfigError
from loadtest.spec.pyscenario import flow_latency_percentile
from loadtest.spec.tables import duration as _duration
from loadtest.spec.tables import table as _table

__all__ = ["SLO_METRICS", "TOKEN_SLO_METRICS", "parse_flow_slo", "parse_slo", "slo_for"]

SLO_METRICS = ("ttft", "ttft_from_intended", "tpot", "itl", "e2e")
TOKEN_SLO_METRICS = ("tpot", "itl")  # need output tokens: an embeddings class has none


def slo_for(kind: str, slo: dict[str, float]) -> dict[str, float]:
    """``slo`` without the SLOs a class of this kind cannot have: no TPOT or ITL for embeddings (a ``--slo`` given
    to every class applies where it means something)."""
    if kind != "embeddings":
        return slo
    return {k: v for k, v in slo.items() if k.rpartition("_p")[0] not in TOKEN_SLO_METRICS}


def parse_slo(raw: Any, where: str) -> dict[str, float]:
    """``{ttft_p95 = "1s", tpot_p50 = "50ms", attainment = 0.9}`` → ``{"ttft_p95": 1.0, ...}`` (seconds)."""
    slo: dict[str, float] = {}
    for key, value in _table(raw, where).items():
        if key == "attainment":
            slo[key] = _attainment(value, where)
            continue
        metric, _, pct = key.rpartition("_p")
        if metric not in SLO_METRICS or not pct.replace(".", "", 1).isdigit() or not 0 < float(pct) < 100:
            raise ConfigError(f"{where}: unknown SLO '{key}' (use e.g. ttft_p95, tpot_p50, itl_p99, e2e_p90)")
        slo[key] = _duration(value, f"{where}.{key}")
    return slo


def _attainment(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{where}.attainment must be a fraction in (0, 1], got {value!r}")
    return float(value)


def parse_flow_slo(raw: Any, where: str) -> dict[str, float]:
    """``{flow_e2e_p95 = "10s", attainment = 0.9}`` → seconds (and the fraction)."""
    slo: dict[str, float] = {}
    for key, value in _table(raw, where).items():
        if key == "attainment":
            slo[key] = _attainment(value, where)
            continue
        if flow_latency_percentile(key) is None:
            raise ConfigError(f"{where}: unknown flow SLO '{key}' (use e.g. flow_e2e_p95)")
        slo[key] = _duration(value, f"{where}.{key}")
    return slo
