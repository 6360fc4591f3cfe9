"""The endpoint's own metrics per stage (``server_metrics.jsonl``), and what they say binds. Pure: files in, dataclasses
out.

**Join to stages**: a scrape belongs to a stage when its time ``t`` (when its answer arrived) is in the stage's window
``[start, end]`` (``end`` after the drain; ``window_end`` when the stage never ended). A gauge's stage values are the
mean and the maximum over those scrapes; a counter's are its increase from the stage's first scrape to its last
(a fall — the server restarted — counts the value after it as the increase) and that increase over the time between
the two scrapes (per second; ``None`` with fewer than two scrapes). Failed scrapes are counted, never averaged.

**Evidence of a limit** (:func:`binding_evidence`), over the stages in increasing load, each claim from the first stage
from which it holds in every later stage with scrapes: the KV cache at least :data:`KV_FULL` full at its peak ("KV
cache 97 % full from stage X on"); requests waiting in the server's queue, at least :data:`QUEUED` on average
("requests queue in the server from stage X on"); preemptions (at least one); a Databricks endpoint's CPU or GPU
use at least :data:`BUSY_PCT` % on average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

from loadtest.client.server_metrics import METRICS, Scrape
from loadtest.rundir import ServerMetricsLog, StageWindow, read_server_metrics

__all__ = [
    "BUSY_PCT",
    "KV_FULL",
    "QUEUED",
    "ServerMetricsSummary",
    "ServerStageMetrics",
    "binding_evidence",
    "gauge_series",
    "server_metrics_of",
    "stage_server_metrics",
    "summarize_server_metrics",
]

KV_FULL: Final = 0.9
QUEUED: Final = 1.0
BUSY_PCT: Final = 90.0
_GAUGES: Final = tuple(m.name for m in METRICS if m.kind == "gauge")
_COUNTERS: Final = tuple(m.name for m in METRICS if m.kind == "counter")


@dataclass(frozen=True, slots=True)
class ServerStageMetrics:
    """One stage's server metrics: ``scrapes`` in its window (``failed`` of them failed), and for each metric the
    server exposed, a gauge's ``{name}_mean`` and ``{name}_max``, a counter's ``{name}`` (its increase) and
    ``{name}_per_s``."""

    stage: str
    scrapes: int
    failed: int
    values: Mapping[str, float | None]

    def get(self, key: str) -> float | None:
        return self.values.get(key)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "scrapes": self.scrapes, "failed": self.failed, **self.values}


@dataclass(frozen=True, slots=True)
class ServerMetricsSummary:
    """A run's server metrics: where they came from, how the scraping went (its cost included), and per stage."""

    source: str
    server: (
        str | None
    )  # vllm | sglang | llamacpp | tgi | databricks, as detected; None when no scrape succeeded
    explicit: bool
    interval_s: float
    scrapes: int
    failed: int
    first_error: str | None
    duration_mean_s: float | None  # a scrape's wall time, GET and parse
    duration_max_s: float | None
    cpu_mean_s: float | None  # the CLI thread's CPU time per scrape
    stages: tuple[ServerStageMetrics, ...]
    skipped_lines: int = 0
    # the gauges over time, for charts: name -> ((epoch s, value), ...) from the successful scrapes (not in JSON)
    series: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)

    @property
    def note(self) -> str | None:
        """One line when scrapes failed (said by ``analyze`` and the report), else None."""
        if not self.failed:
            return None
        return (
            f"{self.failed} of {self.scrapes} server-metrics scrapes of {self.source} failed; "
            f"the first: {self.first_error}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "server": self.server,
            "explicit": self.explicit,
            "interval_s": self.interval_s,
            "scrapes": self.scrapes,
            "failed": self.failed,
            "first_error": self.first_error,
            "scrape_duration_mean_s": self.duration_mean_s,
            "scrape_duration_max_s": self.duration_max_s,
            "scrape_cpu_mean_s": self.cpu_mean_s,
            "stages": [s.to_dict() for s in self.stages],
        }


def _window(stage: StageWindow) -> tuple[float, float] | None:
    end = stage.end if stage.end is not None else stage.window_end
    if stage.start is None or end is None:
        return None
    return stage.start, end


def _increase(points: Sequence[tuple[float, float]]) -> float:
    total = 0.0
    for (_, before), (_, after) in pairwise(points):
        total += after - before if after >= before else after  # a fall: the server restarted from 0
    return total


