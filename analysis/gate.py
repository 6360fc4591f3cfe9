"""The CI gate: a run's thresholds, its regressions against a baseline run, and one verdict — pass, fail or
invalid. Pure: runs in, a :class:`GateResult` out; :mod:`reports.gate_output` writes it, ``loadtest gate`` exits
with it.

**Where a check applies.** Each stage is judged on its own: a percentile over requests made at different loads
describes no load the endpoint will see. A threshold without a scope is checked in every stage of the run (all
classes together); ``CLASS:`` restricts it to that class's requests in every stage; ``STAGE:`` to that stage. The
generator's own cancellations (Ctrl-C, a drain timeout) are not the endpoint's answers and are left out.

**Measures** and their intervals are in :mod:`analysis.gate_measures`; a Python scenario's flow metrics
(``flow_e2e_p95``, ``flow_error_rate``, ``flow_attainment``: scoped to a stage or nothing) in
:mod:`analysis.gate_flows`, as the flow analysis computes them.

**Thresholds** pass on the point value (the interval is shown beside it). A percentile whose interval is not
bounded within the sample (a p99 from fewer than 368 requests) means nothing: the check, and so the run, is
invalid. A stage with no successful request fails its latency thresholds.

**Regressions** compare each stage with the baseline's stage of the same label. The ratio current / baseline gets
an interval from the two runs' intervals, each at ``√0.95`` so that both hold together with 95 %:
``[low / baseline high, high / baseline low]`` — distribution-free and conservative. The run-to-run noise that no
within-run interval sees (the machine, the simulator's seed, the endpoint's other tenants) is the **noise floor**
``f``: configured per metric, or measured from A/A runs (:func:`noise_floors`). The interval is widened by it,
``[low / (1 + f), high × (1 + f)]``, and the check **fails only when the widened interval lies wholly beyond the
threshold**: above ``1 + change`` for a latency, below ``1 + change`` (a negative change) for a throughput. Anything
less is not told from noise, and passes.

**Verdict.** Invalid when the run (or the baseline) is invalid for the gated stages (:mod:`analysis.validity`) or
a check could not be measured meaningfully — never a pass or a fail then; else fail when any check fails; else
pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from analysis.flow_data import no_flows
from analysis.flows import FlowRun, read_flow_run
from analysis.frame import RunData
from analysis.gate_flows import flow_measure, flow_missing, good_limits, not_a_stage
from analysis.gate_measures import (
    JOINT_CONFIDENCE,
    MIN_BINS,
    Measure,
    StageFrames,
    measure,
    run_stages,
)
from analysis.goodput import class_slos
from analysis.validity import Problem, Validity
from loadtest.errors import ConfigError
from loadtest.spec.slo_flags import (
    DEFAULT_REGRESSIONS,
    Regression,
    Threshold,
    is_ceiling,
    is_flow,
    parse_regressions,
    thresholds_of_classes,
    thresholds_of_flow_slo,
)
from loadtest.spec.slos import TOKEN_SLO_METRICS

__all__ = [
    "JOINT_CONFIDENCE",
    "MIN_BINS",
    "GateCheck",
    "GateResult",
    "Measure",
    "StageFrames",
    "Verdict",
    "gate",
    "measure",
    "missing_stages",
    "noise_floors",
    "run_stages",
    "run_thresholds",
]

Verdict = Literal["pass", "fail", "invalid"]


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One threshold or one compared metric, in one stage."""

    kind: Literal["threshold", "regression"]
    text: str  # the flag as given
    metric: str
    stage: str
    request_class: str | None
    threshold: float  # a threshold's value (seconds, fraction, per second) or a regression's allowed change
    current: Measure
    verdict: Verdict
    note: str | None = None
    baseline: Measure | None = None
    ratio: float | None = None
    ratio_low: float | None = None  # the ratio's interval, widened by the noise floor
    ratio_high: float | None = None
    noise_floor: float | None = None

    @property
    def name(self) -> str:
        return f"{self.text} [{self.stage}]"

    @property
    def ceiling(self) -> bool:
        return is_ceiling(self.metric)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["current"] = self.current.to_dict()
        out["baseline"] = self.baseline.to_dict() if self.baseline is not None else None
        out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class GateResult:
    run: str
    baseline: str | None
    checks: tuple[GateCheck, ...]
    problems: tuple[Problem, ...]
    noise_source: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        if self.problems or any(c.verdict == "invalid" for c in self.checks):
            return "invalid"
        return "fail" if any(c.verdict == "fail" for c in self.checks) else "pass"

    @property
    def failed(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if c.verdict == "fail")

    def reasons(self) -> list[str]:
        """Why the verdict is invalid: the run's problems and the checks that could not be measured."""
        out = [str(p) for p in self.problems]
        out += [f"{c.name}: {c.note}" for c in self.checks if c.verdict == "invalid"]
        return out


