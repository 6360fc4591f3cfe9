"""Pure analysis of finished runs: records → per-stage summaries (and, later, capacity and recommendations)."""

from analysis.frame import RunData, load_records, load_run, with_metrics
from analysis.load_check import DEFAULT_MAX_LAG_S, StageLoad, check_load
from analysis.summary import (
    LIMIT_TYPES,
    PERCENTILES,
    StageSummary,
    limit_type,
    percentiles,
    summarize_stages,
)

__all__ = [
    "DEFAULT_MAX_LAG_S",
    "LIMIT_TYPES",
    "PERCENTILES",
    "RunData",
    "StageLoad",
    "StageSummary",
    "check_load",
    "limit_type",
    "load_records",
    "load_run",
    "percentiles",
    "summarize_stages",
    "with_metrics",
]
