"""Can a run's numbers be trusted? Decided once, here, and shown by ``analyze``, the report and the gate.

Two outcomes, kept apart:

* **invalid** — the numbers do not measure what was asked, so a gate can neither pass nor fail them (exit 98):
  the run is not ``complete`` (interrupted or failed: its last stage may be cut short; stopped because its endpoint
  was dead, with when and why) or recorded nothing; or, in a
  stage, the generator could not offer the planned load — its own lag, or a saturated engine (event-loop delay
  or CPU share, see :mod:`analysis.load_check`), made its timings late, or more than :data:`MAX_WAITED_SHARE` of
  the arrivals waited for a free user or were dropped (the in-flight cap was reached), or it sent clearly fewer
  requests than its target rate (under 90 % and more than three Poisson standard deviations below). Problems are
  kept per stage, so a gate scoped to stages that were fine is not failed by one that was not; the gate adds its
  own sample-size check (:mod:`analysis.gate`).
* **doubtful** — worth reading before acting: too few requests for a tight p99 or a bounded X*, client token
  counts that disagree with the usage counts, input lengths the server counted more than 5 % off the asked ones
  (:mod:`analysis.input_length`), a stage after an idle stage (a cold start: not steady state), more than 1 % of
  requests failed for the endpoint's reasons, lines that could not be read; and an engine process above
  :data:`SCALE_OUT_CPU_SHARE` (half a core) in a stage, whose p99 timings drift by several ms — saturated or not —
  with the advice (item :data:`SCALE_OUT`) that more processes would have measured more truly: ``--processes N``
  with N from the run's busiest share, as many as the run's machine had cores to spare
  (:func:`loadtest.spec.processes.spare_cores` of the manifest's usable CPUs), or ``--expect-workers N`` (workers
  on other machines). Whether the engine *kept up* is the generator item's verdict, not this one's.

A sweep's last stages are often capped by design (they look past saturation); the capacity analysis knows that
and does not need them valid. A stage that is invalid here is still drawn and tabulated, with the reason beside it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from analysis.capacity import CapacityResult
from analysis.frame import SKIPPED_LINES, RunData
from analysis.input_length import input_lengths
from analysis.load_check import (
    DEFAULT_MAX_LAG_S,
    DEFAULT_MAX_LOOP_DELAY_S,
    MAX_WAITED_SHARE,
    SCALE_OUT_CPU_SHARE,
    StageLoad,
    check_load,
    offered_short,
)
from analysis.summary import StageSummary, summarize_stages
from loadtest.rundir import Manifest
from loadtest.spec.processes import spare_cores

__all__ = [
    "MAX_WAITED_SHARE",
    "P99_MIN_REQUESTS",
    "SCALE_OUT",
    "Problem",
    "Validity",
    "assess",
    "offered_short",
    "scale_out",
    "validity_of",
]

P99_MIN_REQUESTS = 1000  # below this a p99's 95 % interval spans the top few values (docs/metrics.md)
SCALE_OUT = "scale-out"  # the label of the item advising more load processes


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a run (``stage`` None) or one of its stages cannot be trusted."""

    stage: str | None
    text: str

    def __str__(self) -> str:
        return f"{self.stage}: {self.text}" if self.stage else self.text


@dataclass(frozen=True, slots=True)
class Validity:
    """Item by item ``(label, statement, doubtful)`` for a reader, and the problems that make it invalid."""

    items: tuple[tuple[str, str, bool], ...]
    problems: tuple[Problem, ...] = ()

    @property
    def doubtful(self) -> bool:
        return any(flag for _, _, flag in self.items)

    @property
    def invalid(self) -> bool:
        return bool(self.problems)

    def text_of(self, label: str) -> str | None:
        """The statement of the item ``label`` (e.g. :data:`SCALE_OUT`), or ``None`` when there is none."""
        return next((text for found, text, _ in self.items if found == label), None)

    def problems_for(self, stages: Iterable[str]) -> tuple[Problem, ...]:
        """The run's own problems and those of ``stages``: what makes a gate over those stages invalid."""
        wanted = set(stages)
        return tuple(p for p in self.problems if p.stage is None or p.stage in wanted)