def _classes(data: RunData) -> list[str]:
    return [c.name for c in data.manifest.spec.request_classes]


def _scope(scope: str | None, data: RunData, flag: str) -> tuple[list[str], str | None]:
    """``(stages, class)`` a scope selects in ``data``; one line when it names nothing or both a class and a stage."""
    stages, classes = run_stages(data), _classes(data)
    if scope is None:
        return stages, None
    if scope in stages and scope in classes:
        raise ConfigError(
            f"{flag}: {scope!r} is both a stage and a class of the run; rename one in the scenario"
        )
    if scope in stages:
        return [scope], None
    if scope in classes:
        return stages, scope
    raise ConfigError(
        f"{flag}: {scope!r} is neither a class ({', '.join(classes) or 'none'}) nor a stage "
        f"({', '.join(stages) or 'none'}) of the run"
    )


def _good_slos(data: RunData, thresholds: Sequence[Threshold]) -> dict[str, dict[str, float]]:
    """Per class, the latency limits a request must meet to be good: the gate's latency thresholds that apply to
    the class when there are any, else the class's own SLOs."""
    own = class_slos(data.manifest.spec.request_classes)
    out: dict[str, dict[str, float]] = {}
    for cls in _classes(data):
        given = {
            t.metric: t.limit
            for t in thresholds
            if t.kind == "latency" and not t.flow and (t.scope is None or t.scope == cls)
        }
        table = given or {k: v for k, v in own.get(cls, {}).items() if k != "attainment"}
        if table:
            out[cls] = table
    return out


def _threshold_check(t: Threshold, stage: str, cls: str | None, m: Measure) -> GateCheck:
    if m.problem is not None:
        return GateCheck("threshold", t.text, t.metric, stage, cls, t.limit, m, "invalid", m.problem)
    if m.value is None:
        return GateCheck("threshold", t.text, t.metric, stage, cls, t.limit, m, "fail", _missing(t.metric, m))
    passed = m.value <= t.limit if t.ceiling else m.value >= t.limit
    return GateCheck("threshold", t.text, t.metric, stage, cls, t.limit, m, "pass" if passed else "fail")


_DELIVERED = {
    "output_tok_per_s": "output tokens",
    "input_tok_per_s": "input tokens",
    "total_tok_per_s": "tokens",
    "req_per_s": "requests",
}


def _missing(metric: str, m: Measure) -> str:
    """Why a measure has no value (or a throughput is 0): nothing succeeded, or nothing had the metric."""
    if is_flow(metric):
        return flow_missing(metric, m)
    if m.ok == 0:
        return "no successful request in the stage"
    if metric in _DELIVERED:
        return f"its {m.ok:,} successful requests delivered no {_DELIVERED[metric]}"
    return f"none of the stage's {m.ok:,} successful requests has a {metric.rpartition('_p')[0]}"


def _check_kind(data: RunData, metric: str, cls: str | None, flag: str) -> None:
    """A TPOT or ITL where every class selected is embeddings (which stream no tokens) is a usage mistake."""
    if metric.rpartition("_p")[0] not in TOKEN_SLO_METRICS:
        return
    kinds = {c.kind for c in data.manifest.spec.request_classes if cls is None or c.name == cls}
    if kinds == {"embeddings"}:
        raise ConfigError(f"{flag}: embeddings have no {metric.rpartition('_p')[0]} (no output tokens)")


def _regression_check(
    r: Regression, stage: str, cls: str | None, cur: Measure, base: Measure, floor: float
) -> GateCheck:
    def check(verdict: Verdict, note: str | None = None, **ratio: float | None) -> GateCheck:
        return GateCheck(
            "regression",
            r.text,
            r.metric,
            stage,
            cls,
            r.change,
            cur,
            verdict,
            note,
            base,
            noise_floor=floor,
            **ratio,
        )

    # the baseline has a value here (gate() made sure); a run that lost it entirely regressed
    if cur.value is None:
        return check(
            "fail", f"this run: {_missing(r.metric, cur)} (the baseline measured it on {base.samples:,})"
        )
    for who, m in (("this run", cur), ("the baseline", base)):
        if m.problem is not None:
            return check("invalid", f"{who}: {m.problem}")
        if m.low is None or m.high is None:
            bins = f"fewer than {MIN_BINS} bins of one median request"
            return check("invalid", f"{who}: the stage is too short to bound {r.metric} ({bins})")
    assert cur.value is not None and base.value is not None  # narrowed above for mypy
    assert cur.low is not None and cur.high is not None and base.low is not None and base.high is not None
    ratio = cur.value / base.value
    low = cur.low / base.high / (1 + floor)
    high = (cur.high / base.low if base.low > 0 else math.inf) * (1 + floor)
    beyond = low > 1 + r.change if r.change > 0 else high < 1 + r.change
    return check("fail" if beyond else "pass", None, ratio=ratio, ratio_low=low, ratio_high=high)


