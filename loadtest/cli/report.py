"""``loadtest report RUN [RUN ...]``: the self-contained HTML report of a run, or of several runs compared
(:mod:`reports.html`), rebuilt from their run directories at any time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from loadtest.cli.options import MAX_PEAK_RPS, MAX_PEAK_TPM, Bounded, write_atomically
from loadtest.errors import ConfigError
from loadtest.spec.profile import SHAPES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reports.html import RunView

__all__ = ["REPLANNED_FILE", "report", "write_report"]

REPLANNED_FILE = "report-replanned.html"


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the HTML (default: RUN/report.html for one run — RUN/report-replanned.html with "
    "--peak-tpm, --peak-rps, --peak-fps or --arch — and comparison.html here for several).",
)
@click.option(
    "--peak-tpm",
    type=Bounded(0, MAX_PEAK_TPM),
    default=None,
    help="Plan for this forecast peak (total tokens/min) instead of the run's.",
)
@click.option(
    "--peak-rps",
    type=Bounded(0, MAX_PEAK_RPS),
    default=None,
    help="Plan for this forecast peak in requests/s instead of the run's.",
)
@click.option(
    "--peak-fps",
    type=Bounded(0, MAX_PEAK_RPS),
    default=None,
    help="Plan for this forecast peak in flows/s instead of the run's (a Python scenario's run: converted with "
    "its measured requests and tokens per flow).",
)
@click.option(
    "--profile",
    type=click.Choice(SHAPES),
    default=None,
    help="Plan for this hourly shape of the forecast instead of the run's.",
)
@click.option(
    "--arch",
    "architectures",
    multiple=True,
    help="Also estimate this architecture in the plan (repeatable; replaces the run's list).",
)
def report(
    run_dirs: tuple[Path, ...],
    out_file: Path | None,
    peak_tpm: float | None,
    peak_rps: float | None,
    peak_fps: float | None,
    architectures: tuple[str, ...],
    profile: str | None,
) -> None:
    """Write the HTML report of RUN: what was run, the verdict, validity, capacity, plan, charts and tables.

    Several RUNs are compared against the first: capacity curves on one chart and a table of the key figures.
    The same run directories always give the same bytes.
    """
    from loadtest.model.catalog import check_architecture
    from loadtest.rundir import REPORT_FILE
    from loadtest.spec.runspec import PlanRequest, one_peak

    for arch in architectures:
        check_architecture(arch, "--arch")
    one_peak(
        {"--peak-tpm": peak_tpm, "--peak-rps": peak_rps, "--peak-fps": peak_fps}, "give the forecast peak as "
    )
    if len(set(run_dirs)) != len(run_dirs):
        raise ConfigError("a run directory is named twice")
    if peak_fps is not None:
        from analysis.flow_data import has_flows, no_flows
        from loadtest.spec.runspec import NO_FLOWS_INSTEAD

        for run_dir in run_dirs:
            if run_dir.is_dir() and not has_flows(run_dir):
                raise no_flows("--peak-fps", run_dir, NO_FLOWS_INSTEAD)
    replan = None
    if (
        peak_tpm is not None
        or peak_rps is not None
        or peak_fps is not None
        or architectures
        or profile is not None
    ):
        replan = PlanRequest(
            peak_tokens_per_min=peak_tpm,
            peak_requests_per_s=peak_rps,
            peak_flows_per_s=peak_fps,
            architectures=architectures,
            profile=profile,
        )
    if out_file is None and len(run_dirs) > 1:
        out_file = Path("comparison.html")
    elif out_file is None:  # a replanned report never replaces the run's own
        out_file = run_dirs[0] / (REPLANNED_FILE if replan is not None else REPORT_FILE)
    from reports.html import collect_run

    write_report([collect_run(path, replan) for path in run_dirs], out_file)
    click.echo(f"report: {out_file}")


def write_report(views: Sequence[RunView], out_file: Path) -> None:
    """Render and write the report of runs collected with :func:`reports.html.collect_run`; a file that cannot
    be written is a one-line error (exit 2)."""
    from reports.html import render_views

    text = render_views(views).encode("utf-8")

    def write(path: Path) -> None:
        path.write_bytes(text)

    write_atomically(out_file, write)
