"""Everything the HTML report shows about one run, computed once from its run directory with :mod:`analysis`.

:func:`collect_run` is the only place the report reads files; what it returns (:class:`RunView`) is small — the
summaries, the capacity answer, the plan and a few hundred points per chart — whatever the run's size.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import (
    DEFAULT_MAX_LAG_S,
    SKIPPED_LINES,
    CapacityResult,
    StageLoad,
    StageSummary,
    capacity_from_run,
    check_load,
    class_slos,
    load_run,
    summarize_classes,
    summarize_stages,
)
from analysis.run_plan import RunPlan, plan_for_run
from analysis.timeline import Histogram, Timeline, histogram, quantile_curve, timeline
from loadtest.errors import ConfigError
from loadtest.rundir import Manifest, Sample, read_samples
from loadtest.spec.distributions import parse_length
from loadtest.spec.runspec import PlanRequest

__all__ = ["LATENCY_METRICS", "ErrorRow", "RunView", "Validity", "collect_run"]

LATENCY_METRICS = ("ttft", "tpot", "e2e")
P99_MIN_REQUESTS = 1000  # below this a p99's 95 % interval spans the top few values (docs/metrics.md)
ASKED_SAMPLE = 20_000  # draws from a class's prompt-length distribution, to draw "asked" beside "served"
EXAMPLES_PER_ERROR = 3


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One error class over the run: how many, their share of requests, and its most common messages."""

    error_class: str
    count: int
    share: float
    examples: tuple[tuple[str, int], ...]  # (message, how many times)


@dataclass(frozen=True, slots=True)
class Validity:
    """Whether the run can be trusted, item by item: ``(label, statement, doubtful)``."""

    items: tuple[tuple[str, str, bool], ...]

    @property
    def doubtful(self) -> bool:
        return any(flag for _, _, flag in self.items)


@dataclass(frozen=True, slots=True)
class RunView:
    name: str
    run_dir: Path
    manifest: Manifest
    requests: int
    skipped_lines: int
    slos: Mapping[str, Mapping[str, float]]
    stages: tuple[StageSummary, ...]
    classes: tuple[StageSummary, ...]  # per class over the run, then per class within each stage
    loads: tuple[StageLoad, ...]
    capacity: CapacityResult
    validity: Validity
    errors: tuple[ErrorRow, ...]
    timeline: Timeline | None
    stage_windows: tuple[tuple[str, float, float], ...]  # (label, start, end) in seconds since timeline.start
    cdfs: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]  # metric → stage → (p, seconds)
    input_tokens: Histogram | None
    output_tokens: Histogram | None
    asked_input: str  # how the asked input lengths were drawn
    plan: RunPlan | str  # the plan, or why there is none
    samples: tuple[Sample, ...]  # a few requests and responses per class, stored at run time
    samples_note: str | None  # why there are none (an older run), or why they could not be read

    @property
    def duration_s(self) -> float | None:
        m = self.manifest
        return (m.finished_at - m.created_at) if m.finished_at is not None else None


def collect_run(run_dir: Path, replan: PlanRequest | None = None) -> RunView:
    """Read and analyse one run directory (see the module docstring); ``replan`` overrides what the run's plan
    request gives (its peak, its architectures)."""
    data = load_run(run_dir)
    manifest = data.manifest
    records = data.records
    # the steps that read no chunk gaps get the frame without them: filtering rows then copies no gap lists
    # (a million records' gaps are ~56 M float32 values)
    flat = records.drop(columns="chunk_gaps")
    order = manifest.stage_order
    slos = class_slos(manifest.spec.request_classes)
    stages = summarize_stages(records, order, slos=slos)
    classes = summarize_classes(records, slos=slos, order=order) + summarize_classes(
        records, slos=slos, by_stage=True, order=order
    )
    loads = check_load(flat, manifest.stages or ())
    cap = capacity_from_run(data)
    line = timeline(flat, min_bin_s=2.0 * _median_e2e(flat))
    windows = _windows(manifest, line)
    request = _request(manifest.spec.plan, replan)
    plan: RunPlan | str = (
        "the run has no records"
        if records.empty
        else plan_for_run(dataclasses.replace(data, records=flat), cap, request)
    )
    asked, asked_how = _asked_input(manifest, records)
    samples, samples_note = _samples(run_dir)
    return RunView(
        name=run_dir.name,
        run_dir=run_dir,
        manifest=manifest,
        requests=len(records),
        skipped_lines=data.skipped_lines,
        slos=slos,
        stages=tuple(stages),
        classes=tuple(classes),
        loads=tuple(loads),
        capacity=cap,
        validity=_validity(manifest, stages, loads, records, data.skipped_lines, cap),
        errors=_errors(flat),
        timeline=line,
        stage_windows=windows,
        cdfs=_cdfs(records, [s.stage for s in stages]),
        input_tokens=_tokens(records, "prompt_tokens", asked),
        output_tokens=_tokens(records, "output_tokens", _asked_output(records)),
        asked_input=asked_how,
        plan=plan,
        samples=samples,
        samples_note=samples_note,
    )