def run_thresholds(data: RunData) -> list[Threshold]:
    """The run's own SLOs as thresholds: its classes' (scoped to each) and a Python scenario's flow SLO."""
    python = data.manifest.spec.python
    own = thresholds_of_classes(class_slos(data.manifest.spec.request_classes))
    return own + thresholds_of_flow_slo(python.slo if python is not None else {})


def _flow_checks(
    data: RunData, flows: FlowRun | None, t: Threshold, thresholds: Sequence[Threshold]
) -> list[GateCheck]:
    """A flow threshold's checks, stage by stage (``thresholds``: all of the gate's, for a good flow's limits)."""
    flag = f"--slo {t.text!r}"
    if flows is None:
        raise no_flows(flag)
    labels = run_stages(data)
    if t.scope is not None and t.scope not in labels:
        raise not_a_stage(flag, t.scope, labels)
    python = data.manifest.spec.python
    own = python.slo if python is not None else {}
    return [
        _threshold_check(
            t, stage, None, flow_measure(flows, stage, t.metric, t.limit, good_limits(thresholds, stage, own))
        )
        for stage in ([t.scope] if t.scope is not None else labels)
    ]


def gate(
    data: RunData,
    validity: Validity,
    thresholds: Sequence[Threshold],
    baseline: RunData | None = None,
    baseline_validity: Validity | None = None,
    regressions: Sequence[Regression] = (),
    noise: Mapping[str, float] | None = None,
    noise_source: str | None = None,
    names: tuple[str, str | None] | None = None,
) -> GateResult:
    """Judge ``data`` (see the module docstring). ``thresholds`` empty: the run's class SLOs; ``regressions``
    empty with a baseline: :data:`~loadtest.spec.slo_flags.DEFAULT_REGRESSIONS` on the metrics the run has.
    ``noise``: ``{metric: floor}``, ``"*"`` for every metric not named. ``names``: how to call the run and the
    baseline in the outputs (default: their directories' names)."""
    notes: list[str] = []
    if not thresholds:
        thresholds = run_thresholds(data)
        if thresholds:
            notes.append("thresholds: the scenario's SLOs (no --slo given)")
    defaults = baseline is not None and not regressions
    if defaults:
        regressions = parse_regressions(DEFAULT_REGRESSIONS)
        notes.append(
            f"regression limits: the defaults {', '.join(DEFAULT_REGRESSIONS)} (no --max-regression given)"
        )
    if not thresholds and baseline is None:
        raise ConfigError(
            "nothing to gate: give --slo (e.g. 'ttft_p95<800ms') or --baseline RUN, or SLOs in the scenario"
        )
    good = _good_slos(data, thresholds)
    # ITL needs the chunk gaps (a threshold, a comparison, or a class's limit that goodput checks per request)
    keys = [t.metric for t in thresholds] + [r.metric for r in regressions]
    keys += [key for table in good.values() for key in table]
    itl = any(key.startswith("itl_") for key in keys)
    frames = StageFrames(data, gaps=itl)
    checks: list[GateCheck] = []
    gated: set[str] = set()
    flows = read_flow_run(data.run_dir, data.manifest) if any(t.flow for t in thresholds) else None
    for t in thresholds:
        if t.flow:
            made = _flow_checks(data, flows, t, thresholds)
            gated.update(c.stage for c in made)
            checks += made
            continue
        stages, cls = _scope(t.scope, data, f"--slo {t.text!r}")
        _check_kind(data, t.metric, cls, f"--slo {t.text!r}")
        for stage in stages:
            gated.add(stage)
            checks.append(_threshold_check(t, stage, cls, measure(frames, stage, cls, t.metric, good)))
    problems = list(validity.problems_for(gated))
    if baseline is not None:
        compared: set[str] = set()
        floors = dict(noise or {})
        unfloored: list[str] = []
        base_stages = run_stages(baseline)
        base_good = _good_slos(baseline, thresholds)
        base_frames = StageFrames(
            baseline, gaps=itl or any(key.startswith("itl_") for table in base_good.values() for key in table)
        )
        for r in regressions:
            flag = f"--max-regression {r.text!r}"
            stages, cls = _scope(r.scope, data, flag)
            if not defaults:
                _check_kind(data, r.metric, cls, flag)
            if cls is not None and cls not in _classes(baseline):
                raise ConfigError(f"{flag}: the baseline {baseline.run_dir.name} has no class {cls!r}")
            missing = missing_stages(stages, baseline, [r])
            if missing:
                raise ConfigError(
                    f"{flag}: stage {missing[0]!r} is not in the baseline {baseline.run_dir.name} "
                    f"(its stages: {', '.join(base_stages) or 'none'}); stages are matched by label"
                )
            if floors and r.metric not in floors and "*" not in floors:
                unfloored.append(r.metric)
            floor = floors.get(r.metric, floors.get("*", 0.0))
            pairs = [
                (
                    stage,
                    measure(frames, stage, cls, r.metric, good, JOINT_CONFIDENCE),
                    measure(base_frames, stage, cls, r.metric, base_good, JOINT_CONFIDENCE),
                )
                for stage in stages
            ]
            empty = [stage for stage, _, base in pairs if not base.value]
            if empty and defaults and len(empty) == len(pairs):
                continue  # a default on a metric the scenario does not have (TPOT or output tokens of embeddings)
            if empty:
                raise ConfigError(
                    f"{flag}: the baseline has no {r.metric} in stage {empty[0]!r} to compare with "
                    f"({_missing(r.metric, pairs[[p[0] for p in pairs].index(empty[0])][2])})"
                )
            made = [_regression_check(r, stage, cls, cur, base, floor) for stage, cur, base in pairs]
            checks += made
            compared.update(stages)
            gated.update(stages)
        if unfloored:
            notes.append(f"no noise floor for {', '.join(dict.fromkeys(unfloored))} (not measured): 0 used")
        problems = list(validity.problems_for(gated))
        if baseline_validity is not None:
            problems += [
                Problem(p.stage, f"the baseline: {p.text}") for p in baseline_validity.problems_for(compared)
            ]
    if names is None:
        names = (data.run_dir.name, baseline.run_dir.name if baseline is not None else None)
    if baseline is not None and baseline.manifest.name != data.manifest.name:
        notes.append(
            f"the baseline ran scenario {baseline.manifest.name!r}, this run {data.manifest.name!r}: compare runs "
            "of one scenario"
        )
    return GateResult(
        run=names[0],
        baseline=names[1],
        checks=tuple(checks),
        problems=tuple(problems),
        noise_source=noise_source,
        notes=tuple(notes),
    )