def assess(
    manifest: Manifest,
    stages: list[StageSummary],
    loads: list[StageLoad],
    records: pd.DataFrame,
    skipped: int,
    cap: CapacityResult | None,
) -> Validity:
    """The run's :class:`Validity` from what the analysis already computed (see the module docstring)."""
    items: list[tuple[str, str, bool]] = []
    problems: list[Problem] = []
    if manifest.failure is not None:
        text = f"the run was stopped: {manifest.failure.reason}"
        items.append(("run", text, True))
        problems.append(Problem(None, text))
    elif manifest.status != "complete":
        text = f"the run is {manifest.status}: its last stage may be cut short"
        items.append(("run", text, True))
        problems.append(Problem(None, text))
    behind = [load for load in loads if not load.kept_up]
    cpu = [load.generator_cpu_share for load in loads if load.generator_cpu_share is not None]
    # a capped stage's lag is its arrivals' wait for a free user (said under "offered load"), not the generator's
    lag = [load.lag_p99_s for load in loads if load.lag_p99_s is not None and not load.capped]
    delay = [load.loop_delay_p99_s for load in loads if load.loop_delay_p99_s is not None]
    cpu_text = f"CPU up to {max(cpu):.0%} of a core" if cpu else "CPU share unknown"
    lag_text = f"lag p99 up to {max(lag) * 1000:.1f} ms" if lag else "lag unknown"
    if delay:
        lag_text += f", event-loop delay p99 up to {max(delay) * 1000:.1f} ms"
    if behind:
        which = "; ".join(f"{load.stage}: {load.reason}" for load in behind)
        items.append(("generator", f"did not keep up ({cpu_text}, {lag_text}): {which}", True))
        problems += [Problem(load.stage, f"the generator did not keep up: {load.reason}") for load in behind]
    else:
        bound = f"bounds {DEFAULT_MAX_LAG_S * 1000:.0f} ms and {DEFAULT_MAX_LOOP_DELAY_S * 1000:.0f} ms"
        items.append(("generator", f"kept up in every stage ({cpu_text}, {lag_text}; {bound})", False))
    advice = scale_out(manifest, loads)
    if advice is not None:
        items.append((SCALE_OUT, advice, True))
    below = []
    for load in loads:
        short = offered_short(load)
        if short is not None:
            problems.append(Problem(load.stage, f"the planned load was not offered: {short}"))
        if load.capped or short is not None:
            below.append(f"{load.stage}: {short or load.reason}")
    if below:
        items.append(("offered load", f"below target: {'; '.join(below)}", True))
    if stages:
        smallest = min(stages, key=lambda s: s.ok)
        text = f"fewest successful requests in a stage: {smallest.ok:,} ({smallest.stage})"
        if smallest.ok < P99_MIN_REQUESTS:
            text += f"; a p99 needs ≥ {P99_MIN_REQUESTS:,} for a tight interval"
        unbounded = cap is not None and cap.max_rps is not None and None in cap.max_rps_ci
        if unbounded:
            text += "; too few requests to bound X*'s 95 % interval on both sides: run the stages longer"
        items.append(("sample sizes", text, unbounded))
    items += _token_items(stages)
    after_idle = _after_idle(manifest)
    if after_idle:
        items.append(
            (
                "steady state",
                f"{', '.join(after_idle)} follow{'s' if len(after_idle) == 1 else ''} an idle stage: a cold start "
                "is measured there (the scale-up's waits and errors are in its latencies), so the capacity and the "
                "plan from this run are not steady-state figures — take those from a run without idle stages",
                True,
            )
        )
    lengths = input_lengths(records, manifest.stage_order, manifest.spec.prompts)
    if lengths.asked_any:
        items.append(("input length", lengths.summary(), bool(lengths.flagged)))
    if not len(records):
        text = "none: the run recorded no request, so nothing here is measured"
        items.append(("records", text, True))
        problems.append(Problem(None, "the run recorded no request"))
    else:
        items.append(_error_item(records))
    if skipped:
        items.append(("records", f"{skipped:,} {SKIPPED_LINES}", True))
    return Validity(tuple(items), tuple(problems))


