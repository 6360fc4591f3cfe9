"""Thresholds as a CI writes them: ``--slo`` and ``--max-regression``.

``--slo '[SCOPE:]METRIC OP LIMIT'`` (:func:`parse_thresholds`), one metric per flag:

* a latency percentile is a ceiling with its unit: ``ttft_p95<800ms``, ``chat:tpot_p50<=40ms``, ``e2e_p99<2s``
  (``ttft``, ``ttft_from_intended``, ``tpot``, ``itl``, ``e2e``; any percentile in (0, 100));
* ``goodput>=95%`` (or ``attainment>=0.95``): the share of requests meeting every latency SLO of their class;
* ``error_rate<1%``: failed requests (429s included, the generator's own cancellations not) of all;
* a throughput is a floor, per second: ``output_tok_per_s>=1200``, ``input_tok_per_s``, ``total_tok_per_s``,
  ``req_per_s`` (successful requests);
* a Python scenario's flows (:func:`is_flow`): ``flow_e2e_p95<10s`` (a ceiling, as a latency), ``flow_error_rate<5%``
  (flows that ended ``failed`` or ``error`` of those that ended, cancelled ones left out) and
  ``flow_attainment>=90%`` (flows that ended ``ok`` within the flow latency limits, of the same). Scoped to a stage
  only (a flow spans classes), and the gate's alone: never a class's SLO.

``<`` and ``<=`` mean the same (a ceiling is met at the limit), as do ``>`` and ``>=``. ``SCOPE`` names a request
class or a stage label; the gate (:mod:`analysis.gate`) resolves it against the run. For ``loadtest run`` the
latency and goodput thresholds are also the SLOs of the run's classes (:func:`slo_tables`), which is what its
capacity verdict and report judge.

``--max-regression '[SCOPE:]METRIC:±N%'`` (:func:`parse_regressions`): how much worse than a baseline run a metric
may get — ``tpot_p50:+10%`` (a latency may grow by 10 %), ``output_tok_per_s:-10%`` (a throughput may fall by 10 %).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from loadtest.errors import ConfigError
from loadtest.spec.pyscenario import flow_latency_percentile
from loadtest.spec.slos import SLO_METRICS, parse_flow_slo, parse_slo

__all__ = [
    "DEFAULT_REGRESSIONS",
    "FLOW_SHARES",
    "THROUGHPUT_METRICS",
    "Regression",
    "Threshold",
    "flow_slo_of",
    "gate_only",
    "is_ceiling",
    "is_flow",
    "metric_kind",
    "parse_noise_floors",
    "parse_regressions",
    "parse_slo_flags",
    "parse_thresholds",
    "slo_tables",
    "thresholds_of_classes",
    "thresholds_of_flow_slo",
]

MetricKind = Literal["latency", "share", "throughput"]

THROUGHPUT_METRICS = ("output_tok_per_s", "input_tok_per_s", "total_tok_per_s", "req_per_s")
FLOW_SHARES = ("flow_error_rate", "flow_attainment")
_SHARES = {
    "goodput": "attainment",
    "attainment": "attainment",
    "error_rate": "error_rate",
    **{name: name for name in FLOW_SHARES},
}
_CEILINGS = ("error_rate", "flow_error_rate")
_FORM = re.compile(
    r"^(?:(?P<scope>[^:<>=]+):)?(?P<metric>[A-Za-z_][A-Za-z_0-9.]*)\s*(?P<op><=|<|>=|>)\s*(?P<limit>[^<>=\s].*)$"
)
_CHANGE = re.compile(r"^(?:(?P<scope>[^:]+):)?(?P<metric>[A-Za-z_][A-Za-z_0-9.]*)\s*:\s*(?P<change>[-+]\S*)$")
_SLO_HELP = (
    "--slo takes [SCOPE:]METRIC<LIMIT, e.g. 'ttft_p95<800ms', 'error_rate<1%', 'goodput>=95%' "
    "or 'flow_e2e_p95<10s'"
)


@dataclass(frozen=True, slots=True)
class Threshold:
    """One ``--slo``: ``metric`` is ``ttft_p95`` …, ``attainment``, ``error_rate``, a throughput or a flow metric;
    ``limit`` in seconds, as a fraction, or per second; ``scope`` a class or stage name (None: every stage, all
    classes)."""

    text: str
    scope: str | None
    metric: str
    limit: float

    @property
    def kind(self) -> MetricKind:
        return metric_kind(self.metric)

    @property
    def ceiling(self) -> bool:
        return is_ceiling(self.metric)

    @property
    def flow(self) -> bool:
        return is_flow(self.metric)


@dataclass(frozen=True, slots=True)
class Regression:
    """One ``--max-regression``: ``change`` the largest tolerated relative change in the worse direction (+0.10
    for a latency that may grow 10 %, −0.10 for a throughput that may fall 10 %)."""

    text: str
    scope: str | None
    metric: str
    change: float

    @property
    def kind(self) -> MetricKind:
        return metric_kind(self.metric)


DEFAULT_REGRESSIONS = ("ttft_p95:+10%", "tpot_p50:+10%", "output_tok_per_s:-10%")


def is_ceiling(metric: str) -> bool:
    """A limit on ``metric`` is one the value must stay at or under (a latency, the error rate); else a floor."""
    return metric_kind(metric) == "latency" or metric in _CEILINGS


def is_flow(metric: str) -> bool:
    """A metric of a Python scenario's flows (``flow_e2e_p95``, ``flow_error_rate``, ``flow_attainment``), not of
    requests."""
    return metric in FLOW_SHARES or flow_latency_percentile(metric) is not None


def metric_kind(metric: str) -> MetricKind:
    if metric in THROUGHPUT_METRICS:
        return "throughput"
    if metric in ("attainment", "error_rate", *FLOW_SHARES):
        return "share"
    return "latency"


def parse_thresholds(items: Iterable[str]) -> list[Threshold]:
    """Every ``--slo`` value, each checked; one line for a mistake; a metric twice in one scope is refused."""
    out: list[Threshold] = []
    seen: set[tuple[str | None, str]] = set()
    for item in items:
        found = _FORM.match(item.strip())
        if found is None:
            raise ConfigError(f"{_SLO_HELP}, got {item!r}")
        scope, metric, op, limit = (found.group(k) for k in ("scope", "metric", "op", "limit"))
        scope = scope.strip() if scope else None
        limit = limit.strip()
        ceiling = op in ("<", "<=")
        if metric in _SHARES:
            key = _SHARES[metric]
            if (key in _CEILINGS) != ceiling:
                want, fix = (
                    ("ceiling", f"{metric}<{limit}") if key in _CEILINGS else ("floor", f"{metric}>={limit}")
                )
                raise ConfigError(f"--slo {item!r}: {metric} is a {want}, write {fix}")
            value = _share(limit, item, allow_zero=key in _CEILINGS)
        elif metric in THROUGHPUT_METRICS:
            key = metric
            if ceiling:
                raise ConfigError(f"--slo {item!r}: a throughput is a floor, write {metric}>={limit}")
            value = _rate(limit, item)
        else:
            flow = flow_latency_percentile(metric) is not None
            if not flow and not _latency_name(metric):
                raise ConfigError(
                    f"--slo {item!r}: unknown SLO '{metric}' (use e.g. ttft_p95, tpot_p50, itl_p99, e2e_p90, "
                    f"error_rate, goodput, {', '.join(THROUGHPUT_METRICS)}; for flows flow_e2e_p95, "
                    f"{', '.join(FLOW_SHARES)})"
                )
            if not ceiling:
                raise ConfigError(f"--slo {item!r}: a latency SLO is a ceiling, write {metric}<{limit}")
            if not limit.rstrip(".0123456789"):
                raise ConfigError(f"--slo {item!r}: give the limit a unit, e.g. {metric}<{limit}ms")
            parse = parse_flow_slo if flow else parse_slo
            key, value = metric, parse({metric: limit}, f"--slo {item!r}")[metric]
        if (scope, key) in seen:
            raise ConfigError(f"--slo {key} is given twice" + (f" for {scope}" if scope else ""))
        seen.add((scope, key))
        out.append(Threshold(item.strip(), scope, key, value))
    return out


def slo_tables(
    thresholds: Iterable[Threshold], skip_scopes: Iterable[str] = ()
) -> dict[str | None, dict[str, float]]:
    """``{class or None (every class): {slo key: limit}}``: the latency and goodput thresholds as the SLO tables a
    run's classes carry; error rates, throughputs and flow metrics are the gate's alone, as are scopes in
    ``skip_scopes`` (a run's stage labels)."""
    skip = set(skip_scopes)
    out: dict[str | None, dict[str, float]] = {}
    for t in thresholds:
        if gate_only(t) or t.scope in skip:
            continue
        out.setdefault(t.scope, {})[t.metric] = t.limit
    return out


def gate_only(t: Threshold) -> bool:
    """A threshold only a gate judges, never a class's SLO: an error rate, a throughput, a flow metric."""
    return t.kind == "throughput" or t.metric == "error_rate" or t.flow


def flow_slo_of(thresholds: Iterable[Threshold]) -> dict[str, float]:
    """The flow SLO a Python scenario's run judges (its ``[python] slo``) from the unscoped ``flow_e2e_pXX`` and
    ``flow_attainment`` thresholds: ``{"flow_e2e_p95": 10.0, "attainment": 0.9}``."""
    out: dict[str, float] = {}
    for t in thresholds:
        if t.scope is None and t.metric == "flow_attainment":
            out["attainment"] = t.limit
        elif t.scope is None and flow_latency_percentile(t.metric) is not None:
            out[t.metric] = t.limit
    return out


def _sets_flow_slo(t: Threshold) -> bool:
    return t.scope is None and (
        t.metric == "flow_attainment" or flow_latency_percentile(t.metric) is not None
    )


def parse_slo_flags(items: Iterable[str]) -> dict[str | None, dict[str, float]]:
    """``loadtest run``'s SLO tables from ``--slo`` values when no gate follows: error rates, throughputs and the
    other flow metrics mean something only to a gate, so they are refused here with the way to gate; an unscoped
    flow latency or attainment is the run's flow SLO (:func:`flow_slo_of`), not a class's."""
    thresholds = parse_thresholds(items)
    for t in thresholds:
        if gate_only(t) and not _sets_flow_slo(t):
            raise ConfigError(
                f"--slo {t.text!r} is a gate threshold: add --gate (or run loadtest gate RUN after)"
            )
    return slo_tables(thresholds)


def parse_regressions(items: Iterable[str]) -> list[Regression]:
    """Every ``--max-regression`` value (see the module docstring), each checked; one line for a mistake."""
    out: list[Regression] = []
    seen: set[tuple[str | None, str]] = set()
    for item in items:
        found = _CHANGE.match(item.strip())
        if found is None:
            raise ConfigError(
                f"--max-regression takes [SCOPE:]METRIC:±N%, e.g. 'tpot_p50:+10%' or 'output_tok_per_s:-10%', "
                f"got {item!r}"
            )
        scope, metric, change = found.group("scope"), found.group("metric"), found.group("change")
        scope = scope.strip() if scope else None
        kind = metric_kind(metric)
        if is_flow(metric):
            raise ConfigError(
                f"--max-regression {item!r}: flow metrics are not compared with a baseline; gate {metric} with --slo"
            )
        if kind == "share":
            raise ConfigError(
                f"--max-regression {item!r}: compare latency percentiles or throughputs; gate {metric} with --slo"
            )
        if kind == "latency":
            parse_slo({metric: "1s"}, f"--max-regression {item!r}")  # checks the metric's name
        value = _percent(change)
        if value is None:
            raise ConfigError(f"--max-regression {item!r}: the change is a signed percentage, e.g. +10%")
        worse = "+" if kind == "latency" else "-"
        if not change.startswith(worse):
            example = f"{metric}:{worse}10%"
            what = "grows" if kind == "latency" else "falls"
            raise ConfigError(
                f"--max-regression {item!r}: a {kind} regresses when it {what}, write e.g. {example}"
            )
        most = 10.0 if kind == "latency" else 1.0
        if not 0 < abs(value) < most:
            raise ConfigError(
                f"--max-regression {item!r}: the change must be above 0 % and under {most:.0%} (a limit that can fail)"
            )
        if (scope, metric) in seen:
            raise ConfigError(
                f"--max-regression {metric} is given twice" + (f" for {scope}" if scope else "")
            )
        seen.add((scope, metric))
        out.append(Regression(item.strip(), scope, metric, value))
    return out


def _latency_name(metric: str) -> bool:
    """``ttft_p95``, ``itl_p99.9``: a latency metric and a percentile in (0, 100)."""
    name, sep, pct = metric.rpartition("_p")
    if not sep or name not in SLO_METRICS:
        return False
    try:
        return 0 < float(pct) < 100
    except ValueError:
        return False


def _percent(text: str) -> float | None:
    """``+10%`` → 0.1, ``-5%`` → −0.05, ``3%`` → 0.03; None unless a finite number followed by ``%``."""
    if not text.endswith("%"):
        return None
    try:
        value = float(text[:-1]) / 100.0
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_noise_floors(items: Iterable[str]) -> dict[str, float]:
    """``--noise-floor '[METRIC:]N%'`` values → ``{metric or "*" (every metric): floor}``; one line for a
    mistake (a metric a comparison cannot have, a floor that is not a percentage from 0)."""
    out: dict[str, float] = {}
    for item in items:
        metric, _, share = item.strip().rpartition(":")
        metric = metric.strip()
        value = _percent(share.strip())
        if value is None or not 0 <= value < 10:
            raise ConfigError(f"--noise-floor takes [METRIC:]N%, e.g. '3%' or 'ttft_p99:8%', got {item!r}")
        if metric and not (_latency_name(metric) or metric in THROUGHPUT_METRICS):
            raise ConfigError(
                f"--noise-floor {item!r}: {metric!r} is not a metric a comparison has (a latency percentile such "
                f"as tpot_p50, or {', '.join(THROUGHPUT_METRICS)})"
            )
        out[metric or "*"] = value
    return out


def _share(text: str, item: str, allow_zero: bool = False) -> float:
    """``95%`` or ``0.95`` → 0.95, a fraction in (0, 1] ([0, 1] for an error rate)."""
    value = _percent(text) if text.endswith("%") else None
    if value is None:
        try:
            value = float(text)
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise ConfigError(f"--slo {item!r}: a share is a percentage or a fraction, e.g. 95% or 0.95")
    if not (0 <= value <= 1 if allow_zero else 0 < value <= 1):
        raise ConfigError(f"--slo {item!r}: a share must be in {'[' if allow_zero else '('}0, 100 %]")
    return value


def _rate(text: str, item: str) -> float:
    """``1200`` or ``1200/s`` → 1200.0, positive and finite."""
    raw = text.removesuffix("/s").strip()
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"--slo {item!r}: a throughput is a number per second, e.g. 1200") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"--slo {item!r}: a throughput must be a positive number per second")
    return value


def thresholds_of_classes(slos: Mapping[str, Mapping[str, float]]) -> list[Threshold]:
    """A run's class SLO tables as thresholds scoped to each class (what the gate judges when given none)."""
    out = []
    for cls, table in slos.items():
        for key, limit in table.items():
            text = (
                f"{cls}:goodput>={limit * 100:.4g}%"
                if key == "attainment"
                else f"{cls}:{key}<{limit * 1000:.6g}ms"
            )
            out.append(Threshold(text, cls, key, float(limit)))
    return out


def thresholds_of_flow_slo(slo: Mapping[str, float]) -> list[Threshold]:
    """A Python scenario's flow SLO (``{"flow_e2e_p95": 10.0, "attainment": 0.9}``) as unscoped flow thresholds (what
    the gate judges when given none)."""
    out = []
    for key, limit in slo.items():
        if key == "attainment":
            out.append(
                Threshold(f"flow_attainment>={limit * 100:.4g}%", None, "flow_attainment", float(limit))
            )
        elif flow_latency_percentile(key) is not None:
            out.append(Threshold(f"{key}<{limit * 1000:.6g}ms", None, key, float(limit)))
    return out
