"""``events.jsonl``: the engine's events, and the stage windows (:class:`StageWindow`) the manifest records from
them. The engine writes the events (:mod:`loadtest.engine.conduct`); the runner reads them for progress and for the
manifest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from loadtest.rundir.files import EVENTS_FILE
from loadtest.rundir.jsonshape import JsonObject
from loadtest.rundir.manifest import RunFailure, StageTarget, StageWindow

__all__ = ["read_events", "run_failure", "stage_windows"]


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """The events written so far, in order; a line cut by a crash is left out."""
    path = run_dir / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_bytes().splitlines():
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a line cut by a crash
    return events


def _target(raw: dict[str, Any] | None) -> StageTarget | None:
    """A ``stage_start`` event's target, read as the manifest's is (:meth:`StageTarget.read`)."""
    return None if raw is None else StageTarget.read(JsonObject(raw, Path(EVENTS_FILE), "target."))


def stage_windows(events: list[dict[str, Any]]) -> tuple[StageWindow, ...]:
    """One window per stage label, in the order the events first name it. ``generator_cpu_share``: the busiest
    worker's share when distributed (that is what can distort the measurement, not the master), else the engine's
    CPU seconds over the stage's wall time (``None`` for a stage of no wall time). The loop delay is the worst
    worker's, as the engine wrote it (``None`` in the events of a version before it measured one)."""
    stages: dict[str, StageWindow] = {}
    for ev in events:
        label = ev.get("stage")
        if not label:
            continue
        window = stages.get(label) or StageWindow(label=label)
        if ev["event"] == "stage_start":
            window = replace(window, start=ev["t"], cpu_start_s=ev["cpu_s"], target=_target(ev.get("target")))
        elif ev["event"] == "stage_window_end":
            window = replace(window, window_end=ev["t"])
        elif ev["event"] == "stage_end":
            window = replace(
                window,
                end=ev["t"],
                cpu_end_s=ev["cpu_s"],
                generator_rss_max_mb=ev.get("rss_max_mb"),
                records=ev.get("records"),
                flows=ev.get("flows"),
                arrivals=ev.get("arrivals"),
                dropped=ev.get("dropped"),
                no_free_user=ev.get("no_free_user"),
                inflight=ev.get("inflight"),
                drained=ev.get("drained"),
                workers=ev.get("workers"),
                worker_cpu_share_max=ev.get("worker_cpu_share_max"),
                loop_delay_p50_s=ev.get("loop_delay_p50_s"),
                loop_delay_p99_s=ev.get("loop_delay_p99_s"),
                loop_delay_max_s=ev.get("loop_delay_max_s"),
                final_rate=ev.get("final_rate"),
                expected_input=ev.get("expected_input"),
                expected_output=ev.get("expected_output"),
            )
        stages[label] = window
    out = []
    for window in stages.values():
        share = window.worker_cpu_share_max
        if share is None and window.start is not None and window.end is not None:
            wall = window.end - window.start
            cpu = (window.cpu_end_s or 0.0) - (window.cpu_start_s or 0.0)
            share = cpu / wall if wall > 0 else None
        out.append(replace(window, generator_cpu_share=share))
    return tuple(out)


def run_failure(events: list[dict[str, Any]]) -> RunFailure | None:
    """Why the engine stopped the run early (its ``run_aborted`` event), or ``None``."""
    for ev in events:
        if ev.get("event") == "run_aborted" and isinstance(ev.get("failure"), dict):
            return RunFailure.read(JsonObject(ev["failure"], Path(EVENTS_FILE), "run_aborted.failure."))
    return None
