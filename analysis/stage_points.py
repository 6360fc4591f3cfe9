"""One stage on the capacity curve (:class:`StagePoint`): its rates, latency percentiles and SLO checks
(:class:`SloCheck`) with their 95 % confidence intervals. Pure: a stage's records and its manifest window in;
:mod:`analysis.capacity` orders the points and draws the verdicts from them.

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

An **open-loop** stage's CIs are the union of those and the sectioned CI (:mod:`analysis.sections`): a queue's
latencies are correlated, which the order-statistic and Clopper–Pearson intervals (independent values) cannot see; a
stage too short to section has no bounds. Every check also keeps its value on each of the 5 sections
(``SloCheck.sections``) for X*'s own sectioned interval (:mod:`analysis.capacity`).

X*'s axis (``x_req_per_s``, ``x_output_tok_per_s``, ``x_basis``): an open-loop *rate* stage whose generator kept up
(:func:`analysis.load_check.check_load`'s ``kept_up``, and :func:`analysis.load_check.offered_short` found nothing)
is taken at its target rate times the share of its requests sent in the window that succeeded ("target"); any other
stage at ``req_per_s`` ("achieved"). A Python scenario's target is in flows/s: every rate here takes it in
requests/s (:func:`analysis.load_check.in_requests`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]

from analysis.frame import flat_gaps
from analysis.goodput import slo_metric
from analysis.load_check import check_load, falls_short, in_requests, offered_short, requests_per_flow
from analysis.sections import percentile_sections, section_of, sectioned_ci, share_sections
from analysis.summary import limit_type, percentiles, span_s
from loadtest.rundir import StageWindow
from loadtest.spec.slo_flags import is_flow

__all__ = [
    "SloCheck",
    "StagePoint",
    "View",
    "falls_short",
    "open_loop",
    "percentile_check",
    "percentile_ci",
    "percentile_interval",
    "rate_window",
    "share_check",
    "stage_point",
    "target_rate",
]

_CONFIDENCE = 0.95
View = Literal["point", "conservative", "optimistic"]
XBasis = Literal["target", "achieved"]


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
    # the value on each of the stage's sections (analysis.sections), None where a section has too few values; for
    # X*'s sectioned interval, not in the JSON
    sections: tuple[float | None, ...] | None = field(default=None, compare=False)

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
        return self.key not in ("attainment", "errors", "flow_attainment")

    @property
    def is_flow(self) -> bool:
        """A check of the flow SLO (``flow_e2e_p95``, ``flow_attainment``: :mod:`analysis.flows`), not of a class."""
        return is_flow(self.key)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "sections"}
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
    # an open-loop stage's target req/s (a token-rate stage's starting rate; a flow stage's flows/s in requests)
    target_rate: float | None
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
    # the stage's throughput on X*'s axis: an open-loop rate stage whose generator kept up, its target rate times
    # the share of its requests that succeeded ("target"); any other stage, what it achieved ("achieved")
    x_basis: XBasis = "achieved"
    x_req_per_s: float | None = None
    x_output_tok_per_s: float | None = None

    def meets(self, view: View = "point") -> bool:
        return all(c.passed(view) for c in self.checks)

    @property
    def latency_broken(self) -> bool:
        """A class's latency SLO measured and broken (a check without values — nothing succeeded — is not latency)."""
        return any(
            c.is_latency and not c.is_flow and c.value is not None and not c.passed("point")
            for c in self.checks
        )

    @property
    def flow_broken(self) -> bool:
        """A check of the flow SLO measured and broken."""
        return any(c.is_flow and c.value is not None and not c.passed("point") for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["checks"] = [c.to_dict() for c in self.checks]
        out.update(meets=self.meets("point"), meets_ci=self.meets("conservative"))
        return out


def percentile_ci(
    values: np.ndarray, q: float, confidence: float = _CONFIDENCE
) -> tuple[float, float | None, float | None]:
    """``(p_q, low, high)``: the ``q``-th percentile (numpy's linear method) and its distribution-free CI (95 %
    unless ``confidence`` says otherwise),
    the order statistics ``x_(l)``, ``x_(u)`` with ``l = F⁻¹(α/2) − 1`` and ``u = F̄⁻¹(α/2)`` for ``F`` the
    Binomial(n, q/100) — ``scipy.stats.quantile_test(...).confidence_interval()``'s definition — found by one
    partition instead of scipy's sort. A bound beyond the sample (too few values) is None. ``values`` non-empty."""
    n = values.size
    a = (1.0 - confidence) / 2
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


def percentile_interval(
    values: np.ndarray, q: float, sections: np.ndarray, open_loop: bool
) -> tuple[float | None, float | None, float | None, tuple[float | None, ...] | None]:
    """``(p_q, low, high, by_section)`` of ``values`` (NaN left out; all None when none is left): the percentile
    with its order-statistic interval (:func:`percentile_ci`); an open-loop stage's interval also spans its
    sectioned one (and has no bounds when it is too short to section). ``sections``: each value's section
    (:func:`analysis.sections.section_of`)."""
    keep = ~np.isnan(values)
    values, sections = values[keep], sections[keep]
    if values.size == 0:
        return None, None, None, None
    point, low, high = percentile_ci(values, q)
    by_section = percentile_sections(values, sections, q)
    if open_loop:
        low, high = _widened(point, low, high, by_section)
    return point, low, high, by_section


def percentile_check(
    key: str,
    cls: str | None,
    limit: float,
    values: np.ndarray,
    q: float,
    sections: np.ndarray,
    open_loop: bool,
) -> SloCheck:
    """A percentile SLO's check: the percentile and its interval (:func:`percentile_interval`) against ``limit``."""
    point, low, high, by_section = percentile_interval(values, q, sections, open_loop)
    return SloCheck(key, cls, limit, point, low, high, sections=by_section)


def _widened(
    point: float, low: float | None, high: float | None, by_section: tuple[float | None, ...] | None
) -> tuple[float | None, float | None]:
    """The union of an interval and the sectioned one around ``point``; no bounds when there is no sectioned one."""
    sectioned = sectioned_ci(point, by_section)
    if sectioned is None:
        return None, None
    return (
        min(low, sectioned[0]) if low is not None else None,
        max(high, sectioned[1]) if high is not None else None,
    )


def share_check(
    key: str,
    cls: str | None,
    limit: float,
    hits: np.ndarray,
    sections: np.ndarray,
    higher: bool,
    open_loop: bool,
) -> SloCheck:
    """A share's check (``hits``: booleans) against ``limit`` (``higher``: at least it): the share with its
    Clopper–Pearson 95 % interval, an open-loop stage's widened by its sectioned one; ``errors`` has a point
    verdict only."""
    n, k = hits.size, int(hits.sum())
    if n == 0:
        return SloCheck(key, cls, limit, None, None, None, higher)
    by_section = share_sections(hits, sections, limit)
    if key == "errors":  # point verdict only: a CI on a 1 % error budget would need thousands of requests
        return SloCheck(key, cls, limit, k / n, k / n, k / n, higher, sections=by_section)
    ci = stats.binomtest(k, n).proportion_ci(_CONFIDENCE)
    low: float | None = float(ci.low)
    high: float | None = float(ci.high)
    if open_loop:
        low, high = _widened(k / n, low, high, by_section)
    return SloCheck(key, cls, limit, k / n, low, high, higher, sections=by_section)


def _arrival_rate(meta: StageWindow) -> float | None:
    """An open-loop stage's target arrivals/s (a token-rate stage: the rate it set out at); None for a closed loop."""
    target = meta.target
    rate = (target.rate or target.initial_rate) if target is not None else None
    return float(rate) if rate is not None else None


def open_loop(meta: StageWindow) -> bool:
    """Whether the stage was an open loop (a rate or token-rate stage: arrivals on a schedule)."""
    return _arrival_rate(meta) is not None


def target_rate(meta: StageWindow) -> float | None:
    """An open-loop stage's target req/s (a token-rate stage: the rate it set out at; a Python scenario's: its flows/s
    in requests, :func:`analysis.load_check.in_requests`); None for a closed loop (or flows with no count)."""
    return in_requests(meta, _arrival_rate(meta))


def _users(meta: StageWindow) -> int | None:
    target = meta.target
    users = target.users if target is not None and target.kind == "concurrency" else None
    return users if users is not None and users > 0 else None


def _queue_growth(meta: StageWindow, sent_per_s: float | None, duration: float | None) -> bool:
    """Arrivals found no free user or were dropped, or the stage sent clearly fewer requests than its target:
    under 90 % of it and more than three Poisson standard deviations below (a short Poisson stage falls 10 %
    short by chance)."""
    if meta.no_free_user or meta.dropped:
        return True
    rate = target_rate(meta)
    if rate is None or sent_per_s is None or not duration:
        return False
    return falls_short(rate * duration, sent_per_s * duration, requests_per_flow(meta) or 1.0)


def rate_window(started: np.ndarray, ended: np.ndarray, meta: StageWindow) -> tuple[float | None, np.ndarray]:
    """The duration a stage's rates are over and which of its requests count (see the module docstring): an
    open-loop stage's sending window and the requests started in it; else first start → last end, and all."""
    start, end = meta.start, meta.window_end
    if start is not None and end is not None and end > start and open_loop(meta):
        return float(end - start), (started >= start) & (started <= end)
    return span_s(started, ended), np.ones(started.size, dtype=bool)


def stage_point(
    label: str,
    df: pd.DataFrame,
    good: np.ndarray,
    slos: Mapping[str, Mapping[str, float]],
    meta: StageWindow,
    max_error_share: float,
) -> StagePoint:
    """The stage ``label``'s point from its records ``df`` (``good``: their goodput verdicts) and window."""
    ok = df["ok"].to_numpy(dtype=bool)
    started, ended = df["started_at"].to_numpy(dtype="float64"), df["ended_at"].to_numpy(dtype="float64")
    e2e_all = df["e2e"].to_numpy(dtype="float64")
    out_tokens = df["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    duration, sent = rate_window(started, ended, meta)
    req_per_s = (ok & sent).sum() / duration if duration else None
    sent_per_s = float(sent.sum()) / duration if duration else None
    is_open = open_loop(meta)
    section = section_of(started)
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
                checks.append(share_check(key, cls, limit, good[rows], section[rows], True, is_open))
                continue
            parsed = slo_metric(key)
            if parsed is None:
                continue
            metric, q = parsed
            if metric == "itl":
                gaps = gaps or flat_gaps(df["chunk_gaps"])
                of_gap = np.repeat(sel, gaps[1])
                values, sections = gaps[0][of_gap], np.repeat(section, gaps[1])[of_gap]
            else:
                values, sections = df[metric].to_numpy(dtype="float64")[sel], section[sel]
            checks.append(percentile_check(key, cls, limit, values, q, sections, is_open))
    checks.append(share_check("errors", None, max_error_share, ~ok, section, False, False))
    tpot_ok = df["tpot"].to_numpy(dtype="float64")[ok]
    ttft_ok = df["ttft"].to_numpy(dtype="float64")[ok]

    def mean(values: np.ndarray) -> float | None:
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else None

    output_tok_per_s = float(np.nansum(out_tokens[ok & sent])) / duration if duration else None
    x_basis, x_req, x_tok = _x_rates(df, meta, ok & sent, int(sent.sum()), out_tokens)
    if x_basis == "achieved":
        x_req, x_tok = (float(req_per_s) if req_per_s is not None else None), output_tok_per_s
    return StagePoint(
        stage=label,
        requests=len(df),
        ok=int(ok.sum()),
        duration_s=duration,
        req_per_s=float(req_per_s) if req_per_s is not None else None,
        output_tok_per_s=output_tok_per_s,
        sent_per_s=sent_per_s,
        target_rate=target_rate(meta),
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
        x_basis=x_basis,
        x_req_per_s=x_req,
        x_output_tok_per_s=x_tok,
    )


def _x_rates(
    df: pd.DataFrame, meta: StageWindow, counted_ok: np.ndarray, sent: int, out_tokens: np.ndarray
) -> tuple[XBasis, float | None, float | None]:
    """``("target", target × ok share, target × output tokens per request sent)`` for an open-loop rate stage
    whose generator kept up — it was not late nor saturated (:func:`analysis.load_check.check_load`) and offered the
    planned load (:func:`analysis.load_check.offered_short`) — so that its Poisson arrivals were the target's;
    else ``("achieved", None, None)``. A token-rate stage's rate follows its controller: achieved."""
    target = meta.target
    rate = in_requests(meta, target.rate) if target is not None and target.kind == "rate" else None
    if rate is None or not sent:
        return "achieved", None, None
    (load,) = check_load(df, [meta])
    if not load.kept_up or offered_short(load) is not None:
        return "achieved", None, None
    tokens = float(np.nansum(out_tokens[counted_ok]))
    return "target", float(rate) * int(counted_ok.sum()) / sent, float(rate) * tokens / sent
