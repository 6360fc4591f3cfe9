"""The report's server-metrics section: what the endpoint itself said per stage (queue, batch, KV cache,
preemptions, its token counts), where it came from and how the scraping went. Every text from the server or the run
is escaped (:func:`reports.html.blocks.table` escapes each cell)."""

from __future__ import annotations

from reports.html.blocks import escape as _e
from reports.html.blocks import table as _table
from reports.html.charts import figure_html, server_chart
from reports.html.collect import RunView
from reports.server_table import server_rows

__all__ = ["server_section"]


def server_section(view: RunView, vid: str) -> str:
    summary = view.server_metrics
    head = f'<section id="{vid}-server"><h3>Server metrics</h3>'
    if summary is None:
        return (
            f'{head}<p class="note">The run scraped no server metrics: the endpoint answered no /metrics with a '
            "known server's names, or <code>--server-metrics off</code>.</p></section>"
        )
    cost = ""
    if summary.duration_mean_s is not None and summary.cpu_mean_s is not None:
        cost = (
            f"; a scrape took {1000 * summary.duration_mean_s:.1f} ms on average "
            f"({1000 * summary.cpu_mean_s:.1f} ms of the CLI's CPU), never in the load engine"
        )
    about = (
        f"{_e(summary.server or 'unknown server')} at {_e(summary.source)}, "
        f"{summary.scrapes:,} scrapes about every {summary.interval_s:g} s{_e(cost)}."
    )
    failed = ""
    if summary.note is not None:
        failed = f'<p class="banner bad">{_e(summary.note)}</p>'
    evidence = ""
    if view.capacity.server_evidence:
        items = "".join(f"<li>{_e(e)}</li>" for e in view.capacity.server_evidence)
        evidence = f"<p>What the server's metrics say binds:</p><ul>{items}</ul>"
    rows = server_rows(summary.stages)
    body = _table(list(rows[0]), [list(r) for r in rows[1:]], text=(0,)) if len(rows) > 1 else ""
    note = (
        '<p class="note">Gauges (waiting, running, KV cache, Databricks\' per-minute counts and usage) are the mean '
        "and maximum over the stage's scrapes; counters (preemptions, the server's prompt and output tokens) their "
        "increase over the stage, per second. Definitions: docs/metrics.md, \u201cServer metrics\u201d.</p>"
    )
    chart = ""
    if view.timeline is not None:
        chart = figure_html(
            server_chart(
                f"{vid}-server-time",
                summary.series,
                view.timeline.start,
                view.stage_windows,
                view.timeline.t[-1] + view.timeline.bin_s / 2,
            )
        )
    return f"{head}<p>{about}</p>{failed}{evidence}{body}{note}{chart}</section>"
