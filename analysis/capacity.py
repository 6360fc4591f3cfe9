"""Capacity from a run's stages: the curve, the highest SLO-compliant throughput X* with a 95 % CI, the knee, the
saturation throughput, the binding limit and a TPOT-vs-concurrency fit. Pure: records + manifest in. Each stage's
point (rates, percentiles, SLO checks and their CIs) is :mod:`analysis.stage_points`'s.

Stages are ordered by offered load: an open-loop stage's target rate (a token-rate stage's starting rate), else the
rate of requests it sent (the manifest's order is not always that: an automatic sweep probes saturation second).
**X*** is interpolated between the last passing stage A and the first failing stage B: for each check B fails,
``f = (limit − value_A) / (value_B − value_A)`` (clamped to [0, 1]), the smallest f wins, and
``X* = X_A + f·(X_B − X_A)`` (never below X_A), output tok/s likewise. X is each stage's ``x_req_per_s``: an
open-loop rate stage whose generator kept up is taken at its *target* rate (times its success share) — its Poisson
arrivals scatter by ±1/√n around it, and on the realised rate X* would inherit that scatter unseen — any other stage
at the rate it achieved; the basis says which. When every stage passes, X* is the best passing stage: a lower bound,
with no upper one.

**Its 95 % interval** is the sampling uncertainty of the stages' verdicts, not the error of interpolating between
stages (the basis names the two stages), and is the union of

1. X* with the conservative and with the optimistic verdicts and values: both stages at their worse bounds give the
   lower end (X* falls as either stage's value rises, so the end holds when both bounds do); an open-loop stage's
   percentile bounds already span its sectioned interval (:mod:`analysis.sections`: a queue's latencies are
   correlated, so order statistics alone are far too narrow);
2. when A or B is open-loop, X*'s own sectioned interval: X*_k from the k-th of 5 consecutive sections of every
   stage (same stage rates), ``X* ± t₄·S/√5``, ``S² = Σ (X*_k − X*)² / 4``. The arrivals' randomness — their count
   and clustering in each stretch of a stage, which the latencies follow — shows up as differences between sections,
   and this interval follows it through the interpolation, skew of a queue's percentiles included.

On M/D/c sweeps with the exact X* from queueing theory the union covered it in 93–100 % of 100 seeded sweeps per
configuration (docs/metrics.md, "Capacity", has the table and the derivation; order statistics on realised rates
covered 21–63 %).
When B fails on its error share alone and mostly through 429s, a quota binds: it admits a fixed rate whatever is
offered, so X* is what B got through (successful req/s), not an interpolation — the share of 429s does not grow
linearly from A (it is 0 up to the quota and ``1 − quota/offered`` above), so interpolating would land low.

**Knee**: Kneedle on latency (E2E p50) vs throughput (req/s) in stage order: both normalised to [0, 1], the knee is
the stage maximising ``x − y`` (none with fewer than 3 stages or no positive maximum).

**A Python scenario's flow SLO** (``[python] slo``: ``flow_e2e_pXX``, ``attainment``) is a stage's SLO too: its
checks, as the flow analysis makes them (:func:`analysis.flows.flow_slo_checks`), stand beside the classes' (keyed
``flow_e2e_p95``, ``flow_attainment``), so a stage is compliant only when its flows meet the flow SLO as well, and X*
is interpolated on them as on any check.

**Binding limit**: "quota" when 429s (more than ``max_error_share`` of a stage's requests, so that a stray 429 does
not count) appear in a stage no later than the first stage whose latency breaks an SLO (or that breaks the flow
SLO), whose queue grows (open-loop arrivals found no free user, were dropped, or the rate of requests sent, 429s
included, fell under 90 % of the target; for a token-rate stage, of the request rate it started at) or whose other
errors pass ``max_error_share``; else "server" when one of those happened; else None (no limit reached in the tested
range). When the run scraped the endpoint's own metrics, ``server_evidence`` says what they show binds — "KV cache
97 % full from stage X on", "requests queue in the server from stage X on"
(:func:`analysis.server_metrics.binding_evidence`).

**Fit**: ``TPOT ≈ t0 + t1·C`` by least squares over stages, C the mean in-flight requests by Little's law
(``Σ e2e / duration`` = rate × mean E2E, all requests of the stage), TPOT the mean over successful requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.fit import LatencyPrediction, LinearFit, fit_linear, predict_latency
from analysis.flows import flow_slo_checks
from analysis.frame import RunData
from analysis.goodput import class_slos, good_mask, slo_metric
from analysis.sections import SECTIONS, sectioned_ci
from analysis.server_metrics import binding_evidence, server_metrics_of
from analysis.stage_points import SloCheck, StagePoint, View, stage_point
from loadtest.rundir import StageWindow

__all__ = [
    "DEFAULT_MAX_ERROR_SHARE",
    "CapacityResult",
    "FlowChecks",
    "capacity",
    "capacity_from_run",
    "capacity_of_points",
    "predict",
    "stage_metas",
    "usable_records",
    "with_flow_checks",
]

DEFAULT_MAX_ERROR_SHARE = 0.01
# each stage's flow SLO checks, by label (analysis.flows.flow_slo_checks)
FlowChecks = Mapping[str, Sequence[SloCheck]]


# analyze --format json keeps its keys until its schema is versioned: `binding` there is `limit` here
_JSON_KEYS = {"limit": "binding", "limit_detail": "binding_detail"}


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
    limit: Literal["quota", "server"] | None  # what bound the capacity: a quota's 429s, or the server
    limit_detail: str
    tpot_fit: LinearFit | None
    server_evidence: tuple[
        str, ...
    ] = ()  # what the endpoint's own metrics say binds (analysis.server_metrics)

    def to_dict(self) -> dict[str, Any]:
        out = {_JSON_KEYS.get(name, name): getattr(self, name) for name in self.__dataclass_fields__}
        out["points"] = [p.to_dict() for p in self.points]
        out["tpot_fit"] = self.tpot_fit.to_dict() if self.tpot_fit is not None else None
        out["server_evidence"] = list(self.server_evidence)
        return out


def _offered(point: StagePoint) -> float:
    """A stage's offered load, to order the curve: its target rate, else the rate of requests it sent."""
    return point.target_rate if point.target_rate is not None else (point.sent_per_s or 0.0)


