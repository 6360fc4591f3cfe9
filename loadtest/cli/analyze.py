"""``loadtest analyze RUN``: a run directory's summaries, capacity and predictions again, at any time, as a
table, JSON or CSV (formatted by :mod:`reports.analyze_output`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from loadtest.cli.options import numbers as _numbers
from loadtest.errors import ConfigError

if TYPE_CHECKING:
    from reports.analyze_output import AnalyzeFormat

__all__ = ["analyze"]


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.option(
    "--by",
    type=click.Choice(["stage", "class", "stage,class"]),
    default="stage",
    show_default=True,
    help="Group the summary by stage, by request class, or by both.",
)
@click.option(
    "--out", "out_file", type=click.Path(path_type=Path), help="Write to this file instead of stdout."
)
@click.option(
    "--predict",
    "predict_at",
    multiple=True,
    metavar="RPS[,RPS...]",
    help="Predict TPOT and E2E at these arrival rates from the run's TPOT fit and Little's law (flagged when "
    "beyond twice the measured range).",
)
def analyze(
    run_dir: Path, fmt: AnalyzeFormat, by: str, out_file: Path | None, predict_at: tuple[str, ...]
) -> None:
    """Summarise a run directory: throughput, latency percentiles, goodput, errors, and capacity.

    Goodput counts requests that meet every SLO of their class (the scenario's [class.slo]); capacity gives the
    highest SLO-compliant throughput over the run's stages, the knee, saturation and the binding limit.
    """
    from analysis import (
        SKIPPED_LINES,
        check_load,
        class_slos,
        load_run,
        predict,
        require_records,
        summarize_stages,
    )
    from analysis.coldstart import cold_starts
    from analysis.flows import flows_of_run
    from analysis.input_length import input_lengths
    from analysis.scan import open_scan, summarize_scan
    from analysis.server_metrics import server_metrics_of
    from analysis.validity import assess
    from reports import AnalyzeReport, render_analysis

    # the summaries and capacity, which read the chunk gaps, stage by stage out of core (a soak's ten million
    # records are 2.2 GB of gaps); every other step from the frame without the gaps and the request ids
    scan = open_scan(run_dir)
    order = scan.manifest.stage_order
    slos = class_slos(scan.manifest.spec.request_classes)
    result = summarize_scan(scan, slos, order, by_stage=by == "stage,class")
    del scan  # its memory-mapped gaps and stage frames go before the frame is read
    data = require_records(load_run(run_dir, gaps=False, request_ids=False))
    summaries = {"stage": result.stages, "class": result.classes, "stage,class": result.classes_by_stage}[by]
    capacity = result.capacity
    assert capacity is not None  # summarize_scan computes it unless asked not to
    loads = check_load(data.records, data.manifest.stages or ())
    validity = assess(data.manifest, list(result.stages), loads, data.records, data.skipped_lines, capacity)
    predictions = [predict(capacity, rate) for rate in _numbers(predict_at, "--predict", float)]
    report = AnalyzeReport(
        run_id=data.manifest.run_id,
        status=data.manifest.status,
        by=by,
        slos=slos,
        skipped_lines=data.skipped_lines,
        summaries=list(summaries),
        capacity=capacity,
        predictions=predictions,
        predicted=bool(predict_at),
        # no group at all (e.g. --by class where no record names its class): the CSV header is the per-stage one
        csv_header_from=summarize_stages(data.records, order) if fmt == "csv" and not summaries else (),
        validity=validity,
        server_metrics=server_metrics_of(run_dir, data.manifest.stages or ()),
        input_lengths=input_lengths(data.records, order, data.manifest.spec.prompts),
        cold_starts=cold_starts(data.records, data.manifest.spec.stages, data.manifest.stages or ()),
        flows=flows_of_run(run_dir, data.manifest),
    )
    text = render_analysis(report, fmt)
    if out_file is not None:
        try:
            out_file.write_text(text)
        except OSError as exc:
            raise ConfigError(f"cannot write {out_file}: {exc.strerror}") from None
    else:
        click.echo(text, nl=False)
    if data.skipped_lines:
        click.echo(f"note: {data.skipped_lines} {SKIPPED_LINES}", err=True)
    if fmt != "table" and report.server_metrics is not None and report.server_metrics.note is not None:
        click.echo(f"note: {report.server_metrics.note}", err=True)
    status = data.manifest.status
    if data.manifest.failure is not None:
        click.echo(f"note: the run was stopped: {data.manifest.failure.reason}", err=True)
    elif status not in (None, "complete"):
        click.echo(f"note: the run is {status}: its last stage may be cut short", err=True)