def missing_stages(stages: Sequence[str], baseline: RunData, regressions: Sequence[Regression]) -> list[str]:
    """The stages of ``stages`` (a run's, in order) that ``regressions`` compare and ``baseline`` does not have:
    a regression scoped to a stage compares that one, any other every stage (all of them with no regression: the
    defaults)."""
    have = set(run_stages(baseline))
    scoped = {r.scope for r in regressions if r.scope in stages}
    wanted = [s for s in stages if s in scoped] if regressions and len(scoped) == len(regressions) else stages
    return [s for s in wanted if s not in have]


def noise_floors(runs: Sequence[RunData], metrics: Sequence[str]) -> dict[str, float]:
    """The noise floor of each metric from A/A runs (the same scenario run several times, nothing changed): the
    smallest ``f`` that makes every pair's widened ratio interval, in every stage they share, contain 1 — so the
    gate would call none of those differences a change. Stages without an interval are skipped; a metric with none
    in any stage is left out (not measured, not 0)."""
    if len(runs) < 2:
        raise ConfigError("measuring noise needs at least two runs of the same scenario")
    ids = [run.run_dir.resolve() for run in runs]
    if len(set(ids)) < len(ids):
        raise ConfigError("measuring noise needs different runs: one is given twice")
    if not set.intersection(*(set(run_stages(run)) for run in runs)):
        raise ConfigError(
            "the runs share no stage (stages are matched by label): runs of one scenario, please"
        )
    out: dict[str, float] = {}
    frames = [StageFrames(run) for run in runs]
    for metric in metrics:
        worst: float | None = None
        for fa, fb in itertools.combinations(frames, 2):
            shared = [s for s in run_stages(fa.data) if s in run_stages(fb.data)]
            for stage in shared:
                ma = measure(fa, stage, None, metric, _good_slos(fa.data, ()), JOINT_CONFIDENCE)
                mb = measure(fb, stage, None, metric, _good_slos(fb.data, ()), JOINT_CONFIDENCE)
                if None in (ma.low, ma.high, mb.low, mb.high) or ma.problem or mb.problem:
                    continue
                assert (
                    ma.low is not None and ma.high is not None and mb.low is not None and mb.high is not None
                )
                if mb.high <= 0 or mb.low <= 0:
                    continue
                low, high = ma.low / mb.high, ma.high / mb.low
                worst = max(worst or 0.0, low - 1 if low > 1 else 0.0, 1 / high - 1 if high < 1 else 0.0)
        if worst is not None:
            out[metric] = worst
    return out
