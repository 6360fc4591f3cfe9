"""``loadtest export RUN``: a run's raw records as one Parquet or CSV file for notebooks and BI tools (the table is
built by :mod:`reports.export`).

Where it goes: ``RUN/records.parquet`` or ``RUN/records.csv`` by default, ``-o FILE`` elsewhere, ``-o -`` to stdout
(CSV only: Parquet is binary and needs a file). An existing file is never replaced without ``--force``; the file is
written beside its final name and renamed into place, so an interrupted export leaves no half file behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from loadtest.cli.options import write_atomically
from loadtest.errors import ConfigError

if TYPE_CHECKING:
    from reports.export import ExportFormat

__all__ = ["export"]


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv"]), required=True, help="The file format."
)
@click.option(
    "-o",
    "--out",
    "out",
    metavar="FILE",
    help="Where to write (default: RUN/records.parquet or RUN/records.csv; '-' for stdout, CSV only).",
)
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
def export(run_dir: Path, fmt: ExportFormat, out: str | None, force: bool) -> None:
    """Write a run's raw records as one table: every record field, the derived per-request metrics (ttft_s,
    tpot_s, e2e_s, lag_s, ...) and each request's chunk gaps summarised (gap_count, itl_mean_s, itl_p50_s,
    itl_p99_s, itl_max_s); Parquet keeps the gaps themselves too, as a list<float32> column (chunk_gaps).
    """
    target = None if out == "-" else Path(out) if out else run_dir / f"records.{fmt}"
    if target is None and fmt == "parquet":
        raise ConfigError("parquet is binary: give a file to write it to (-o FILE)")
    if target is not None and target.exists() and not force:
        raise ConfigError(f"{target} exists (--force replaces it)")

    from analysis import SKIPPED_LINES, load_run, require_records
    from reports.export import export_table, write_export

    data = require_records(load_run(run_dir))
    table = export_table(data, fmt)
    if target is None:
        _write_stdout(lambda stream: write_export(table, fmt, stream))
    else:
        write_atomically(target, lambda path: write_export(table, fmt, str(path)))
        click.echo(f"wrote {table.num_rows:,} records to {target}", err=True)
    if data.skipped_lines:
        click.echo(f"note: {data.skipped_lines} {SKIPPED_LINES}", err=True)


def _write_stdout(write: Callable[[BinaryIO], None]) -> None:
    """Write to stdout; a reader that stops early (``| head``) ends the export quietly."""
    try:
        write(sys.stdout.buffer)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
