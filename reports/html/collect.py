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

from analysis import CapacityResult, StageLoad, StageSummary, check_load, class_slos, load_run
from analysis.coldstart import ColdStart, cold_starts
from analysis.flows import FlowAnalysis, flows_of_run
from analysis.input_length import InputLengths, input_lengths
from analysis.run_plan import RunPlan, plan_for_run
from analysis.scan import open_scan, summarize_scan
from analysis.server_metrics import ServerMetricsSummary, server_metrics_of
from analysis.timeline import Histogram, Timeline, histogram, quantile_curve, timeline
from analysis.validity import Validity, assess
from loadtest.errors import ConfigError
from loadtest.rundir import Manifest, Sample, read_samples
from loadtest.spec.distributions import parse_length
from loadtest.spec.runspec import PlanRequest

__all__ = ["LATENCY_METRICS", "ErrorRow", "RunView", "Validity", "collect_run"]

LATENCY_METRICS = ("ttft", "tpot", "e2e")
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
    input_lengths: InputLengths  # asked vs served per class and stage
    plan: RunPlan | str  # the plan, or why there is none
    samples: tuple[Sample, ...]  # a few requests and responses per class, stored at run time
    samples_note: str | None  # why there are none (an older run), or why they could not be read
    server_metrics: ServerMetricsSummary | None = None  # the endpoint's own metrics per stage, when scraped
    cold_starts: tuple[ColdStart, ...] = ()  # the bursts after an idle stage (analysis.coldstart)
    flows: FlowAnalysis | None = None  # a Python scenario's flows (analysis.flows); None for a run without
    flows_note: str | None = None  # why a run's flows could not be read

    @property
    def duration_s(self) -> float | None:
        m = self.manifest
        return (m.finished_at - m.created_at) if m.finished_at is not None else None


def collect_run(run_dir: Path, replan: PlanRequest | None = None) -> RunView:
    """Read and analyse one run directory (see the module docstring); ``replan`` overrides what the run's plan
    request gives (its peak, its architectures)."""
    # the summaries and capacity, which read the chunk gaps (a million records' gaps are ~56 M float32 values),
    # stage by stage out of core; every other step from the frame without the gaps and the request ids
    scan = open_scan(run_dir)
    manifest = scan.manifest
    order = manifest.stage_order
    slos = class_slos(manifest.spec.request_classes)
    result = summarize_scan(scan, slos, order)
    stages = list(result.stages)
    classes = [*result.classes, *result.classes_by_stage]
    assert result.capacity is not None
    cap = result.capacity
    del scan
    data = load_run(run_dir, gaps=False, request_ids=False)
    records = flat = data.records.drop(columns="chunk_gaps")
    loads = check_load(flat, manifest.stages or ())
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
    flows, flows_note = _flows(run_dir, manifest)
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
        validity=assess(manifest, stages, loads, flat, data.skipped_lines, cap),
        errors=_errors(flat),
        timeline=line,
        stage_windows=windows,
        cdfs=_cdfs(records, [s.stage for s in stages]),
        input_tokens=_tokens(records, "prompt_tokens", asked),
        output_tokens=_tokens(records, "output_tokens", _asked_output(records)),
        asked_input=asked_how,
        input_lengths=input_lengths(flat, order, manifest.spec.prompts),
        plan=plan,
        samples=samples,
        samples_note=samples_note,
        server_metrics=_server_metrics(run_dir, manifest),
        cold_starts=tuple(cold_starts(flat, manifest.spec.stages, manifest.stages or ())),
        flows=flows,
        flows_note=flows_note,
    )


def _flows(run_dir: Path, manifest: Manifest) -> tuple[FlowAnalysis | None, str | None]:
    """The run's flows; an unreadable ``flows.jsonl`` is said in the report, not a failed report."""
    try:
        return flows_of_run(run_dir, manifest), None
    except ConfigError as exc:
        return None, f"the flows could not be read: {exc}"


def _server_metrics(run_dir: Path, manifest: Manifest) -> ServerMetricsSummary | None:
    """The run's server metrics; an unreadable file is a missing section, not a failed report."""
    try:
        return server_metrics_of(run_dir, manifest.stages or ())
    except ConfigError:
        return None


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
    if replan.has_peak:
        base = dataclasses.replace(
            base,
            peak_tokens_per_min=replan.peak_tokens_per_min,
            peak_requests_per_s=replan.peak_requests_per_s,
            peak_flows_per_s=replan.peak_flows_per_s,
            example=False,
        )
    if replan.architectures:
        base = dataclasses.replace(base, architectures=replan.architectures)
    if replan.profile is not None:
        base = dataclasses.replace(base, profile=replan.profile)
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
    """The records' asked lengths (``asked_prompt_tokens``) when they have them; for a run made before they were
    recorded, draws from each class's prompt-length distribution, as many per class as the run sent (at most
    :data:`ASKED_SAMPLE` in all), seeded by the run's seed; dataset classes have no distribution to draw."""
    recorded = (
        records["asked_prompt_tokens"].to_numpy(dtype="float64", na_value=np.nan) if len(records) else None
    )
    if recorded is not None and not np.isnan(recorded).all():
        return recorded[~np.isnan(recorded)], "each request's asked length, as recorded"
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
