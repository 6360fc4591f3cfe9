"""Outputs built from finished results only (never from a live runner)."""

from reports.analyze_output import AnalyzeReport, render_analysis, summary_json
from reports.console import (
    format_ms,
    render_capacity,
    render_load_table,
    render_predictions,
    render_quota_note,
    render_stage_table,
    render_summary_table,
    summary_csv_rows,
)

__all__ = [
    "AnalyzeReport",
    "format_ms",
    "render_analysis",
    "render_capacity",
    "render_load_table",
    "render_predictions",
    "render_quota_note",
    "render_stage_table",
    "render_summary_table",
    "summary_csv_rows",
    "summary_json",
]