def _samples(run_dir: Path) -> tuple[tuple[Sample, ...], str | None]:
    """The run's samples; an unreadable file is said in the report, not a failed report."""
    try:
        samples = read_samples(run_dir)
    except ConfigError as exc:
        return (), f"the samples could not be read: {exc}"
    return samples, None if samples else "the run stored no samples (runs before samples were kept have none)"


def _median_e2e(records: pd.DataFrame) -> float:
    """The median successful request's E2E (seconds; 0 without one)."""
    e2e = (
        records.loc[records["ok"], "e2e"].to_numpy(dtype="float64", na_value=np.nan) if len(records) else None
    )
    return float(np.nanmedian(e2e)) if e2e is not None and (~np.isnan(e2e)).any() else 0.0


def _request(given: PlanRequest | None, replan: PlanRequest | None) -> PlanRequest | None:
    if replan is None:
        return given
    base = given or PlanRequest()
    if replan.peak_tokens_per_min is not None or replan.peak_requests_per_s is not None:
        base = dataclasses.replace(
            base,
            peak_tokens_per_min=replan.peak_tokens_per_min,
            peak_requests_per_s=replan.peak_requests_per_s,
            example=False,
        )
    if replan.architectures:
        base = dataclasses.replace(base, architectures=replan.architectures)
    return base


def _windows(manifest: Manifest, line: Timeline | None) -> tuple[tuple[str, float, float], ...]:
    if line is None:
        return ()
    out = []
    for window in manifest.stages or ():
        if window.start is not None:
            end = window.end if window.end is not None else window.window_end
            stop = (end if end is not None else window.start) - line.start
            out.append((window.label, window.start - line.start, stop))
    return tuple(out)