def _x_star(points: Sequence[StagePoint], view: View) -> tuple[float | None, float | None, str, bool]:
    """(X* req/s, X* output tok/s, how it was found, interpolated?) for one view of the verdicts.

    In the conservative view, a stage that meets its SLOs on the point values but has too few requests to bound a
    percentile is not a failure when a later, more loaded stage meets them on its bounds: latency grows with load,
    so that stage's bound covers the small one (a short 1-user baseline would otherwise leave X* unbounded)."""
    first_fail = _first_fail(points, view)
    if first_fail is None:
        best = max(points, key=lambda p: p.x_req_per_s or 0.0)
        return (
            best.x_req_per_s,
            best.x_output_tok_per_s,
            f"every stage met the SLOs: {best.stage} is a lower bound",
            False,
        )
    if first_fail == 0:
        return None, None, f"no stage met the SLOs (the first, {points[0].stage}, failed)", False
    a, b = points[first_fail - 1], points[first_fail]
    if _quota_only(b, view) and a.x_req_per_s is not None and b.x_req_per_s is not None:
        # a quota admits a fixed rate whatever is offered: what B got through is the ceiling
        x = max(a.x_req_per_s, b.x_req_per_s)
        tok = max(a.x_output_tok_per_s or 0.0, b.x_output_tok_per_s or 0.0) or None
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
            frac, why = f, _named(check)
    xa, xb, ta, tb = a.x_req_per_s, b.x_req_per_s, a.x_output_tok_per_s, b.x_output_tok_per_s
    if xa is None or xb is None:
        return xa, ta, f"{a.stage} passed, {b.stage} failed on {why}", False
    x = max(xa, xa + frac * (xb - xa))
    tok = max(ta, ta + frac * (tb - ta)) if ta is not None and tb is not None else None
    basis = (
        f"interpolated linearly between {a.stage} (passed) and {b.stage} (failed on {why}), f = {frac:.2f}, "
        + _rates_said(a, b)
    )
    return x, tok, basis, True


def _named(check: SloCheck) -> str:
    """A check as a verdict names it: ``ttft_p95 (chat)``, ``flow_e2e_p95 (flow SLO)``, ``errors``."""
    if check.is_flow:
        return f"{check.key} (flow SLO)"
    return check.key + (f" ({check.request_class})" if check.request_class else "")


def _first_fail(points: Sequence[StagePoint], view: View) -> int | None:
    """The first stage that fails the SLOs in ``view`` (see :func:`_x_star`), or None."""
    return next(
        (
            i
            for i, p in enumerate(points)
            if not p.meets(view)
            and not (view == "conservative" and _unbounded(p) and any(q.meets(view) for q in points[i + 1 :]))
        ),
        None,
    )


def _rates_said(a: StagePoint, b: StagePoint) -> str:
    """Which rates X* was interpolated on (each stage's ``x_basis``), in words."""
    if a.x_basis == b.x_basis == "target":
        return "on their target rates (Poisson arrivals the generator kept up with)"
    if a.x_basis == b.x_basis == "achieved":
        open_loop = [p.stage for p in (a, b) if p.target_rate is not None]
        why = f" ({', '.join(open_loop)}: the generator did not keep up)" if open_loop else ""
        return "on their achieved rates" + why
    target, achieved = (a, b) if a.x_basis == "target" else (b, a)
    why = ": the generator did not keep up" if achieved.target_rate is not None else ""
    return f"on {target.stage}'s target rate and {achieved.stage}'s achieved rate{why}"


