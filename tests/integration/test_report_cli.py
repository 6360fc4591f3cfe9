"""``loadtest report`` and the report at the end of ``loadtest run``, as a user runs them: paths, the default
demo's answer, and one-line refusals."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from tests.helpers import only_run_dir, refused, run_cli, two_stage_run

SIM = {"architecture": "llama-3.1-8b", "gpu": "h100", "chunks": 1}


def test_report_writes_into_the_run_directory_by_default(tmp_path: Path) -> None:
    run = two_stage_run(tmp_path, SIM)
    proc = run_cli("report", str(run))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"report: {run / 'report.html'}\n"
    assert "max SLO-compliant throughput: 15.00 req/s" in (run / "report.html").read_text()


def test_several_runs_make_a_comparison_here(tmp_path: Path) -> None:
    a = two_stage_run(tmp_path / "a", SIM)
    b = two_stage_run(tmp_path / "b", SIM, rps=(20, 40))
    proc = run_cli("report", str(a), str(b), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "report: comparison.html\n"
    assert '<section id="comparison">' in (tmp_path / "comparison.html").read_text()


def test_a_new_forecast_replans_the_report(tmp_path: Path) -> None:
    run = two_stage_run(tmp_path, SIM)
    out = tmp_path / "r.html"
    proc = run_cli("report", str(run), "-o", str(out), "--peak-tpm", "2500000", "--arch", "llama-3.3-70b")
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "Forecast: peak 2,500,000 tokens/min" in page
    # without -o, a replanned report goes beside the run's own, never over it
    own = run_cli("report", str(run))
    assert own.returncode == 0, own.stderr
    again = run_cli("report", str(run), "--peak-tpm", "2500000", "--arch", "llama-3.3-70b")
    assert again.stdout == f"report: {run / 'report-replanned.html'}\n"
    assert "Forecast: peak 2,500,000" not in (run / "report.html").read_text()
    assert (run / "report-replanned.html").read_text() == page
    assert "<td>llama-3.3-70b</td>" in page and "<td>llama-3.1-8b</td>" in page
    # an hourly shape: the band autoscales, the intro says so
    shaped = run_cli(
        "report", str(run), "-o", str(out), "--peak-tpm", "2500000", "--profile", "business-hours"
    )
    assert shaped.returncode == 0, shaped.stderr
    assert "hourly profile business-hours: mean 28% of the peak; token bands autoscale" in out.read_text()


def test_report_refusals_are_one_line(tmp_path: Path) -> None:
    run = two_stage_run(tmp_path, SIM)
    refused(run_cli("report", str(tmp_path / "nope")), 2, "no run directory at")
    refused(run_cli("report", str(run), "--peak-tpm", "1", "--peak-rps", "1"), 2, "not both")
    refused(run_cli("report", str(run), str(run)), 2, "named twice")
    refused(run_cli("report", str(run), "-o", str(tmp_path / "no" / "dir.html")), 2, "cannot write")
    refused(run_cli("report", str(run), "--arch", "llama-9"), 2, "llama-9")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--slo", "ttft_p95"), "--slo takes [SCOPE:]METRIC<LIMIT"),
        (("--slo", "speed_p95<1s"), "unknown SLO 'speed_p95'"),
        (("--slo", "ttft_p95<fast"), "ttft_p95"),
        (("--slo", "goodput>=high"), "a share is a percentage or a fraction"),
        (("--slo", "tpot_p50<50"), "give the limit a unit, e.g. tpot_p50<50ms"),
        (("--slo", "ttft_p95<1s", "--slo", "ttft_p95<2s"), "--slo ttft_p95 is given twice"),
        (("--slo", "rag:ttft_p95<1s"), "no request class 'rag' (classes: chat)"),
        (("--peak-tpm", "1", "--peak-rps", "1"), "not both"),
    ],
)
def test_run_refuses_bad_slos_and_forecasts_before_starting(flags: tuple[str, ...], message: str) -> None:
    refused(run_cli("run", *flags), 2, message)


@pytest.mark.slow
def test_the_default_run_ends_in_a_report_with_a_verdict_and_a_plan(tmp_path: Path) -> None:
    proc = run_cli("run", "-c", "1,16", "-d", "2s", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    run = only_run_dir(tmp_path)
    # the terminal's verdict is the report's, word for word
    verdict = next(line for line in proc.stdout.splitlines() if line.startswith("verdict: "))
    assert html.escape(verdict.removeprefix("verdict: "), quote=True) in (run / "report.html").read_text()
    assert (run / "report.html").stat().st_mode & 0o044  # readable by others, as the umask allows
    assert f"report: {run / 'report.html'}" in proc.stdout
    # the terminal ends in the same answer as the report's first screen
    assert "verdict: max SLO-compliant throughput: " in proc.stdout
    assert re.search(r"^plan: Provision (at most )?llama-3\.1-8b — measured", proc.stdout, re.MULTILINE)
    page = (run / "report.html").read_text()
    assert "SLOs: chat: tpot_p50 ≤ 50.0 ms, ttft_p95 ≤ 200 ms" in page
    assert "max SLO-compliant throughput" in page
    assert re.search(r"Provision (at most )?llama-3\.1-8b — measured", page)
    assert "example forecast — set yours with --peak-tpm" in page