def scale_out(manifest: Manifest, loads: list[StageLoad]) -> str | None:
    """The advice for a run whose engine passed :data:`SCALE_OUT_CPU_SHARE` of a core in some stage (its busiest
    process's share), or ``None``. The processes to suggest: enough that the busiest share, spread evenly, is back
    at the bound — ``ceil(processes × share / bound)``, at least one more than the run had — and with
    ``--processes`` no more than the run's machine had cores to spare."""
    busy = [
        (load.stage, load.generator_cpu_share)
        for load in loads
        if load.generator_cpu_share is not None and load.generator_cpu_share > SCALE_OUT_CPU_SHARE
    ]
    if not busy:
        return None
    dist = manifest.distribution
    had = dist.expect_workers or dist.processes
    needed = max(had + 1, math.ceil(had * max(share for _, share in busy) / SCALE_OUT_CPU_SHARE))
    elsewhere = f"--expect-workers {needed} (workers on other machines)"
    usable = manifest.host.usable_cpus or manifest.host.cpus  # a run from before usable_cpus: every CPU
    kind = "usable CPU" if manifest.host.usable_cpus else "CPU"
    simulated = manifest.simulator is not None
    remedy, note = elsewhere, ""
    if dist.expect_workers:
        pass
    elif usable is None:
        remedy = f"--processes {needed} (given the cores to spare) or {elsewhere}"
    elif (spare := spare_cores(usable, simulated)) > dist.processes:
        remedy = (
            f"--processes {min(needed, spare)} (the run's machine had {usable} {kind}s, {spare} to spare) "
            f"or {elsewhere}"
        )
    else:
        beside = "the CLI and the simulator" if simulated else "the CLI"
        cpus = f"{usable} {kind}{'s' if usable != 1 else ''}"
        note = f"; the run's machine had {cpus}, none {'more ' if dist.processes > 1 else ''}to spare beside {beside}"
    stages = ", ".join(f"{stage} {share:.0%}" for stage, share in busy)
    which = "the busiest engine process" if had > 1 else "the engine"
    return (
        f"{which} passed {SCALE_OUT_CPU_SHARE:.0%} of a core ({stages}), where its p99 timings drift by several "
        f"ms: {remedy} would have measured more truly{note}"
    )


def _token_items(stages: list[StageSummary]) -> list[tuple[str, str, bool]]:
    sources: dict[str, int] = {}
    checked = mismatched = 0
    for s in stages:
        for source, n in s.token_sources.items():
            sources[source] = sources.get(source, 0) + n
        checked += s.mismatch_checked
        mismatched += s.mismatch_count
    if not sources:
        return []
    text = ", ".join(f"{source} {n:,}" for source, n in sorted(sources.items()))
    doubtful = False  # a client count is the fallback (embeddings, no usage): only a disagreement is doubtful
    if checked:
        text += f"; client count off the usage count by > 10 % in {mismatched:,} of {checked:,}"
        doubtful = mismatched / checked > 0.05
    return [("token counts", text, doubtful)]


def _error_item(records: pd.DataFrame) -> tuple[str, str, bool]:
    failed = int((~records["ok"]).sum())
    limited = int((records["error_class"] == "rate_limited").sum())
    cancelled = int((records["error_class"] == "cancelled").sum())
    other = failed - limited - cancelled
    text = f"{failed:,} of {len(records):,} requests failed ({failed / len(records):.1%})"
    if limited:
        text += f", {limited:,} of them 429s (a quota, reported as its own limit)"
    if cancelled:
        text += f", {cancelled:,} cancelled by the generator (Ctrl-C or a drain timeout: not the endpoint's)"
    return ("errors", text, other / len(records) > 0.01)


def _after_idle(manifest: Manifest) -> list[str]:
    """The stages that follow an idle stage (bursts after idle: cold starts)."""
    stages = manifest.spec.stages
    return [b.label for a, b in itertools.pairwise(stages) if a.kind == "idle" and b.kind != "idle"]


def validity_of(data: RunData, cap: CapacityResult | None = None) -> Validity:
    """:func:`assess` for a run read from disk, computing the per-stage summaries and load checks it needs."""
    stages = summarize_stages(data.records, data.manifest.stage_order)
    loads = check_load(data.records, data.manifest.stages or ())
    return assess(data.manifest, stages, loads, data.records, data.skipped_lines, cap)