def _sectioned(
    points: Sequence[StagePoint], x: float, tok: float | None
) -> tuple[float, float | None] | None:
    """X*'s sectioned half-widths (req/s, output tok/s), :mod:`analysis.sections`: X* again from each section's
    values of every check (a check too thin to section keeps its value), on the same stage rates; None when a
    section has no X* to give."""
    xs: list[float] = []
    toks: list[float] = []
    for k in range(SECTIONS):
        cut = [
            replace(
                p, checks=tuple(replace(c, value=_section_value(c.value, c.sections, k)) for c in p.checks)
            )
            for p in points
        ]
        xk, tk, _, _ = _x_star(cut, "point")
        if xk is None:  # the first stage failed in this section: X* is at most its rate
            xk, tk = points[0].x_req_per_s, points[0].x_output_tok_per_s
        if xk is None:
            return None
        xs.append(xk)
        toks.append(tk if tk is not None else math.nan)
    rate = sectioned_ci(x, xs)
    if rate is None:
        return None
    tokens = sectioned_ci(tok, toks) if tok is not None and not any(map(math.isnan, toks)) else None
    return rate[1] - x, (tokens[1] - tok if tokens is not None and tok is not None else None)


def _section_value(value: float | None, sections: tuple[float | None, ...] | None, k: int) -> float | None:
    return sections[k] if sections is not None and sections[k] is not None else value


def _unbounded(point: StagePoint) -> bool:
    """Meets every SLO on its point values, and fails the conservative view only for want of a bound."""
    return point.meets("point") and all(
        c.passed("conservative") or c.bound("conservative") is None for c in point.checks
    )


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


def _limit(points: Sequence[StagePoint], min_share: float) -> tuple[Literal["quota", "server"] | None, str]:
    quota = next((i for i, p in enumerate(points) if p.rate_limited > min_share * p.requests), None)
    failing = [p.requests - p.ok - p.rate_limited > min_share * p.requests for p in points]
    server = next(
        (
            i
            for i, p in enumerate(points)
            if p.latency_broken or p.flow_broken or p.queue_growth or failing[i]
        ),
        None,
    )
    if quota is not None and (server is None or quota <= server):
        p = points[quota]
        kind = max(p.limit_types.items(), key=lambda kv: kv[1])[0]
        return "quota", f"429s ({kind}) from {p.stage}, {p.rate_limited} of {p.requests} requests"
    if server is not None:
        p = points[server]
        broken = [c for c in p.checks if c.value is not None and not c.passed()]
        what = [_named(c) for c in broken if c.is_latency and not c.is_flow]
        flows = [c.key for c in broken if c.is_flow]
        if what or flows:
            parts = (["latency SLO " + ", ".join(what)] if what else []) + (
                ["flow SLO " + ", ".join(flows)] if flows else []
            )
            reason = " and ".join(parts)
        elif p.queue_growth:
            reason = "queue growth (open loop fell behind)"
        else:
            reason = f"errors other than 429 ({p.requests - p.ok - p.rate_limited} of {p.requests})"
        return "server", f"{reason} from {p.stage}"
    return None, "no limit reached in the tested range"


def _union(
    low: float | None, high: float | None, centre: float | None, half: float | None
) -> tuple[float | None, float | None]:
    """``[low, high] ∪ [centre − half, centre + half]``. An end the verdicts left open (the first stage not shown
    to meet the SLOs) is the sectioned one's: a section whose first stage fails counts X* at that stage's rate."""
    if centre is None or half is None:
        return low, high
    return (
        min(low, centre - half) if low is not None else centre - half,
        max(high, centre + half) if high is not None else centre + half,
    )


def capacity(
    records: pd.DataFrame,
    stages: Sequence[StageWindow] | Sequence[str],
    slos: Mapping[str, Mapping[str, float]],
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
    flow_checks: FlowChecks | None = None,
) -> CapacityResult:
    """The capacity analysis (module docstring) of ``records`` over ``stages`` (manifest ``stages`` entries or
    labels, in increasing offered load) against ``slos`` (``{class: {"ttft_p95": 1.0, "attainment": 0.9}}``) and,
    for a Python scenario's run, its stages' ``flow_checks`` (:func:`analysis.flows.flow_slo_checks`)."""
    metas = stage_metas(stages, records.drop_duplicates("stage")["stage"] if len(records) else ())
    records, good = usable_records(records, slos)
    groups = records.groupby("stage", sort=False).indices if len(records) else {}  # positions, ascending
    points = tuple(
        stage_point(m.label, records.iloc[rows], good[rows], slos, m, max_error_share)
        for m in metas
        if m.label in groups
        for rows in (groups[m.label],)
    )
    return capacity_of_points(with_flow_checks(points, flow_checks or {}), slos, max_error_share)


