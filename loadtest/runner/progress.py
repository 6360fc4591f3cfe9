"""Live progress of a run, from the run directory as the engine writes it: the model behind ``loadtest run``'s
progress line (the line itself is :mod:`loadtest.runner.live`).

:class:`RunProgress` tails ``events.jsonl`` and ``records.jsonl`` (:class:`LineTail`: from a remembered byte offset,
complete lines only, so a line the engine is half-way through writing waits for the next poll) and keeps, per
stage, the counts and what the line shows. It only reads: the engine appends with ``O_APPEND`` and never waits for
it. The clock is injected; :meth:`RunProgress.snapshot` is a pure function of what was read and the clock.

Definitions (the per-stage table's where it has the same column, so the last live value of a stage agrees with it):

* requests — records of the stage, whatever their outcome; errors — those with an ``error_class`` (429s included);
  429s — ``error_class == "rate_limited"``, with the quota named most often (``analysis.limit_type``);
* req/s and output tok/s — successful requests (and their ``output_tokens``) whose ``ended_at`` falls in the last
  :data:`WINDOW_S` seconds, over that window (shorter at the start of a stage: the time since it started; none in
  the first :data:`MIN_SPAN_S`);
* TTFT p50 — ``first_token_at − started_at`` of the stage's successful requests, exact (numpy's linear median),
  kept as a running median in two heaps: O(log n) per record, 32 bytes per request of the current stage.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from analysis import limit_type
from loadtest.client.clock import Clock, EpochClock
from loadtest.model.quota import QUOTA_WINDOWS
from loadtest.rundir.files import EVENTS_FILE, RECORDS_FILE
from loadtest.spec.runspec import RunSpec
from reports import format_ms

__all__ = [
    "MIN_SPAN_S",
    "WINDOW_S",
    "LineTail",
    "Phase",
    "ProgressSnapshot",
    "RunMedian",
    "RunProgress",
    "describe",
]

WINDOW_S = 5.0  # req/s and output tok/s are over the last this many seconds
MIN_SPAN_S = 1.0  # ... and not shown in a stage's first second (a rate over a shorter time is mostly noise)
Phase = Literal["starting", "running", "draining", "done"]
_SHORT: dict[str, str] = {kind: short for kind, (short, *_rest) in QUOTA_WINDOWS.items()}  # OTPM, …


class LineTail:
    """The complete lines appended to a file since the last read. Remembers a byte offset; an unterminated last
    line (being written) is left for the next read; a missing file reads as nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> bytes:
        """The new complete lines, each ending in ``\\n`` (``b""`` when there is none)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end]


def _objects(chunk: bytes) -> list[dict[str, Any]]:
    """The JSON objects of complete lines; a line that is not one is skipped (the analysis counts those)."""
    out = []
    for line in chunk.splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


class RunMedian:
    """An exact running median: the lower half in a max-heap (negated), the upper half in a min-heap."""

    __slots__ = ("_high", "_low")

    def __init__(self) -> None:
        self._low: list[float] = []  # negated
        self._high: list[float] = []

    def __len__(self) -> int:
        return len(self._low) + len(self._high)

    def add(self, value: float) -> None:
        if self._low and value > -self._low[0]:
            heapq.heappush(self._high, value)
        else:
            heapq.heappush(self._low, -value)
        if len(self._low) > len(self._high) + 1:
            heapq.heappush(self._high, -heapq.heappop(self._low))
        elif len(self._high) > len(self._low):
            heapq.heappush(self._low, -heapq.heappop(self._high))

    def median(self) -> float | None:
        """The middle value, or the mean of the two middle ones (numpy's linear p50); None when empty."""
        if not self._low:
            return None
        if len(self._low) > len(self._high):
            return -self._low[0]
        return (-self._low[0] + self._high[0]) / 2


@dataclass(slots=True)
class _Stage:
    """What was read of one stage."""

    requests: int = 0
    errors: int = 0
    limited: Counter[str] = field(default_factory=Counter)
    ttft: RunMedian = field(default_factory=RunMedian)
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # (ended_at, output tokens) of successes
    recent_tokens: int = 0
    start: float | None = None
    duration_s: float | None = None
    window_end: float | None = None
    ended: bool = False

    def add(self, rec: dict[str, Any]) -> None:
        self.requests += 1
        if rec.get("error_class") is not None:
            self.errors += 1
            if rec["error_class"] == "rate_limited":
                self.limited[limit_type(rec.get("error_detail"))] += 1
            return
        first, started, ended = rec.get("first_token_at"), rec.get("started_at"), rec.get("ended_at")
        if first is not None and started is not None:
            self.ttft.add(first - started)
        if ended is not None:
            tokens = rec.get("output_tokens") or 0
            self.recent.append((ended, tokens))
            self.recent_tokens += tokens

    def rates(self, now: float) -> tuple[float | None, float | None]:
        """(req/s, output tok/s) of the successes that ended in the last ``WINDOW_S`` seconds of the stage."""
        if self.start is None or now - self.start < MIN_SPAN_S:
            return None, None
        span = min(WINDOW_S, now - self.start)
        # lines come in completion order, to within a worker's 100 ms batch when distributed: that fuzzy an edge
        while self.recent and self.recent[0][0] <= now - span:
            self.recent_tokens -= self.recent.popleft()[1]
        return len(self.recent) / span, self.recent_tokens / span


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """What the progress line shows at one instant. ``index`` is 1-based (0 before the first stage);
    ``planned_stages`` is None when unknown, and an upper bound when ``may_stop_early`` (an automatic sweep)."""

    phase: Phase
    index: int
    planned_stages: int | None
    may_stop_early: bool
    stage: str | None
    elapsed_s: float  # since the stage started (since the progress began, before the first stage)
    planned_s: float | None
    requests: int = 0
    errors: int = 0
    rate_limited: int = 0
    limit: str | None = None  # the quota most 429s named, as its short name (OTPM, …)
    req_per_s: float | None = None
    output_tok_per_s: float | None = None
    ttft_p50_s: float | None = None
    draining_s: float | None = None  # since the stage's window ended, while its requests drain


class RunProgress:
    """The progress of the run being written to ``run_dir`` (see the module docstring). Call :meth:`poll` to read
    what was appended, :meth:`snapshot` for the line."""

    def __init__(self, spec: RunSpec, run_dir: Path, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or EpochClock()
        self._began = self.clock()
        if spec.sweep is not None:
            self._planned: int | None = 2 + spec.sweep.points
            self._may_stop_early = True
            self._durations: dict[str, float] = {}
        else:
            self._planned = len(spec.stages)
            self._may_stop_early = False
            self._durations = {s.label: s.duration_s for s in spec.stages}
        self._events = LineTail(run_dir / EVENTS_FILE)
        self._records = LineTail(run_dir / RECORDS_FILE)
        self._stages: dict[str, _Stage] = {}
        self._order: list[str] = []  # labels in the order the stages started
        self.lines_read = 0

    def poll(self) -> None:
        """Read the events and records appended since the last poll."""
        for ev in _objects(self._events.read()):
            self._event(ev)
        records = _objects(self._records.read())
        self.lines_read += len(records)
        for rec in records:
            label = rec.get("stage")
            if isinstance(label, str):
                self._stage(label).add(rec)

    def _stage(self, label: str) -> _Stage:
        stage = self._stages.get(label)
        if stage is None:
            stage = self._stages[label] = _Stage()
        return stage

    def _event(self, ev: dict[str, Any]) -> None:
        kind, label = ev.get("event"), ev.get("stage")
        if kind == "sweep_stopped":
            self._planned, self._may_stop_early = len(self._order), False
        if not isinstance(label, str):
            return
        if kind == "stage_start":
            for old in self._order:  # a finished stage is not shown again: free its values
                self._stages.pop(old, None)
            self._order.append(label)
            stage = self._stage(label)
            stage.start = ev.get("t")
            duration = ev.get("duration_s")
            stage.duration_s = duration if duration is not None else self._durations.get(label)
        elif kind == "stage_window_end":
            self._stage(label).window_end = ev.get("t")
        elif kind == "stage_end":
            self._stage(label).ended = True

    def snapshot(self) -> ProgressSnapshot:
        now = self.clock()
        planned, early = self._planned, self._may_stop_early
        if planned is not None and len(self._order) > planned:
            planned = None  # more stages than planned: no longer known
        if not self._order:
            return ProgressSnapshot("starting", 0, planned, early, None, now - self._began, None)
        label = self._order[-1]
        stage = self._stages[label]
        phase: Phase = "done" if stage.ended else "draining" if stage.window_end is not None else "running"
        rps, tps = stage.rates(now)
        drained_for = now - stage.window_end if phase == "draining" and stage.window_end is not None else None
        limit = None
        if stage.limited:
            limit = _SHORT.get(stage.limited.most_common(1)[0][0])
        return ProgressSnapshot(
            phase=phase,
            index=len(self._order),
            planned_stages=planned,
            may_stop_early=early,
            stage=label,
            elapsed_s=now - stage.start if stage.start is not None else 0.0,
            planned_s=stage.duration_s,
            draining_s=drained_for,
            requests=stage.requests,
            errors=stage.errors,
            rate_limited=sum(stage.limited.values()),
            limit=limit,
            req_per_s=rps,
            output_tok_per_s=tps,
            ttft_p50_s=stage.ttft.median(),
        )


def _duration(seconds: float) -> str:
    """``7s``, ``1m05s``, ``1h02m``: whole units, as a clock would show them."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rate(value: float | None, unit: str) -> str:
    if value is None:
        return f"– {unit}"
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def describe(p: ProgressSnapshot) -> list[str]:
    """The progress line's parts, most important first (a narrow terminal drops parts from the end)."""
    of = "?" if p.planned_stages is None else f"{'≤' if p.may_stop_early else ''}{p.planned_stages}"
    if p.phase == "starting":
        return [f"stage 0/{of} starting the load engine ({_duration(p.elapsed_s)})"]
    timing = _duration(p.elapsed_s) + (f"/{_duration(p.planned_s)}" if p.planned_s is not None else "")
    if p.phase != "running":
        timing = f"{_duration(p.planned_s)}/{_duration(p.planned_s)}" if p.planned_s is not None else timing
        timing += f" draining {_duration(p.draining_s or 0.0)}" if p.phase == "draining" else " done"
    limited = f"{p.rate_limited} 429s" + (f" ({p.limit})" if p.limit else "")
    ttft = format_ms(p.ttft_p50_s) + ("" if p.ttft_p50_s is None else " ms")
    return [
        f"stage {p.index}/{of} {p.stage} {timing}",
        f"{p.requests:,} req, {p.errors:,} errors, {limited}",
        _rate(p.req_per_s, "req/s"),
        _rate(p.output_tok_per_s, "out tok/s"),
        f"TTFT p50 {ttft}",
    ]
