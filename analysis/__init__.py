"""Pure analysis of finished runs: records → per-stage summaries (and, later, capacity and recommendations)."""

from analysis.frame import RunData, load_records, load_run, with_metrics
from analysis.summary import PERCENTILES, StageSummary, percentiles, summarize_stages

__all__ = [
    "PERCENTILES",
    "RunData",
    "StageSummary",
    "load_records",
    "load_run",
    "percentiles",
    "summarize_stages",
    "with_metrics",
]
