"""The self-contained HTML report: one file from one or several run directories, byte-identical for the same
input (:func:`render_html`). :mod:`~reports.html.collect` reads and analyses a run, :mod:`~reports.html.charts`
draws, :mod:`~reports.html.page` lays out (and escapes), :mod:`~reports.html.compare` compares runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadtest import __version__
from loadtest.rundir import REPORT_FILE
from loadtest.spec.runspec import PlanRequest
from reports.html.answer import answer_lines
from reports.html.collect import RunView, collect_run
from reports.html.page import render_page

__all__ = ["REPORT_FILE", "RunView", "answer_lines", "collect_run", "render_html", "render_views"]


def render_html(run_dirs: Sequence[Path], replan: PlanRequest | None = None) -> str:
    """The report for ``run_dirs`` (one run, or several compared against the first). ``replan``: plan for its
    forecast and architectures (those it gives) instead of each run's own."""
    return render_views([collect_run(path, replan) for path in run_dirs])


def render_views(views: Sequence[RunView]) -> str:
    """The report for runs already collected (:func:`collect_run`)."""
    return render_page(views, __version__)
