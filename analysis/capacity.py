"""Capacity from a run's stages: the curve, the highest SLO-compliant throughput X* with a 95 % CI, the knee, the
saturation throughput, the binding limit and a TPOT-vs-concurrency fit. Pure: records + manifest in.

Stages are ordered by offered load: an open-loop stage's target rate (a token-rate stage's starting rate), else the
rate of requests it sent (the manifest's order is not always that: an automatic sweep probes saturation second).
Rates of an open-loop stage are over its sending window (manifest ``start`` → ``window_end``; requests started in
it, finished whenever): what it sustained, with no drain in the denominator (over first start → last end a short
stage of long requests reads low by the drain). A closed-loop stage's rates are over first start → last end: its
users start together and stop sending at the window's end, so counting starts in the window would add up to one
cycle per user, while ``completed / (window + drain)`` stays unbiased (the drain's completions are the ones in
flight at the window's end, ``C = X·E2E``). Cancelled records (Ctrl-C, drain timeout) are
the generator's, not the endpoint's answers, and are left out. Per stage, for every class with SLOs:

* a percentile SLO ``ttft_p95 = 1 s`` is checked on the stage's p95 of that class's successful requests, with the
  binomial order-statistic 95 % CI of that percentile (``scipy.stats.quantile_test``). **Point** verdict: the p95 is
  ≤ 1 s; **conservative** verdict: the CI's upper bound is ≤ 1 s (an upper bound that does not exist — too few
  requests for a p99 — fails); **optimistic**: the lower bound is ≤ 1 s;
* ``attainment = a``: good / all ≥ a (good as in :mod:`analysis.goodput`), with the Clopper–Pearson 95 % CI;
* every stage also needs failed requests (429s included) ≤ ``max_error_share`` of all (point verdict only).

**X*** is interpolated between the last passing stage A and the first failing stage B: for each check B fails,
``f = (limit − value_A) / (value_B − value_A)`` (clamped to [0, 1]), the smallest f wins, and
``X* = X_A + f·(X_B − X_A)`` (never below X_A), output tok/s likewise. The point, conservative and optimistic
verdicts and values give X* and its CI — the sampling uncertainty of the stages' verdicts, not the error of
interpolating between stages (the basis names the two stages). When every stage passes, X* is the best passing
stage: a lower bound, with no upper one.
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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]

from analysis.calibrate import Observation
from analysis.fit import LatencyPrediction, LinearFit, fit_linear, predict_latency
from analysis.frame import RunData, flat_gaps
from analysis.goodput import class_slos, good_mask, slo_metric
from analysis.summary import limit_type, percentiles, span_s

__all__ = [
    "DEFAULT_MAX_ERROR_SHARE",
    "CapacityResult",
    "SloCheck",
    "StagePoint",
    "calibration_observations",
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
    sent_per_s: float | None  # requests sent per second (429s and other failures included)
    target_rate: float | None  # an open-loop stage's target req/s (a token-rate stage's starting rate)
    users: int | None  # a closed-loop stage's users
    concurrency: float | None
    ttft: dict[str, float | None]
    tpot: dict[str, float | None]
    e2e: dict[str, float | None]
    tpot_mean: float | None
    ttft_mean: float | None
    output_tokens_mean: float | None
    prompt_tokens_mean: float | None
    rate_limited: int
    limit_types: dict[str, int]
    queue_growth: bool
    checks: tuple[SloCheck, ...]

    def meets(self, view: View = "point") -> bool:
        return all(c.passed(view) for c in self.checks)

    @property
    def latency_broken(self) -> bool:
        """A latency SLO measured and broken (a check without values — nothing succeeded — is not latency)."""
        return any(c.is_latency and c.value is not None and not c.passed("point") for c in self.checks)

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


def _target_rate(meta: Mapping[str, Any]) -> float | None:
    target = meta.get("target") or {}
    rate = target.get("rate") or target.get("initial_rate")  # a token-rate stage: the rate it set out at
    return float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None


def _users(meta: Mapping[str, Any]) -> int | None:
    target = meta.get("target") or {}
    users = target.get("users") if target.get("kind") == "concurrency" else None
    return users if isinstance(users, int) and not isinstance(users, bool) and users > 0 else None


def calibration_observations(result: CapacityResult) -> list[Observation]:
    """The closed-loop stages of a run as :class:`analysis.calibrate.Observation` s (users, mean input and output
    tokens, mean TPOT and TTFT of successful requests), to fit the model to the endpoint that was measured."""
    out = []
    for p in result.points:
        if None in (p.users, p.prompt_tokens_mean, p.output_tokens_mean, p.tpot_mean, p.ttft_mean):
            continue
        assert p.users is not None and p.prompt_tokens_mean is not None and p.output_tokens_mean is not None
        assert p.tpot_mean is not None and p.ttft_mean is not None
        if p.output_tokens_mean >= 2 and p.tpot_mean > 0 and p.ttft_mean > 0:
            out.append(
                Observation(
                    p.users,
                    round(p.prompt_tokens_mean),
                    round(p.output_tokens_mean),
                    p.tpot_mean,
                    p.ttft_mean,
                )
            )
    return out


def _offered(point: StagePoint) -> float:
    """A stage's offered load, to order the curve: its target rate, else the rate of requests it sent."""
    return point.target_rate if point.target_rate is not None else (point.sent_per_s or 0.0)