def with_flow_checks(points: Iterable[StagePoint], flow_checks: FlowChecks) -> list[StagePoint]:
    """The ``points`` with each stage's flow SLO checks beside its classes' (before the error share's)."""
    return [
        replace(p, checks=(*p.checks[:-1], *flow_checks[p.stage], p.checks[-1]))
        if flow_checks.get(p.stage)
        else p
        for p in points
    ]


def stage_metas(stages: Sequence[StageWindow] | Sequence[str], found: Iterable[str]) -> list[StageWindow]:
    """The windows of the stages ``found`` in the records (their labels in order of first appearance): the
    manifest's ``stages`` (windows or labels) in its order, then any other stage found, in its order."""
    metas = [StageWindow(label=s) if isinstance(s, str) else s for s in stages]
    seen = list(dict.fromkeys(found))
    known = set(seen)
    metas = [m for m in metas if m.label in known]
    labels = {m.label for m in metas}
    return metas + [StageWindow(label=s) for s in seen if s not in labels]


def usable_records(
    records: pd.DataFrame, slos: Mapping[str, Mapping[str, float]]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The records capacity judges, and their goodput verdicts: all but the cancelled ones (the generator's, by
    Ctrl-C or drain timeout, not the endpoint's answers), without the chunk gaps when no SLO reads them."""
    if not any(slo_metric(k) and k.startswith("itl") for slo in slos.values() for k in slo):
        records = records.drop(columns=["chunk_gaps"])  # not needed: spare copying it
    records = records[(records["error_class"] != "cancelled").to_numpy(dtype=bool)].reset_index(drop=True)
    return records, good_mask(records, slos)


def capacity_of_points(
    points: Sequence[StagePoint],
    slos: Mapping[str, Mapping[str, float]],
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
) -> CapacityResult:
    """The capacity analysis from the stages' points (:func:`analysis.stage_points.stage_point`, in the order of
    :func:`stage_metas`)."""
    points = tuple(sorted(points, key=_offered))
    if not points:
        return CapacityResult((), None, (None, None), None, (None, None), False, "no stages", None, None,
                              None, None, None, None, "no records", None)  # fmt: skip
    x, tok, basis, interpolated = _x_star(points, "point")
    if not slos and not any(c.is_flow for p in points for c in p.checks):
        basis = "the run has no SLOs: the highest throughput measured, not an SLO-compliant one"
    lo, lo_tok, _, _ = _x_star(points, "conservative")
    hi, hi_tok, _, _ = _x_star(points, "optimistic")
    if all(point.meets("point") for point in points):  # a lower bound: nothing measured says how far above
        hi = hi_tok = None
    b = _first_fail(points, "point")
    open_loop = b is not None and b > 0 and any(p.target_rate is not None for p in points[b - 1 : b + 1])
    half = (
        _sectioned(points, x, tok)
        if x is not None and open_loop and basis.startswith("interpolated")
        else None
    )
    if half is not None and x is not None:  # the union with X*'s sectioned interval
        lo, hi = _union(lo, hi, x, half[0])
        lo_tok, hi_tok = _union(lo_tok, hi_tok, tok, half[1])
        basis += f"; its 95 % interval also spans X* over {SECTIONS} sections of each stage"
    knee = _knee(points)
    sat = max(points, key=lambda p: p.req_per_s or 0.0)
    limit, detail = _limit(points, max_error_share)
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
        limit=limit,
        limit_detail=detail,
        tpot_fit=fit_linear([p.concurrency for p in points], [p.tpot_mean for p in points]),
    )


def capacity_from_run(data: RunData, max_error_share: float = DEFAULT_MAX_ERROR_SHARE) -> CapacityResult:
    """:func:`capacity` with the stages, class SLOs and flow SLO of the run's manifest, and what the endpoint's own
    metrics (``server_metrics.jsonl``, when the run scraped them) say binds."""
    manifest = data.manifest
    stages: Sequence[StageWindow] | Sequence[str] = manifest.stages or manifest.stage_order
    slos = class_slos(manifest.spec.request_classes)
    flows = flow_slo_checks(data.run_dir, manifest)
    result = capacity(data.records, stages, slos, max_error_share, flows)
    server = server_metrics_of(data.run_dir, manifest.stages or ())
    evidence = binding_evidence(server, [p.stage for p in result.points])
    return replace(result, server_evidence=evidence) if evidence else result


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
