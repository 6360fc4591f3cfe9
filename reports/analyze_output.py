"""What ``loadtest analyze`` prints (table, JSON or CSV) and the ``summary.json`` that ``loadtest run`` writes.

Built from finished results only: the CLI computes the summaries, the capacity answer and the predictions with
:mod:`analysis`, puts them in an :class:`AnalyzeReport` and writes the text :func:`render_analysis` returns. The
tables themselves are in :mod:`reports.console`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

from analysis.capacity import CapacityResult
from analysis.coldstart import ColdStart
from analysis.fit import LatencyPrediction
from analysis.flows import FlowAnalysis
from analysis.input_length import InputLengths
from analysis.server_metrics import ServerMetricsSummary
from analysis.summary import StageSummary
from analysis.validity import Validity
from reports.coldstart_text import render_cold_starts
from reports.console import render_capacity, render_predictions, render_summary_table, summary_csv_rows
from reports.flow_text import render_flows
from reports.input_table import render_input_lengths
from reports.server_table import render_server_metrics

__all__ = [
    "AnalyzeFormat",
    "AnalyzeReport",
    "analyze_csv",
    "analyze_json",
    "analyze_table",
    "render_analysis",
    "render_validity",
    "summary_json",
]

AnalyzeFormat = Literal["table", "json", "csv"]


@dataclass(frozen=True, slots=True)
class AnalyzeReport:
    """Everything ``loadtest analyze`` shows about one run.

    ``by`` is the grouping (``stage``, ``class`` or ``stage,class``); ``predicted`` whether ``--predict`` was given
    (its table is shown even when no prediction could be made); ``csv_header_from`` the per-stage summaries whose
    CSV header is written when ``summaries`` is empty (``--by class`` where no record names its class).
    """

    run_id: str
    status: str
    by: str
    slos: Mapping[str, Mapping[str, float]]
    skipped_lines: int
    summaries: Sequence[StageSummary]
    capacity: CapacityResult
    predictions: Sequence[LatencyPrediction | None] = ()
    predicted: bool = False
    csv_header_from: Sequence[StageSummary] = ()
    validity: Validity | None = None
    server_metrics: ServerMetricsSummary | None = (
        None  # the endpoint's own metrics, when the run scraped them
    )
    input_lengths: InputLengths | None = None  # asked vs served input length (analysis.input_length)
    cold_starts: Sequence[ColdStart] = ()  # the bursts after an idle stage (analysis.coldstart)
    flows: FlowAnalysis | None = None  # a Python scenario's flows (analysis.flows); None for a run without


def analyze_table(report: AnalyzeReport) -> str:
    """The summary table (or a note that no record names a request class), the capacity answer, the predictions."""
    parts = (
        [render_summary_table(report.summaries)] if report.summaries else ["no record names a request class"]
    )
    parts.append(render_capacity(report.capacity))
    if report.flows is not None:
        parts.append(render_flows(report.flows))
    server = render_server_metrics(report.server_metrics)
    if server is not None:
        parts.append(server)
    if report.cold_starts:
        parts.append(render_cold_starts(report.cold_starts))
    if report.predicted:
        parts.append(render_predictions(report.predictions))
    if report.input_lengths is not None:
        parts.append(render_input_lengths(report.input_lengths))
    if report.validity is not None:
        parts.append(render_validity(report.validity))
    return "\n\n".join(parts) + "\n"


def render_validity(validity: Validity) -> str:
    """Whether the run can be trusted: each item (``!`` when doubtful), then what would make a gate call it
    invalid (:mod:`analysis.validity`)."""
    lines = ["validity:"]
    lines += [f"  {'!' if doubtful else ' '} {label}: {text}" for label, text, doubtful in validity.items]
    if validity.invalid:
        lines.append("invalid for a gate over these stages (loadtest gate exits 98):")
        lines += [f"  - {problem}" for problem in validity.problems]
    else:
        lines.append("valid: a gate can judge every stage")
    return "\n".join(lines)


def analyze_json(report: AnalyzeReport) -> str:
    """One JSON document: run id and status, grouping, SLOs, skipped lines, summaries, capacity, predictions, the
    server's metrics and the input lengths (``null`` when the run has none), the cold starts (``[]`` when none):
    every key always there — but ``flows``, a Python scenario's flows (:mod:`analysis.flows`), written only for a
    run that has them."""
    payload = {
        "run_id": report.run_id,
        "status": report.status,
        "by": report.by,
        "slos": report.slos,
        "skipped_lines": report.skipped_lines,
        "summaries": [s.to_dict() for s in report.summaries],
        "capacity": report.capacity.to_dict(),
        "predictions": [p.to_dict() for p in report.predictions if p is not None],
        "server_metrics": report.server_metrics.to_dict() if report.server_metrics is not None else None,
        "input_length": report.input_lengths.to_dict() if report.input_lengths is not None else None,
        "cold_starts": [c.to_dict() for c in report.cold_starts],
    }
    if report.flows is not None:
        payload["flows"] = report.flows.to_dict()
    if report.validity is not None:
        payload["validity"] = {
            "invalid": report.validity.invalid,
            "problems": [{"stage": p.stage, "text": p.text} for p in report.validity.problems],
            "items": [
                {"label": label, "text": text, "doubtful": doubtful}
                for label, text, doubtful in report.validity.items
            ],
        }
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"


def analyze_csv(report: AnalyzeReport) -> str:
    """One row per summary (:func:`~reports.console.summary_csv_rows`); columns in order of first appearance.

    With no summary at all there is still a header: the per-stage one of ``csv_header_from``."""
    rows = summary_csv_rows(report.summaries)
    header_rows = [] if rows else summary_csv_rows(report.csv_header_from)[:1]
    names: list[str] = [k for row in header_rows for k in row]
    for row in rows:
        names += [k for k in row if k not in names]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def render_analysis(report: AnalyzeReport, fmt: AnalyzeFormat) -> str:
    """The text ``loadtest analyze --format FMT`` writes."""
    if fmt == "json":
        return analyze_json(report)
    if fmt == "csv":
        return analyze_csv(report)
    return analyze_table(report)


def summary_json(summaries: Sequence[StageSummary]) -> bytes:
    """``summary.json`` of a run directory: ``{"stages": [summary, ...]}``, indented."""
    payload = {"stages": [s.to_dict() for s in summaries]}
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2)
