"""The report's flow section, for a run of a Python scenario (:mod:`analysis.flows`; definitions in docs/metrics.md,
"Flows"): flow latency per stage and its chart against the stage's load, the outcomes, the flow SLO's verdict with
its basis, the per-step table, the scenario's errors and the join check. Empty for a run without flows. Every
text from the run — stage and step names, the scenario's exception messages — is escaped (:func:`~reports.html
.blocks.table` escapes each cell, :func:`~reports.html.blocks.escape` the rest)."""

from __future__ import annotations

import numpy as np

from analysis.flows import FlowAnalysis, flow_slo_limits
from reports.flow_text import (
    ERRORS_SHOWN,
    STAGE_HEADER,
    STEP_HEADER,
    check_line,
    join_line,
    slo_text,
    stage_cells,
    step_cells,
)
from reports.html.blocks import escape as _e
from reports.html.blocks import table as _table
from reports.html.charts import SLO_COLOR, Chart, figure_html, figure_svg, new_figure
from reports.html.collect import RunView

__all__ = ["flow_chart", "flow_section"]

_SHOWN = ("p50", "p95", "p99")


def flow_chart(key: str, flows: FlowAnalysis) -> Chart | None:
    """Flow latency p50, p95 and p99 per stage against the stage's completed flows/s, with the flow SLO's
    thresholds; None with fewer than two stages that have both (one point is no curve)."""
    points = [
        (s.flows_per_s, s.latency) for s in flows.stages if s.flows_per_s is not None and s.latency.get("p50")
    ]
    if len(points) < 2:
        return None
    points.sort(key=lambda p: p[0])
    with new_figure(key, 2.6) as (fig, (ax,)):
        xs = np.array([x for x, _ in points])
        for n, pct in enumerate(_SHOWN):
            ys = np.array(
                [np.nan if lat.get(pct) is None else lat[pct] for _, lat in points], dtype="float64"
            )
            ax.plot(xs, ys, marker="o", markersize=3.5, color=f"C{n}", label=f"flow latency {pct}")
        for slo_key, _, limit in flow_slo_limits(flows.slo):
            ax.axhline(limit, color=SLO_COLOR, linestyle="--", linewidth=1.0)
            ax.annotate(
                f"SLO {slo_key}",
                (1.0, limit),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=6.5,
                color=SLO_COLOR,
            )
        ax.set_xlabel("completed flows/s (ended ok)")
        ax.set_ylabel("flow latency (s)")
        ax.set_ylim(bottom=0)
        ax.set_xlim(left=0)
        fig.legend(loc="outside lower center", ncols=len(_SHOWN), frameon=False)
        svg = figure_svg(fig, key)
    return Chart(
        key,
        "Flow latency against load",
        "Each point is a stage: the flows it completed per second against its flows' latency percentiles (first "
        "call's start to last call's end, over the flows that ended ok); a red line is the flow SLO.",
        svg,
    )


def _errors(flows: FlowAnalysis) -> str:
    if not flows.error_flows:
        return ""
    rows = [[e.where or "–", e.detail or "–", f"{e.count:,}"] for e in flows.errors[:ERRORS_SHOWN]]
    more = flows.error_groups - ERRORS_SHOWN
    tail = f'<p class="note">… and {more:,} other place(s) or message(s).</p>' if more > 0 else ""
    return (
        f"<h4>Scenario errors</h4><p>{flows.error_flows:,} flow(s) ended with an exception raised by the scenario "
        "itself (outcome <code>error</code>), by place and message, the most frequent first:</p>"
        f"{_table(['where', 'message', 'flows'], rows, text=(0, 1), cls='errors')}{tail}"
    )


def _join(flows: FlowAnalysis) -> str:
    text = _e(join_line(flows.join))
    if flows.join.is_exact:
        return f'<p class="note">Join check: {text}.</p>'
    return (
        f'<p class="banner bad">Join check: {text}. The figures above count every flow line and every record; '
        "those that do not join are not dropped.</p>"
    )


def flow_section(view: RunView, vid: str) -> str:
    """Empty when the run has no flows (and its flows could be read)."""
    head = f'<section id="{vid}-flows"><h3>Flows</h3>'
    if view.flows is None:
        return (
            ""
            if view.flows_note is None
            else f'{head}<p class="banner bad">{_e(view.flows_note)}</p></section>'
        )
    flows = view.flows
    intro = (
        '<p class="note">A flow is one run of a user\'s task (a conversation, a retrieval and its answer, an agent '
        "loop). Flow latency runs from its first call's start to its last call's end (retries included, think "
        "time before the first call and after the last not); latencies, calls and tokens per flow are over the "
        "flows that ended ok; flows/s and goodput over the stage's flows' span; attainment = good flows / those "
        f"that ended, cancelled ones left out. Flow SLO: {_e(slo_text(flows))}. Definitions: docs/metrics.md, "
        "\u201cFlows\u201d.</p>"
    )
    stage_table = _table(list(STAGE_HEADER), [list(stage_cells(s)) for s in flows.stages], text=(0, -1))
    checks = [check_line(s, c) for s in flows.stages for c in s.checks]
    verdicts = (
        "<h4>Flow SLO</h4><ul>" + "".join(f"<li>{_e(line)}</li>" for line in checks) + "</ul>"
        if checks
        else ""
    )
    chart = figure_html(flow_chart(f"{vid}-flow-latency", flows))
    steps = ""
    if flows.steps:
        steps = (
            '<h4>Per step</h4><p class="note">Each step is a request class: its requests (retries included), '
            "TTFT and E2E in ms over the successful ones, the mean share of their prompt served from the prefix "
            "cache where the server reported it.</p>"
            + _table(list(STEP_HEADER), [list(step_cells(s)) for s in flows.steps], text=(0,))
        )
    body = stage_table if flows.stages else "<p>No flow ended.</p>"
    return f"{head}{intro}{body}{verdicts}{chart}{steps}{_errors(flows)}{_join(flows)}</section>"
