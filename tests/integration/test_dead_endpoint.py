"""A dead endpoint stops the run: killed mid-stage (refused from then on), or answering only 5xx; users back off
meanwhile, everything recorded is kept, and the run says when and why. ``--abort-after off`` keeps going."""

from __future__ import annotations

import html
import os
import re
import signal
import time
from pathlib import Path

import orjson
import pytest

from loadtest.rundir import RECORDS_FILE, read_manifest
from loadtest.runner.simproc import SimulatorProcess
from tests.helpers import only_run_dir, run_cli, start_cli, wait_for

pytestmark = pytest.mark.slow

UNREACHABLE = re.compile(
    r"^loadtest: error: endpoint unreachable for (\d+) s from \d\d:\d\d:\d\d \(stage (\S+): ([\d,]+) requests, "
    r"every one failed to connect or got no response; last: connection failed: \w+\): stopped; ([\d,]+) records "
    r"kept in (\S+)$"
)
FAILING = re.compile(
    r"^loadtest: error: endpoint failing for (\d+) s from \d\d:\d\d:\d\d \(stage concurrency@4: ([\d,]+) "
    r"requests, every one answered with a 5xx; last: HTTP 503.*\): stopped; ([\d,]+) records kept in (\S+)$"
)


def records_of(run_dir: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (run_dir / RECORDS_FILE).read_bytes().splitlines()]


def error_line(stderr: str) -> str:
    """The run's one error line: the last on stderr, the only one saying ``error:``, no traceback."""
    assert "Traceback" not in stderr and stderr.count("loadtest: error:") == 1, stderr
    return stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "load", [("-c", "16"), ("-r", "100", "--max-concurrency", "16")], ids=["closed", "open"]
)
def test_an_endpoint_killed_mid_stage_stops_the_run_without_a_hot_loop(
    tmp_path: Path, load: tuple[str, ...]
) -> None:
    sim = SimulatorProcess(["--seed", "1"])
    url = sim.start()
    cli = None
    try:
        cli = start_cli(
            "run", "--endpoint", url + "/v1", *load, "-d", "30s", "--abort-after", "3s", "--max-tokens", "4",
            "--skip-preflight", "-q", "--out", str(tmp_path),
        )  # fmt: skip
        assert wait_for(lambda: any(tmp_path.iterdir()), timeout=30)
        run_dir = only_run_dir(tmp_path)
        lines = run_dir / RECORDS_FILE
        assert wait_for(lambda: lines.exists() and lines.read_bytes().count(b"\n") >= 50, timeout=30)
        assert sim.proc is not None
        killed_at = time.time()
        os.kill(sim.proc.pid, signal.SIGKILL)  # the endpoint dies: its port refuses from now on
        _out, stderr = cli.communicate(timeout=90)
    finally:
        sim.stop()
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 3, stderr
    found = UNREACHABLE.match(error_line(stderr))
    assert found is not None, stderr
    seconds, stage, _failed, kept, shown_dir = found.groups()
    assert 3 <= int(seconds) <= 4 and Path(shown_dir) == run_dir

    manifest = read_manifest(run_dir)
    failure = manifest.failure
    assert manifest.status == "failed" and failure is not None and manifest.engine_exit_code == 3
    assert (failure.kind, failure.after_s, failure.stage) == ("unreachable", 3.0, stage)
    assert killed_at - 0.5 < failure.since < killed_at + 1.0
    assert 3.0 <= failure.at - failure.since < 5.0  # stopped soon after the window, not at the stage's end
    records = records_of(run_dir)
    assert manifest.records == len(records) == int(kept.replace(",", ""))
    unreachable = [r for r in records if r["status"] is None and r["error_class"] == "connection"]
    assert sum(r["error_class"] is None for r in records) >= 50  # the requests before the kill are kept
    assert 16 <= len(unreachable) < 400  # backed off: 3,800 a second without (issue 12)
    assert manifest.stages is not None and manifest.stages[0].end is not None

    if "-r" in load:  # arrivals waited for a user backing off: the self-check says the load was not offered
        assert (manifest.stages[0].no_free_user or 0) + (manifest.stages[0].dropped or 0) > 0
    analyzed = run_cli("analyze", str(run_dir))
    assert analyzed.returncode == 0, analyzed.stderr
    assert f"note: the run was stopped: {failure.reason}" in analyzed.stderr
    assert f"the run was stopped: {failure.reason}" in analyzed.stdout
    if "-r" in load:
        assert (
            "waited for a free user or were dropped (the in-flight cap was reached, or users were backing off"
            in (analyzed.stdout)
        )
    report = (run_dir / "report.html").read_text()
    assert f"This run was <strong>stopped</strong>: {html.escape(failure.reason)}" in report


def test_a_stage_answering_only_5xx_stops_the_run_with_master_and_workers(tmp_path: Path) -> None:
    scenario = tmp_path / "failing.toml"
    scenario.write_text(
        '[simulator]\nfaults = { http_503 = 1.0 }\n[load]\nconcurrency = [4]\nduration = "30s"\nabort_after = "2s"\n'
    )
    out = tmp_path / "runs"
    started = time.monotonic()
    proc = run_cli("run", str(scenario), "--processes", "2", "-q", "--out", str(out), timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 25  # not the stage's 30 s
    found = FAILING.match(error_line(proc.stderr))
    assert found is not None, proc.stderr
    run_dir = only_run_dir(out)
    manifest = read_manifest(run_dir)
    assert manifest.status == "failed" and manifest.failure is not None
    assert (manifest.failure.kind, manifest.failure.after_s) == ("server_error", 2.0)
    assert manifest.records == len(records_of(run_dir)) == int(found.group(3).replace(",", ""))
    workers = {str(r["worker"]).split("-")[0] for r in records_of(run_dir)}
    assert workers == {"worker0", "worker1"}  # both workers' records reached the master, which decided
    assert "stopped: endpoint failing for 2 s" in proc.stdout  # the answer's first line


def test_abort_after_off_keeps_going(tmp_path: Path) -> None:
    scenario = tmp_path / "failing.toml"
    scenario.write_text(
        '[simulator]\nfaults = { http_503 = 1.0 }\n[load]\nconcurrency = [4]\nduration = "3s"\nabort_after = "1s"\n'
    )
    out = tmp_path / "runs"
    proc = run_cli("run", str(scenario), "--abort-after", "off", "-q", "--out", str(out), timeout=120)
    assert proc.returncode == 3, proc.stderr  # no request succeeded: the run says so, as before
    assert "no request succeeded" in error_line(proc.stderr)
    manifest = read_manifest(only_run_dir(out))
    assert manifest.status == "complete" and manifest.failure is None and manifest.spec.abort_after_s is None
    (window,) = manifest.stages or ()
    assert window.start is not None and window.window_end is not None
    assert window.window_end - window.start >= 3.0  # the whole stage ran
