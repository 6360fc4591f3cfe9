"""The endpoint's own metrics per stage as a table: the same rows for ``analyze``'s console output and the HTML
report (:mod:`reports.html.page`). Columns appear for the metrics the server exposed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from analysis.server_metrics import ServerMetricsSummary, ServerStageMetrics
from reports.console import format_number, text_table

__all__ = ["SERVER_COLUMNS", "render_server_metrics", "server_rows"]

_DASH: Final = "–"


def _num(digits: int) -> Callable[[float | None], str]:
    return lambda v: format_number(v, digits)


def _pct(v: float | None) -> str:
    """A share as a percentage; below 10 % with a decimal, so a cache in light use does not read as empty."""
    if v is None:
        return _DASH
    return f"{100 * v:.1f} %" if 0 < v < 0.1 else f"{100 * v:.0f} %"


# (header, key in ServerStageMetrics.values, format)
SERVER_COLUMNS: Final[tuple[tuple[str, str, Callable[[float | None], str]], ...]] = (
    ("waiting mean", "waiting_mean", _num(1)),
    ("waiting max", "waiting_max", _num(0)),
    ("running mean", "running_mean", _num(1)),
    ("running max", "running_max", _num(0)),
    ("KV cache mean", "kv_cache_usage_mean", _pct),
    ("KV cache max", "kv_cache_usage_max", _pct),
    ("preemptions", "preemptions", _num(0)),
    ("server prompt tok/s", "prompt_tokens_per_s", _num(0)),
    ("server output tok/s", "generation_tokens_per_s", _num(0)),
    ("requests/min", "requests_last_min_mean", _num(0)),
    ("4xx/min", "errors_4xx_last_min_mean", _num(0)),
    ("5xx/min", "errors_5xx_last_min_mean", _num(0)),
    ("provisioned concurrency", "provisioned_concurrency_max", _num(0)),
    ("CPU %", "cpu_usage_pct_mean", _num(0)),
    ("memory %", "mem_usage_pct_mean", _num(0)),
    ("GPU %", "gpu_usage_pct_mean", _num(0)),
    ("GPU memory %", "gpu_mem_usage_pct_mean", _num(0)),
)


def server_rows(stages: tuple[ServerStageMetrics, ...]) -> list[tuple[str, ...]]:
    """The header row, then one row per stage: stage, scrapes (failed), then each column some stage has."""
    used = [col for col in SERVER_COLUMNS if any(s.get(col[1]) is not None for s in stages)]
    rows: list[tuple[str, ...]] = [("stage", "scrapes", *(title for title, _, _ in used))]
    for s in stages:
        scrapes = f"{s.scrapes}" + (f" ({s.failed} failed)" if s.failed else "")
        rows.append((s.stage, scrapes, *(fmt(s.get(key)) for _, key, fmt in used)))
    return rows


def render_server_metrics(summary: ServerMetricsSummary | None) -> str | None:
    """``analyze``'s block on the server's metrics: where from, the table, failures; None when the run has none."""
    if summary is None:
        return None
    server = summary.server or "unknown server"
    lines = [f"server metrics ({server}, {summary.source}, {summary.scrapes} scrapes):"]
    if summary.stages:
        lines += text_table(server_rows(summary.stages))
    if summary.note is not None:
        lines.append(f"note: {summary.note}")
    return "\n".join(lines)
