"""A forecast in flows per second, converted with what a run of a Python scenario measured per flow
(``docs/plan.md``, "A peak in flows per second").

The basis is every flow of the run that ended ``ok``, over all its stages — the same basis as the plan's per-request
mix (:func:`analysis.measured.mean_mix`: every successful request of the run):

* **requests per flow** = the records carrying those flows' ids (every attempt: a retry is a request sent) / the
  number of those flows;
* **tokens per flow** = the mean of those flows' prompt + output tokens (``flows.jsonl``: the sums of their calls'
  usage).

A flow that failed or was cancelled stops early: its calls say nothing of what a task costs when it completes, which
is what a forecast of tasks per second asks for.
"""

from __future__ import annotations

from pathlib import Path

from analysis.flow_data import has_flows, no_flows, read_flow_calls, read_flow_table
from analysis.forecast import FlowPeak
from loadtest.errors import ConfigError
from loadtest.rundir import Manifest
from loadtest.rundir.flows import FLOWS_FILE
from loadtest.spec.runspec import NO_FLOWS_INSTEAD

__all__ = ["flow_peak"]


def flow_peak(run_dir: Path, flows_per_s: float, manifest: Manifest | None = None) -> FlowPeak:
    """``flows_per_s`` with the run's measured requests and tokens per ``ok`` flow (the module docstring);
    :class:`~loadtest.errors.ConfigError` in one line when the run has no flows or none ended ``ok``."""
    if not has_flows(run_dir, manifest):
        raise no_flows("a peak in flows/s", run_dir, NO_FLOWS_INSTEAD)
    table = read_flow_table(run_dir)
    ok = table.outcome == "ok"
    n = int(ok.sum())
    if n == 0:
        raise ConfigError(
            f"a peak in flows/s is converted with the run's flows that ended ok: {run_dir} has none "
            f"({len(table)} flows in {FLOWS_FILE})"
        )
    calls = read_flow_calls(run_dir, table)
    joined = calls.flow[calls.flow >= 0]
    requests = int(ok[joined].sum())
    tokens = float((table.prompt_tokens[ok] + table.output_tokens[ok]).mean())
    if tokens <= 0:
        raise ConfigError(
            f"a peak in flows/s is converted with the tokens per flow: {run_dir}'s ok flows report no usage"
        )
    return FlowPeak(
        flows_per_s=flows_per_s,
        requests_per_flow=requests / n,
        tokens_per_flow=tokens,
        flows=n,
        run=run_dir.name,
    )
