"""Capacity from a run's stages: the curve, the highest SLO-compliant throughput X* with a 95 % CI, the knee, the
saturation throughput, the binding limit and a TPOT-vs-concurrency fit. Pure: records + manifest in.

Per stage (in the manifest's order, i.e. increasing offered load), for every class with SLOs:

* a percentile SLO ``ttft_p95 = 1 s`` is checked on the stage's p95 of that class's successful requests, with the
  binomial order-statistic 95 % CI of that percentile (``scipy.stats.quantile_test``). **Point** verdict: the p95 is
  ≤ 1 s; **conservative** verdict: the CI's upper bound is ≤ 1 s (an upper bound that does not exist — too few
  requests for a p99 — fails); **optimistic**: the lower bound is ≤ 1 s;
* ``attainment = a``: good / all ≥ a (good as in :mod:`analysis.goodput`), with the Clopper–Pearson 95 % CI;
* every stage also needs failed requests (429s included) ≤ ``max_error_share`` of all (point verdict only).

**X*** is interpolated between the last passing stage A and the first failing stage B: for each check B fails,
``f = (limit − value_A) / (value_B − value_A)`` (clamped to [0, 1]), the smallest f wins, and
``X* = X_A + f·(X_B − X_A)`` (never below X_A), output tok/s likewise. The point, conservative and optimistic
verdicts and values give X* and its CI. When every stage passes, X* is the best passing stage: a lower bound.
When B fails on its error share alone and mostly through 429s, a quota binds: it admits a fixed rate whatever is
offered, so X* is what B got through (successful req/s), not an interpolation — the share of 429s does not grow
linearly from A (it is 0 up to the quota and ``1 − quota/offered`` above), so interpolating would land low.

**Knee**: Kneedle on latency (E2E p50) vs throughput (req/s) in stage order: both normalised to [0, 1], the knee is
the stage maximising ``x − y`` (none with fewer than 3 stages or no positive maximum).

**Binding limit**: "quota" when 429s (more than ``max_error_share`` of a stage's requests, so that a stray 429 does
not count) appear in a stage no later than the first stage whose latency breaks an SLO, whose queue grows
(open-loop arrivals found no free user, were dropped, or the rate of requests sent, 429s included, fell under 90 %
of the target; for a token-rate stage, of the request rate it started at) or whose other errors pass
``max_error_share``; else "server" when one of those happened; else None (no limit reached in the tested range).

**Fit**: ``TPOT ≈ t0 + t1·C`` by least squares over stages, C the mean in-flight requests by Little's law
(``Σ e2e / duration`` = rate × mean E2E, all requests of the stage), TPOT the mean over successful requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]

from analysis.fit import LinearFit, Prediction, fit_linear, predict_latency
from analysis.frame import RunData, flat_gaps
from analysis.goodput import class_slos, good_mask, slo_metric
from analysis.summary import limit_type, percentiles

__all__ = [
    "DEFAULT_MAX_ERROR_SHARE",
    "CapacityResult",
    "SloCheck",
    "StagePoint",
    "capacity",
    "capacity_from_run",
    "predict",
]

DEFAULT_MAX_ERROR_SHARE = 0.01
_CONFIDENCE = 0.95
View = Literal["point", "conservative", "optimistic"]


@dataclass(frozen=True, slots=True)
class SloCheck:
    """One SLO of one class in one stage. ``higher_is_better`` for attainment; latencies are "lower is better"."""

    key: str
    request_class: str | None
    limit: float
    value: float | None
    ci_low: float | None
    ci_high: float | None
    higher_is_better: bool = False

    def bound(self, view: View) -> float | None:
        """The value a view judges: the point, or the CI bound that is worse (conservative) or better."""
        if view == "point":
            return self.value
        worse = (view == "conservative") != self.higher_is_better
        return self.ci_high if worse else self.ci_low

    def passed(self, view: View = "point") -> bool:
        value = self.bound(view)
        if value is None:
            return view == "optimistic" and self.value is not None
        return value >= self.limit if self.higher_is_better else value <= self.limit

    @property
    def is_latency(self) -> bool:
        return self.key not in ("attainment", "errors")

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out.update(passed=self.passed("point"), passed_ci=self.passed("conservative"))
        return out


@dataclass(frozen=True, slots=True)
class StagePoint:
    """One stage on the capacity curve."""

    stage: str
    requests: int
    ok: int
    duration_s: float | None
    req_per_s: float | None
    output_tok_per_s: float | None
    concurrency: float | None
    ttft: dict[str, float | None]
    tpot: dict[str, float | None]
    e2e: dict[str, float | None]
    tpot_mean: float | None
    ttft_mean: float | None
    output_tokens_mean: float | None
    rate_limited: int
    limit_types: dict[str, int]
    queue_growth: bool
    checks: tuple[SloCheck, ...]

    def meets(self, view: View = "point") -> bool:
        return all(c.passed(view) for c in self.checks)

    @property
    def latency_broken(self) -> bool:
        return any(c.is_latency and not c.passed("point") for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["checks"] = [c.to_dict() for c in self.checks]
        out.update(meets=self.meets("point"), meets_ci=self.meets("conservative"))
        return out


@dataclass(frozen=True, slots=True)
class CapacityResult:
    points: tuple[StagePoint, ...]
    max_rps: float | None
    max_rps_ci: tuple[float | None, float | None]
    max_output_tok_per_s: float | None
    max_output_tok_per_s_ci: tuple[float | None, float | None]
    interpolated: bool
    basis: str
    knee_stage: str | None
    knee_rps: float | None
    saturation_stage: str | None
    saturation_rps: float | None
    saturation_output_tok_per_s: float | None
    binding: Literal["quota", "server"] | None
    binding_detail: str
    tpot_fit: LinearFit | None

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["points"] = [p.to_dict() for p in self.points]
        out["tpot_fit"] = self.tpot_fit.to_dict() if self.tpot_fit is not None else None
        return out


def _opt(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def percentile_ci(values: np.ndarray, q: float) -> tuple[float, float | None, float | None]:
    """``(p_q, low, high)``: the ``q``-th percentile (numpy's linear method) and its distribution-free 95 % CI,
    the order statistics ``x_(l)``, ``x_(u)`` with ``l = F⁻¹(α/2) − 1`` and ``u = F̄⁻¹(α/2)`` for ``F`` the
    Binomial(n, q/100) — ``scipy.stats.quantile_test(...).confidence_interval()``'s definition — found by one
    partition instead of scipy's sort. A bound beyond the sample (too few values) is None. ``values`` non-empty."""
    n = values.size
    a = (1.0 - _CONFIDENCE) / 2
    binom = stats.binom(n, q / 100)
    lo_i, hi_i = int(binom.ppf(a)) - 1, int(binom.isf(a))
    pos = (n - 1) * q / 100
    below = int(pos)
    above = min(below + 1, n - 1)
    part = np.partition(values, sorted({r for r in (lo_i, hi_i, below, above) if 0 <= r < n}))
    point = float(part[below] + (pos - below) * (part[above] - part[below]))
    low = float(part[lo_i]) if lo_i >= 0 else None
    high = float(part[hi_i]) if hi_i < n else None
    return point, low, high


def _percentile_check(key: str, cls: str, limit: float, values: np.ndarray, q: float) -> SloCheck:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return SloCheck(key, cls, limit, None, None, None)
    return SloCheck(key, cls, limit, *percentile_ci(values, q))


def _share_check(key: str, cls: str | None, limit: float, k: int, n: int, higher: bool) -> SloCheck:
    if n == 0:
        return SloCheck(key, cls, limit, None, None, None, higher)
    if key == "errors":  # point verdict only: a CI on a 1 % error budget would need thousands of requests
        return SloCheck(key, cls, limit, k / n, k / n, k / n, higher)
    ci = stats.binomtest(k, n).proportion_ci(_CONFIDENCE)
    return SloCheck(key, cls, limit, k / n, float(ci.low), float(ci.high), higher)


def _queue_growth(meta: Mapping[str, Any], achieved: float | None) -> bool:
    if meta.get("no_free_user") or meta.get("dropped"):
        return True
    target = meta.get("target") or {}
    rate = target.get("rate") or target.get("initial_rate")  # a token-rate stage: the rate it set out at
    return bool(rate and achieved is not None and achieved < 0.9 * float(rate))


def _point(
    label: str,
    df: pd.DataFrame,
    good: np.ndarray,
    slos: Mapping[str, Mapping[str, float]],
    meta: Mapping[str, Any],
    max_error_share: float,
) -> StagePoint:
    ok = df["ok"].to_numpy(dtype=bool)
    started, ended = df["started_at"].to_numpy(dtype="float64"), df["ended_at"].to_numpy(dtype="float64")
    span = float(np.nanmax(ended) - np.nanmin(started)) if len(df) else 0.0
    duration = span if span > 0 else None
    e2e_all = df["e2e"].to_numpy(dtype="float64")
    out_tokens = df["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    req_per_s = ok.sum() / duration if duration else None
    classes = df["request_class"].to_numpy(dtype=object)
    errors = df["error_class"].to_numpy(dtype=object)
    limited = errors == "rate_limited"
    types: dict[str, int] = {}
    for detail in df["error_detail"].to_numpy(dtype=object)[limited]:
        types[limit_type(detail)] = types.get(limit_type(detail), 0) + 1
    checks: list[SloCheck] = []
    gaps: tuple[np.ndarray, np.ndarray] | None = None
    for cls, slo in sorted(slos.items()):
        rows = classes == cls
        if not rows.any():
            continue
        sel = rows & ok
        for key, limit in sorted(slo.items()):
            if key == "attainment":
                checks.append(_share_check(key, cls, limit, int(good[rows].sum()), int(rows.sum()), True))
                continue
            parsed = slo_metric(key)
            if parsed is None:
                continue
            metric, q = parsed
            if metric == "itl":
                gaps = gaps or flat_gaps(df["chunk_gaps"])
                values = gaps[0][np.repeat(sel, gaps[1])]
            else:
                values = df[metric].to_numpy(dtype="float64")[sel]
            checks.append(_percentile_check(key, cls, limit, values, q))
    checks.append(_share_check("errors", None, max_error_share, int((~ok).sum()), len(df), False))
    tpot_ok = df["tpot"].to_numpy(dtype="float64")[ok]
    ttft_ok = df["ttft"].to_numpy(dtype="float64")[ok]

    def mean(values: np.ndarray) -> float | None:
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else None

    return StagePoint(
        stage=label,
        requests=len(df),
        ok=int(ok.sum()),
        duration_s=duration,
        req_per_s=float(req_per_s) if req_per_s is not None else None,
        output_tok_per_s=float(np.nansum(out_tokens[ok])) / duration if duration else None,
        concurrency=float(np.nansum(e2e_all)) / duration if duration else None,
        ttft=percentiles(ttft_ok),
        tpot=percentiles(tpot_ok),
        e2e=percentiles(df["e2e"].to_numpy(dtype="float64")[ok]),
        tpot_mean=mean(tpot_ok),
        ttft_mean=mean(ttft_ok),
        output_tokens_mean=mean(out_tokens[ok]),
        rate_limited=int(limited.sum()),
        limit_types=types,
        queue_growth=_queue_growth(meta, len(df) / duration if duration else None),
        checks=tuple(checks),
    )


def _x_star(points: Sequence[StagePoint], view: View) -> tuple[float | None, float | None, str, bool]:
    """(X* req/s, X* output tok/s, how it was found, interpolated?) for one view of the verdicts."""
    first_fail = next((i for i, p in enumerate(points) if not p.meets(view)), None)
    if first_fail is None:
        best = max(points, key=lambda p: p.req_per_s or 0.0)
        return (
            best.req_per_s,
            best.output_tok_per_s,
            f"every stage met the SLOs: {best.stage} is a lower bound",
            False,
        )
    if first_fail == 0:
        return None, None, f"no stage met the SLOs (the first, {points[0].stage}, failed)", False
    a, b = points[first_fail - 1], points[first_fail]
    if _quota_only(b, view) and a.req_per_s is not None and b.req_per_s is not None:
        # a quota admits a fixed rate whatever is offered: what B got through is the ceiling
        x = max(a.req_per_s, b.req_per_s)
        tok = max(a.output_tok_per_s or 0.0, b.output_tok_per_s or 0.0) or None
        basis = f"quota ceiling: the rate {b.stage} got through (its failures are 429s)"
        return x, tok, basis, True
    frac, why = 1.0, ""
    before = {(c.key, c.request_class): c for c in a.checks}
    for check in b.checks:
        if check.passed(view):
            continue
        prev = before.get((check.key, check.request_class))
        va, vb = (prev.bound(view) if prev else None), check.bound(view)
        f = 0.0
        if va is not None and vb is not None and vb != va:
            f = min(max((check.limit - va) / (vb - va), 0.0), 1.0)
        if f <= frac:
            frac, why = f, check.key + (f" ({check.request_class})" if check.request_class else "")
    if a.req_per_s is None or b.req_per_s is None:
        return a.req_per_s, a.output_tok_per_s, f"{a.stage} passed, {b.stage} failed on {why}", False
    x = max(a.req_per_s, a.req_per_s + frac * (b.req_per_s - a.req_per_s))
    tok = None
    if a.output_tok_per_s is not None and b.output_tok_per_s is not None:
        tok = max(a.output_tok_per_s, a.output_tok_per_s + frac * (b.output_tok_per_s - a.output_tok_per_s))
    basis = (
        f"interpolated linearly between {a.stage} (passed) and {b.stage} (failed on {why}), f = {frac:.2f}"
    )
    return x, tok, basis, True


def _quota_only(point: StagePoint, view: View) -> bool:
    """The stage fails on its error share alone, and mostly through 429s."""
    failed = [c for c in point.checks if not c.passed(view)]
    errors = point.requests - point.ok
    return bool(failed) and all(c.key == "errors" for c in failed) and 2 * point.rate_limited >= errors > 0


def _knee(points: Sequence[StagePoint]) -> StagePoint | None:
    usable = [p for p in points if p.req_per_s is not None and p.e2e["p50"] is not None]
    if len(usable) < 3:
        return None
    x = np.array([p.req_per_s for p in usable], dtype="float64")
    y = np.array([p.e2e["p50"] for p in usable], dtype="float64")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    diff = (x - x.min()) / np.ptp(x) - (y - y.min()) / np.ptp(y)
    best = int(np.argmax(diff))
    return usable[best] if diff[best] > 0 else None


def _binding(points: Sequence[StagePoint], min_share: float) -> tuple[Literal["quota", "server"] | None, str]:
    quota = next((i for i, p in enumerate(points) if p.rate_limited > min_share * p.requests), None)
    failing = [p.requests - p.ok - p.rate_limited > min_share * p.requests for p in points]
    server = next((i for i, p in enumerate(points) if p.latency_broken or p.queue_growth or failing[i]), None)
    if quota is not None and (server is None or quota <= server):
        p = points[quota]
        kind = max(p.limit_types.items(), key=lambda kv: kv[1])[0]
        return "quota", f"429s ({kind}) from {p.stage}, {p.rate_limited} of {p.requests} requests"
    if server is not None:
        p = points[server]
        broken = [c.key + (f" ({c.request_class})" if c.request_class else "") for c in p.checks]
        what = [b for b, c in zip(broken, p.checks, strict=True) if c.is_latency and not c.passed()]
        if what:
            reason = "latency SLO " + ", ".join(what)
        elif p.queue_growth:
            reason = "queue growth (open loop fell behind)"
        else:
            reason = f"errors other than 429 ({p.requests - p.ok - p.rate_limited} of {p.requests})"
        return "server", f"{reason} from {p.stage}"
    return None, "no limit reached in the tested range"


def capacity(
    records: pd.DataFrame,
    stages: Sequence[Mapping[str, Any]] | Sequence[str],
    slos: Mapping[str, Mapping[str, float]],
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
) -> CapacityResult:
    """The capacity analysis (module docstring) of ``records`` over ``stages`` (manifest ``stages`` entries or
    labels, in increasing offered load) against ``slos`` (``{class: {"ttft_p95": 1.0, "attainment": 0.9}}``)."""
    metas = [{"label": s} if isinstance(s, str) else s for s in stages]
    known = set(records["stage"].unique()) if len(records) else set()
    metas = [m for m in metas if m.get("label") in known]
    labels = {str(m["label"]) for m in metas}
    metas += (
        [{"label": s} for s in records.drop_duplicates("stage")["stage"] if s not in labels] if known else []
    )
    records = records.reset_index(drop=True)
    good = good_mask(records, slos)
    if not any(slo_metric(k) and k.startswith("itl") for slo in slos.values() for k in slo):
        records = records.drop(columns=["chunk_gaps"])  # not needed: spare copying it per stage
    groups = records.groupby("stage", sort=False).indices if len(records) else {}  # positions, ascending
    points = tuple(
        _point(str(m["label"]), records.iloc[rows], good[rows], slos, m, max_error_share)
        for m in metas
        for rows in (groups[m["label"]],)
    )
    if not points:
        return CapacityResult((), None, (None, None), None, (None, None), False, "no stages", None, None,
                              None, None, None, None, "no records", None)  # fmt: skip
    x, tok, basis, interpolated = _x_star(points, "point")
    lo, lo_tok, _, _ = _x_star(points, "conservative")
    hi, hi_tok, _, _ = _x_star(points, "optimistic")
    knee = _knee(points)
    sat = max(points, key=lambda p: p.req_per_s or 0.0)
    binding, detail = _binding(points, max_error_share)
    return CapacityResult(
        points=points,
        max_rps=x,
        max_rps_ci=(lo, hi),
        max_output_tok_per_s=tok,
        max_output_tok_per_s_ci=(lo_tok, hi_tok),
        interpolated=interpolated,
        basis=basis,
        knee_stage=knee.stage if knee else None,
        knee_rps=knee.req_per_s if knee else None,
        saturation_stage=sat.stage,
        saturation_rps=sat.req_per_s,
        saturation_output_tok_per_s=sat.output_tok_per_s,
        binding=binding,
        binding_detail=detail,
        tpot_fit=fit_linear([p.concurrency for p in points], [p.tpot_mean for p in points]),
    )


def capacity_from_run(data: RunData, max_error_share: float = DEFAULT_MAX_ERROR_SHARE) -> CapacityResult:
    """:func:`capacity` with the stages and class SLOs of the run's manifest."""
    stages = data.manifest.get("stages") or [
        {"label": s.get("label")} for s in (data.manifest.get("spec") or {}).get("stages") or []
    ]
    return capacity(data.records, stages, class_slos(data.manifest), max_error_share)


def predict(result: CapacityResult, rate_rps: float) -> Prediction | None:
    """Latency at an untested arrival rate from the TPOT fit and Little's law (:func:`analysis.fit.predict_latency`),
    with TTFT and output length taken from the measured stage whose rate is closest. None without a fit."""
    measured = [p for p in result.points if p.req_per_s and p.ttft_mean is not None and p.output_tokens_mean]
    if result.tpot_fit is None or not measured:
        return None
    near = min(measured, key=lambda p: abs((p.req_per_s or 0.0) - rate_rps))
    return predict_latency(
        result.tpot_fit,
        rate_rps,
        near.ttft_mean or 0.0,
        near.output_tokens_mean or 0.0,
        [p.req_per_s or 0.0 for p in measured],
    )
