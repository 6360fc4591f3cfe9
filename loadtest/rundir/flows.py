"""``flows.jsonl``: one line per flow of a Python scenario, written when the flow ends (``docs/scenarios-python.md``).

A flow is one run of a user's task: the calls it makes are request records (``records.jsonl``) carrying its
``flow_id`` and their ``step_index``; this line says what only the flow knows — which user class and task it was,
when the task began and ended, how many calls it made and how it ended:

``ok``          the task returned
``failed``      a call failed and the task did not catch it (:class:`loadtest.flows.CallFailed`): the endpoint's
                doing; ``error_detail`` names the step and the call's error
``error``       the task raised anything else: the scenario's own bug; ``error_detail`` is the exception, ``where``
                the file and line in the module where it was raised
``cancelled``   the run stopped it (Ctrl-C, or a stage that did not drain in time)

Flow latency is measured from the records (first call's start to last call's end, ``docs/metrics.md``); the task's
own ``started_at`` / ``ended_at`` here include the think time before the first call and after the last.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal, get_args

import orjson

from loadtest.client.records import json_lines

__all__ = [
    "FLOWS_FILE",
    "FLOW_FIELDS",
    "FLOW_OUTCOMES",
    "FlowOutcome",
    "FlowRecord",
    "dump_flow",
    "read_flows",
]

FLOWS_FILE: Final = "flows.jsonl"
FlowOutcome = Literal["ok", "failed", "error", "cancelled"]
FLOW_OUTCOMES: Final[tuple[str, ...]] = get_args(FlowOutcome)


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One flow, as written when it ended. Token counts sum its calls' usage (calls without usage count 0)."""

    run_id: str
    flow_id: str
    user: str
    task: str
    stage: str
    worker: str
    scheduled_at: float
    started_at: float
    ended_at: float
    calls: int
    prompt_tokens: int
    output_tokens: int
    outcome: FlowOutcome
    error_detail: str | None = None
    where: str | None = None


FLOW_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(FlowRecord))


def dump_flow(flow: FlowRecord) -> bytes:
    """One JSON line with its newline."""
    return orjson.dumps({name: getattr(flow, name) for name in FLOW_FIELDS}) + b"\n"


def _flow(raw: dict[str, Any]) -> FlowRecord:
    values: dict[str, Any] = {name: raw.get(name) for name in FLOW_FIELDS}
    return FlowRecord(**values)


def read_flows(run_dir: Path) -> Iterator[FlowRecord]:
    """The flows of a run directory in file order (none when it has no ``flows.jsonl``); a crash's unterminated
    last line is skipped."""
    path = run_dir / FLOWS_FILE
    if path.exists():
        yield from (_flow(raw) for raw in json_lines(path))