def _queue_growth(meta: Mapping[str, Any], sent_per_s: float | None, duration: float | None) -> bool:
    """Arrivals found no free user or were dropped, or the stage sent clearly fewer requests than its target:
    under 90 % of it and more than three Poisson standard deviations below (a short Poisson stage falls 10 %
    short by chance)."""
    if meta.get("no_free_user") or meta.get("dropped"):
        return True
    rate = _target_rate(meta)
    if rate is None or sent_per_s is None or not duration:
        return False
    expected, sent = rate * duration, sent_per_s * duration
    return sent < 0.9 * expected and sent < expected - 3.0 * math.sqrt(expected)


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
    e2e_all = df["e2e"].to_numpy(dtype="float64")
    out_tokens = df["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    start, end = meta.get("start"), meta.get("window_end")
    duration: float | None
    if (
        isinstance(start, (int, float))
        and isinstance(end, (int, float))
        and end > start
        and _target_rate(meta) is not None
    ):  # open loop: what the sending window sustained
        duration = float(end - start)
        sent = (started >= start) & (started <= end)
    else:  # closed loop (or no window known): first start to last end, which Little's law keeps unbiased
        duration, sent = span_s(started, ended), np.ones(len(df), dtype=bool)
    req_per_s = (ok & sent).sum() / duration if duration else None
    sent_per_s = float(sent.sum()) / duration if duration else None
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
        output_tok_per_s=float(np.nansum(out_tokens[ok & sent])) / duration if duration else None,
        sent_per_s=sent_per_s,
        target_rate=_target_rate(meta),
        users=_users(meta),
        concurrency=float(np.nansum(e2e_all[sent])) / duration if duration else None,
        ttft=percentiles(ttft_ok),
        tpot=percentiles(tpot_ok),
        e2e=percentiles(df["e2e"].to_numpy(dtype="float64")[ok]),
        tpot_mean=mean(tpot_ok),
        ttft_mean=mean(ttft_ok),
        output_tokens_mean=mean(out_tokens[ok]),
        prompt_tokens_mean=mean(df["prompt_tokens"].to_numpy(dtype="float64", na_value=np.nan)[ok]),
        rate_limited=int(limited.sum()),
        limit_types=types,
        queue_growth=_queue_growth(meta, sent_per_s, duration),
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
    """The stage fails on its error share alone, because of 429s: without them it would be within the share."""
    failed = [c for c in point.checks if not c.passed(view)]
    if not failed or any(c.key != "errors" for c in failed) or point.rate_limited == 0:
        return False
    other = point.requests - point.ok - point.rate_limited
    # and the quota held it back: it got through under 90 % of what was offered (its target, else what it sent)
    offered = point.target_rate or point.sent_per_s
    held = point.req_per_s is not None and offered is not None and point.req_per_s < 0.9 * offered
    return other <= failed[0].limit * point.requests and held


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
        what = [
            b
            for b, c in zip(broken, p.checks, strict=True)
            if c.is_latency and c.value is not None and not c.passed()
        ]
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
    # cancelled requests are the generator's (Ctrl-C, drain timeout), not the endpoint's answers
    records = records[(records["error_class"] != "cancelled").to_numpy(dtype=bool)].reset_index(drop=True)
    good = good_mask(records, slos)
    if not any(slo_metric(k) and k.startswith("itl") for slo in slos.values() for k in slo):
        records = records.drop(columns=["chunk_gaps"])  # not needed: spare copying it per stage
    groups = records.groupby("stage", sort=False).indices if len(records) else {}  # positions, ascending
    points = tuple(
        _point(str(m["label"]), records.iloc[rows], good[rows], slos, m, max_error_share)
        for m in metas
        if m["label"] in groups
        for rows in (groups[m["label"]],)
    )
    points = tuple(sorted(points, key=_offered))
    if not points:
        return CapacityResult((), None, (None, None), None, (None, None), False, "no stages", None, None,
                              None, None, None, None, "no records", None)  # fmt: skip
    x, tok, basis, interpolated = _x_star(points, "point")
    if not slos:
        basis = "the run has no SLOs: the highest throughput measured, not an SLO-compliant one"
    lo, lo_tok, _, _ = _x_star(points, "conservative")
    hi, hi_tok, _, _ = _x_star(points, "optimistic")
    if all(point.meets("point") for point in points):  # a lower bound: nothing measured says how far above
        hi = hi_tok = None
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


def predict(result: CapacityResult, rate_rps: float) -> LatencyPrediction | None:
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