def _cdfs(records: pd.DataFrame, stages: list[str]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {m: {} for m in LATENCY_METRICS}
    ok = records["ok"].to_numpy(dtype=bool)
    if not ok.any():
        return out
    # rows by the stage's categorical code, not by its name: no string per row
    labels = records["stage"].astype("category").cat
    code_of = {str(label): code for code, label in enumerate(labels.categories)}
    codes = labels.codes.to_numpy()[ok]
    for metric in LATENCY_METRICS:
        values = records[metric].to_numpy(dtype="float64", na_value=np.nan)[ok]
        for stage in stages:
            if stage not in code_of:
                continue
            curve = quantile_curve(values[codes == code_of[stage]])
            if curve is not None:
                out[metric][stage] = curve
    return out


def _asked_input(manifest: Manifest, records: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """Draws from each class's prompt-length distribution, as many per class as the run sent (at most
    :data:`ASKED_SAMPLE` in all), seeded by the run's seed; dataset classes have no distribution to draw."""
    # on the categorical itself (a string per row took 0.2 s for a million); missing classes are not counted
    counts = records["request_class"].value_counts() if len(records) else pd.Series(dtype=int)
    total = int(counts.sum())
    rng = random.Random(manifest.seed)
    draws: list[int] = []
    described = []
    for cls in manifest.spec.request_classes:
        if cls.dataset is not None:
            described.append(f"{cls.name}: from its dataset (not drawn)")
            continue
        dist = parse_length(cls.prompt_tokens, cls.name)
        n = int(counts.get(cls.name, 0))
        if total > ASKED_SAMPLE:
            n = round(n * ASKED_SAMPLE / total)
        draws += [dist.sample(rng) for _ in range(n)]
        described.append(f"{cls.name}: {dist.describe()}")
    how = "; ".join(described)
    return (np.asarray(draws, dtype="float64") if draws else None), how


def _asked_output(records: pd.DataFrame) -> np.ndarray | None:
    asked = records["max_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    return asked if len(asked) and not np.isnan(asked).all() else None


def _tokens(records: pd.DataFrame, column: str, asked: np.ndarray | None) -> Histogram | None:
    ok = records["ok"].to_numpy(dtype=bool) if len(records) else np.zeros(0, dtype=bool)
    served = records[column].to_numpy(dtype="float64", na_value=np.nan)[ok]
    series = {"served": served}
    if asked is not None:
        series = {"asked": asked if column == "prompt_tokens" else asked[ok], "served": served}
    return histogram(series)


def _errors(records: pd.DataFrame) -> tuple[ErrorRow, ...]:
    if records.empty:
        return ()
    failed = records[~records["ok"]]
    rows = []
    for name, group in failed.groupby(failed["error_class"].astype(str), sort=False, observed=True):
        common = group["error_detail"].dropna().astype(str).value_counts().head(EXAMPLES_PER_ERROR)
        rows.append(
            ErrorRow(
                error_class=str(name),
                count=len(group),
                share=len(group) / len(records),
                examples=tuple((str(msg), int(n)) for msg, n in common.items()),
            )
        )
    return tuple(sorted(rows, key=lambda r: (-r.count, r.error_class)))


def _validity(
    manifest: Manifest,
    stages: list[StageSummary],
    loads: list[StageLoad],
    records: pd.DataFrame,
    skipped: int,
    cap: CapacityResult,
) -> Validity:
    items: list[tuple[str, str, bool]] = []
    if manifest.status != "complete":
        items.append(("run", f"the run is {manifest.status}: its last stage may be cut short", True))
    behind = [load for load in loads if not load.kept_up]
    cpu = [load.generator_cpu_share for load in loads if load.generator_cpu_share is not None]
    lag = [load.lag_p99_s for load in loads if load.lag_p99_s is not None]
    cpu_text = f"CPU up to {max(cpu):.0%} of a core" if cpu else "CPU share unknown"
    lag_text = f"lag p99 up to {max(lag) * 1000:.1f} ms" if lag else "lag unknown"
    if behind:
        which = "; ".join(f"{load.stage}: {load.reason}" for load in behind)
        items.append(("generator", f"did not keep up ({cpu_text}, {lag_text}): {which}", True))
    else:
        bound = f"bound {DEFAULT_MAX_LAG_S * 1000:.0f} ms"
        items.append(("generator", f"kept up in every stage ({cpu_text}, {lag_text}; {bound})", False))
    capped = [load for load in loads if load.capped]
    if capped:
        which = "; ".join(f"{load.stage}: {load.reason}" for load in capped)
        items.append(("offered load", f"below target: {which}", True))
    if stages:
        smallest = min(stages, key=lambda s: s.ok)
        text = f"fewest successful requests in a stage: {smallest.ok:,} ({smallest.stage})"
        if smallest.ok < P99_MIN_REQUESTS:
            text += f"; a p99 needs ≥ {P99_MIN_REQUESTS:,} for a tight interval"
        unbounded = cap.max_rps is not None and None in cap.max_rps_ci
        if unbounded:
            text += "; too few requests to bound X*'s 95 % interval on both sides: run the stages longer"
        items.append(("sample sizes", text, unbounded))
    sources: dict[str, int] = {}
    checked = mismatched = 0
    for s in stages:
        for source, n in s.token_sources.items():
            sources[source] = sources.get(source, 0) + n
        checked += s.mismatch_checked
        mismatched += s.mismatch_count
    if sources:
        text = ", ".join(f"{source} {n:,}" for source, n in sorted(sources.items()))
        doubtful = (
            False  # a client count is the fallback (embeddings, no usage): only a disagreement is doubtful
        )
        if checked:
            text += f"; client count off the usage count by > 10 % in {mismatched:,} of {checked:,}"
            doubtful = doubtful or mismatched / checked > 0.05
        items.append(("token counts", text, doubtful))
    if not len(records):
        items.append(("records", "none: the run recorded no request, so nothing here is measured", True))
    else:
        failed = int((~records["ok"]).sum())
        limited = int((records["error_class"] == "rate_limited").sum())
        cancelled = int((records["error_class"] == "cancelled").sum())
        other = failed - limited - cancelled
        text = f"{failed:,} of {len(records):,} requests failed ({failed / len(records):.1%})"
        if limited:
            text += f", {limited:,} of them 429s (a quota, reported as its own limit)"
        if cancelled:
            text += (
                f", {cancelled:,} cancelled by the generator (Ctrl-C or a drain timeout: not the endpoint's)"
            )
        items.append(("errors", text, other / len(records) > 0.01))
    if skipped:
        items.append(("records", f"{skipped:,} {SKIPPED_LINES}", True))
    return Validity(tuple(items))
