"""docs/reliability.md's table, measured: each fault the simulator injects is recorded once per request sent, with
its error class, and the run ends as the table says; a worker killed in master/worker mode stops the run, keeping
every record the master received.

"Requests sent" is the simulator's own count of requests it received (``/sim/stats``), not the generator's."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from loadtest.rundir import RECORDS_FILE, read_manifest
from loadtest.sim import SimConfig, SimServer
from loadtest.sim.faults import FaultConfig
from tests.helpers import only_run_dir, run_cli, start_cli, wait_for

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
FAULTS = FaultConfig(
    http_429=0.1,
    http_500=0.08,
    http_503=0.05,
    stream_cut=0.08,
    garbage_line=0.08,
    error_event=0.05,
    stall=0.05,
    stall_s=1.0,
    seed=11,
)
# what each fault is recorded as: the simulator counts the faults it injected, the records their classes
CLASS_OF = {
    "http_429": "rate_limited",
    "http_500": "server_error",
    "http_503": "server_error",
    "error_event": "server_error",
    "stream_cut": "stream_cut",
    "garbage_line": "protocol",
    "stall": "timeout",  # the stall (1 s) outlasts --read-timeout 0.3s
}


def records_of(run_dir: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (run_dir / RECORDS_FILE).read_bytes().splitlines()]


@pytest.fixture
def faulty() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=3, faults=FAULTS)) as server:
        yield server


def test_each_injected_fault_is_one_record_of_its_class(faulty: SimServer, tmp_path: Path) -> None:
    proc = run_cli(
        "run", "--endpoint", faulty.url + "/v1", "-c", "8", "-d", "3s", "--max-tokens", "16",
        "--read-timeout", "0.3s", "--skip-preflight", "-q", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path)
    assert read_manifest(run_dir).status == "complete"
    records = records_of(run_dir)
    stats = faulty.stats()
    assert len(records) == stats["by_path"][CHAT] > 100  # one record per request sent, none twice
    injected = Counter({CLASS_OF[kind]: 0 for kind in CLASS_OF})
    for kind, n in stats["faults"].items():
        injected[CLASS_OF[kind]] += n
    recorded = Counter(str(r["error_class"]) for r in records if r["error_class"] is not None)
    assert recorded == +injected, (recorded, stats["faults"])
    assert all(injected[c] > 0 for c in CLASS_OF.values())  # every fault struck at least once
    ok = [r for r in records if r["error_class"] is None]
    assert len(ok) == stats["requests_completed"] - stats["faults"]["garbage_line"]  # garbage, then served


def test_a_429_storm_is_recorded_without_a_hot_loop_and_the_run_says_nothing_succeeded(
    tmp_path: Path,
) -> None:
    with SimServer(SimConfig(faults=FaultConfig(http_429=1.0))) as sim:
        proc = run_cli(
            "run", "--endpoint", sim.url + "/v1", "-c", "4", "-d", "2s", "--skip-preflight", "-q",
            "--out", str(tmp_path),
        )  # fmt: skip
        stats = sim.stats()
    run_dir = only_run_dir(tmp_path)
    records = records_of(run_dir)
    assert len(records) == stats["by_path"][CHAT] == stats["faults"]["http_429"]
    assert {r["error_class"] for r in records} == {"rate_limited"}
    assert all(r["retry_after_s"] == 1.0 for r in records)
    # no hot loop: each user backs off 25–50 ms, doubling, after each 429 — at most 8 requests each in 2 s (without
    # the back-off, 4 users sent 8,769)
    assert 8 <= len(records) <= 4 * 8
    # a 429 is an answer: the endpoint is alive, the run is not stopped; but no request succeeded
    assert read_manifest(run_dir).status == "complete"
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("loadtest: error: no request succeeded")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _is_worker(pid: int) -> bool:
    try:
        return b"--worker\x00" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_worker_killed_mid_run_stops_it_and_keeps_what_the_master_received(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=5)) as sim:
        cli = start_cli(
            "run", "--endpoint", sim.url + "/v1", "-c", "4", "-d", "30s", "--max-tokens", "16", "--processes",
            "2", "--skip-preflight", "-q", "--out", str(tmp_path),
        )  # fmt: skip
        try:
            assert wait_for(lambda: sim.stats()["requests_completed"] >= 40, timeout=60)
            workers = [p for p in _children(cli.pid) if _is_worker(p)]
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)
            killed = time.monotonic()
            _, err = cli.communicate(timeout=60)
            stopped_after = time.monotonic() - killed
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.communicate()
        sent = sim.stats()["by_path"][CHAT]  # counted on arrival; the run has ended
    assert cli.returncode == 1, err
    assert "Traceback" not in err and err.count("loadtest: error:") == 1, err
    line = err.strip().splitlines()[-1]
    assert " lost: no heartbeat for 3 s at " in line and "1 of 2 workers left" in line, line
    assert stopped_after < 15  # Locust's heartbeat window (3 s) plus the stage's close, not the 30 s stage
    run_dir = only_run_dir(tmp_path)
    manifest = read_manifest(run_dir)
    assert manifest.status == "failed" and manifest.failure is not None
    assert manifest.failure.kind == "worker_lost" and manifest.failure.stage == "concurrency@4"
    records = records_of(run_dir)  # every line whole
    assert f"{len(records):,} records kept" in line
    # lost with the killed worker: its in-flight requests (2 users) and what it had not yet forwarded (≤ 100 ms)
    assert 0 <= sent - len(records) <= 6, (sent, len(records))
    assert len({r["worker"] for r in records}) == 2


def test_an_engine_killed_mid_run_keeps_every_record_it_wrote(tmp_path: Path) -> None:
    with SimServer(SimConfig(seed=7)) as sim:
        cli = start_cli(
            "run", "--endpoint", sim.url + "/v1", "-c", "4", "-d", "30s", "--max-tokens", "16",
            "--skip-preflight", "-q", "--out", str(tmp_path),
        )  # fmt: skip
        try:
            assert wait_for(lambda: sim.stats()["requests_completed"] >= 40, timeout=60)
            (engine,) = _children(cli.pid)
            os.kill(engine, signal.SIGKILL)
            _, err = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.communicate()
        sent = sim.stats()["by_path"][CHAT]
    assert cli.returncode == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("loadtest: error: the load engine failed (exit -9)")
    run_dir = only_run_dir(tmp_path)
    assert read_manifest(run_dir).status == "failed"
    records = records_of(run_dir)  # every line whole: each completed request is written at once
    assert 0 <= sent - len(records) <= 4  # only the 4 users' in-flight requests are lost
    assert (run_dir / "report.html").exists()
