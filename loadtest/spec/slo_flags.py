"""``--slo`` on the command line: ``[CLASS:]METRIC_PQ<LIMIT`` (``ttft_p95<800ms``, ``chat:tpot_p50<=40ms``) and
``goodput>=95%`` / ``attainment>=0.95`` — the form a CI threshold is written in — into the SLO tables a scenario's
classes carry (``{"ttft_p95": 0.8}``, seconds; ``attainment`` a fraction). ``<`` and ``<=`` mean the same: a
percentile meets its SLO when it is at most the limit. A latency limit needs its unit (``800ms``, ``1s``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from loadtest.errors import ConfigError
from loadtest.spec.scenario import parse_slo

__all__ = ["parse_slo_flags"]

_FORM = re.compile(
    r"^(?:(?P<scope>[^:<>=]+):)?(?P<metric>[A-Za-z_][A-Za-z_0-9.]*)\s*(?P<op><=|<|>=|>)\s*(?P<limit>\S.*)$"
)
_SHARE = ("goodput", "attainment")  # the share of requests meeting every SLO of their class


def parse_slo_flags(items: Iterable[str]) -> dict[str | None, dict[str, float]]:
    """``{class or None (every class): {slo key: limit}}`` from ``--slo`` values, each checked; one line for a
    mistake."""
    out: dict[str | None, dict[str, float]] = {}
    for item in items:
        found = _FORM.match(item.strip())
        if found is None:
            raise ConfigError(
                f"--slo takes [CLASS:]METRIC<LIMIT, e.g. 'ttft_p95<800ms' or 'goodput>=95%', got {item!r}"
            )
        scope, metric, op, limit = (found.group(k) for k in ("scope", "metric", "op", "limit"))
        scope = scope.strip() if scope else None
        if metric in _SHARE:
            if op not in (">=", ">"):
                raise ConfigError(f"--slo {item!r}: {metric} is a floor, write {metric}>={limit}")
            key, value = "attainment", _share(limit, item)
        else:
            if op not in ("<", "<="):
                raise ConfigError(f"--slo {item!r}: a latency SLO is a ceiling, write {metric}<{limit}")
            if not limit.strip().rstrip(".0123456789"):
                raise ConfigError(f"--slo {item!r}: give the limit a unit, e.g. {metric}<{limit}ms")
            key, value = metric, parse_slo({metric: limit.strip()}, f"--slo {item!r}")[metric]
        table = out.setdefault(scope, {})
        if key in table:
            raise ConfigError(f"--slo {key} is given twice" + (f" for {scope}" if scope else ""))
        table[key] = value
    return out


def _share(text: str, item: str) -> float:
    """``95%`` or ``0.95`` → 0.95, a fraction in (0, 1]."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(
            f"--slo {item!r}: a share is a percentage or a fraction, e.g. 95% or 0.95"
        ) from None
    if not 0 < value <= 1:
        raise ConfigError(f"--slo {item!r}: a share must be in (0, 100 %]")
    return value
