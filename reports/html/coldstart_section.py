"""The report's cold-start section: for each burst after an idle stage, its measures and its timeline
(:mod:`analysis.coldstart`; definitions in docs/metrics.md)."""

from __future__ import annotations

from analysis.coldstart import ColdStart
from reports.coldstart_text import cold_start_facts
from reports.html.blocks import table
from reports.html.charts import cold_start_chart, figure_html
from reports.html.collect import RunView

__all__ = ["cold_start_section"]


def _table(cs: ColdStart) -> str:
    return table(["measure", "value"], cold_start_facts(cs), text=(0, 1))


def cold_start_section(view: RunView, vid: str) -> str:
    """Empty when the run has no burst after an idle stage."""
    if not view.cold_starts:
        return ""
    parts = [
        f"{_table(cs)}{figure_html(cold_start_chart(f'{vid}-cold-start-{n}', cs))}"
        for n, cs in enumerate(view.cold_starts)
    ]
    intro = (
        '<p class="note">What the first requests after idle cost: times from the burst\'s first request; an '
        "endpoint that scaled to zero while idle answers late, or with errors, until its replicas are up.</p>"
    )
    return f'<section id="{vid}-cold-start"><h3>Cold start</h3>{intro}{"".join(parts)}</section>'