def stage_server_metrics(
    scrapes: Sequence[Scrape], windows: Sequence[StageWindow]
) -> tuple[ServerStageMetrics, ...]:
    """Each stage's server metrics (module docstring); stages without a window are left out."""
    out = []
    ordered = sorted(scrapes, key=lambda s: s.t)
    for stage in windows:
        span = _window(stage)
        if span is None:
            continue
        inside = [s for s in ordered if span[0] <= s.t <= span[1]]
        ok = [s for s in inside if s.ok and s.values is not None]
        values: dict[str, float | None] = {}
        for name in _GAUGES:
            seen = [s.values[name] for s in ok if s.values is not None and name in s.values]
            if seen:
                values[f"{name}_mean"] = sum(seen) / len(seen)
                values[f"{name}_max"] = max(seen)
        for name in _COUNTERS:
            points = [(s.t, s.values[name]) for s in ok if s.values is not None and name in s.values]
            if not points:
                continue
            if len(points) < 2:
                values[name], values[f"{name}_per_s"] = None, None
                continue
            increase = _increase(points)
            span_s = points[-1][0] - points[0][0]
            values[name] = increase
            values[f"{name}_per_s"] = increase / span_s if span_s > 0 else None
        out.append(ServerStageMetrics(stage.label, len(inside), len(inside) - len(ok), values))
    return tuple(out)


def summarize_server_metrics(log: ServerMetricsLog, windows: Sequence[StageWindow]) -> ServerMetricsSummary:
    scrapes = log.scrapes
    failed = [s for s in scrapes if not s.ok]
    kinds = [s.kind for s in scrapes if s.ok and s.kind is not None]
    durations = [s.duration_s for s in scrapes]
    cpu = [s.cpu_s for s in scrapes]
    return ServerMetricsSummary(
        source=log.header.source,
        server=max(set(kinds), key=kinds.count) if kinds else None,
        explicit=log.header.explicit,
        interval_s=log.header.interval_s,
        scrapes=len(scrapes),
        failed=len(failed),
        first_error=failed[0].error if failed else None,
        duration_mean_s=sum(durations) / len(durations) if durations else None,
        duration_max_s=max(durations) if durations else None,
        cpu_mean_s=sum(cpu) / len(cpu) if cpu else None,
        stages=stage_server_metrics(scrapes, windows),
        skipped_lines=log.skipped_lines,
        series=gauge_series(scrapes),
    )


def gauge_series(scrapes: Sequence[Scrape]) -> dict[str, tuple[tuple[float, float], ...]]:
    """Each gauge the server exposed, as (time, value) over the successful scrapes in order."""
    out: dict[str, list[tuple[float, float]]] = {}
    for scrape in scrapes:
        if scrape.ok and scrape.values:
            for name in _GAUGES:
                value = scrape.values.get(name)
                if value is not None:
                    out.setdefault(name, []).append((scrape.t, value))
    return {name: tuple(points) for name, points in out.items()}


def server_metrics_of(run_dir: Path, windows: Sequence[StageWindow]) -> ServerMetricsSummary | None:
    """The run directory's server metrics joined to ``windows``; None when the run scraped none."""
    log = read_server_metrics(run_dir)
    return summarize_server_metrics(log, windows) if log is not None else None


def _from_on(stages: Sequence[ServerStageMetrics], key: str, at_least: float) -> ServerStageMetrics | None:
    """The first stage from which ``key`` is at least ``at_least`` in every later stage that has it."""
    having = [s for s in stages if s.get(key) is not None]
    first = None
    for stage in having:
        value = stage.get(key)
        if value is not None and value >= at_least:
            first = first or stage
        else:
            first = None
    return first


def binding_evidence(summary: ServerMetricsSummary | None, order: Sequence[str]) -> tuple[str, ...]:
    """What the server's metrics say binds, over the stages in ``order`` (increasing load; module docstring)."""
    if summary is None:
        return ()
    by_label = {s.stage: s for s in summary.stages}
    stages = [by_label[label] for label in order if label in by_label]
    out = []
    kv = _from_on(stages, "kv_cache_usage_max", KV_FULL)
    if kv is not None:
        out.append(f"KV cache {100 * (kv.get('kv_cache_usage_max') or 0.0):.0f} % full from {kv.stage} on")
    queue = _from_on(stages, "waiting_mean", QUEUED)
    if queue is not None:
        last = next(s for s in reversed(stages) if s.get("waiting_mean") is not None)
        out.append(
            f"requests queue in the server from {queue.stage} on ({queue.get('waiting_mean') or 0.0:.1f} waiting "
            f"on average there, {last.get('waiting_max') or 0.0:.0f} at most in {last.stage})"
        )
    preempted = _from_on(stages, "preemptions", 1.0)
    if preempted is not None:
        total = sum(s.get("preemptions") or 0.0 for s in stages[stages.index(preempted) :])
        out.append(f"{total:.0f} preemptions from {preempted.stage} on")
    for key, what in (("gpu_usage_pct_mean", "GPU"), ("cpu_usage_pct_mean", "CPU")):
        busy = _from_on(stages, key, BUSY_PCT)
        if busy is not None:
            out.append(f"{what} {busy.get(key) or 0.0:.0f} % busy from {busy.stage} on")
    return tuple(out)
