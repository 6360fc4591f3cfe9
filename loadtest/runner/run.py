"""Run orchestration in the CLI process: run directory, manifest, the engine subprocess, Ctrl-C.

The engine (Locust, gevent) always runs in a child process so that this process, the analysis and the reports
never import gevent. Children are started in their own session, so a terminal's Ctrl-C reaches only this process,
which then stops them in order (engine first, so in-flight requests are recorded as cancelled, then the simulator).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtest.client.scrub import public_argv
from loadtest.errors import EXIT_INTERRUPTED, ConfigError
from loadtest.rundir import (
    ENGINE_LOG,
    FORMAT,
    RECORDS_FILE,
    SPEC_FILE,
    Host,
    Manifest,
    RunDistribution,
    RunFailure,
    SimulatedEndpoint,
    read_events,
    run_failure,
    stage_windows,
    write_manifest,
)
from loadtest.runner.scrape import MetricsPlan, scraping
from loadtest.spec.processes import usable_cpus
from loadtest.spec.runspec import RunSpec

__all__ = ["ENGINE_MODULE", "Distribution", "RunOutcome", "execute_run", "new_run_dir", "serve_as_worker"]

ENGINE_MODULE = "loadtest.engine"  # the child: python -m loadtest.engine


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_dir: Path
    status: str  # "complete" | "interrupted" | "failed"
    engine_exit_code: int | None
    records: int
    failure: RunFailure | None = None  # the engine stopped the run: a dead endpoint, a lost worker ("failed")


def new_run_dir(out: Path, name: str, now: dt.datetime | None = None) -> Path:
    """``out/<YYYYmmdd-HHMMSS>-<name>``, made unique with a suffix if it exists."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    candidate = out / f"{stamp}-{slug}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = out / f"{stamp}-{slug}-{n}"
    return candidate


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("llm-loadtest", "locust", "gevent", "httpx", "numpy", "pandas"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


@dataclass(frozen=True, slots=True)
class Distribution:
    """How many processes send the load (see :func:`execute_run`)."""

    processes: int = 1
    expect_workers: int = 0
    bind_host: str = "127.0.0.1"
    port: int = 0
    auto: bool = False  # processes is what --processes auto chose (loadtest.spec.processes)

    @property
    def distributed(self) -> bool:
        return self.processes > 1 or self.expect_workers > 0


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host if host not in ("*", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def execute_run(
    spec: RunSpec,
    run_dir: Path,
    *,
    simulator: SimulatedEndpoint | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
    distribution: Distribution | None = None,
    tick: Callable[[], None] | None = None,
    metrics: MetricsPlan | None = None,
) -> RunOutcome:
    """Run the engine for ``spec`` into ``run_dir`` and write ``manifest.json``. Never loses written records.

    ``progress`` gets each new event of ``events.jsonl``; ``tick`` is called after them on every poll (every
    0.2 s) while the engine runs (the live progress line, :func:`loadtest.runner.live.watch`).

    ``distribution``: ``processes > 1`` starts a Locust master and that many local workers on 127.0.0.1;
    ``expect_workers`` starts only the master and waits for workers started elsewhere (``loadtest worker``).

    ``metrics``: the endpoint's metrics to scrape while the engine runs (:mod:`loadtest.runner.scrape`).
    """
    dist = distribution or Distribution()
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    spec.write(run_dir / SPEC_FILE)
    manifest = Manifest(
        format=FORMAT,
        run_id=spec.run_id,
        name=spec.name,
        status="running",
        seed=spec.seed,
        created_at=time.time(),
        command=public_argv([_program(), *sys.argv[1:]]),
        versions=_versions(),
        host=Host(platform=platform.platform(), cpus=os.cpu_count(), usable_cpus=usable_cpus()),
        spec=spec,
        simulator=simulator,
        distribution=RunDistribution(
            processes=dist.processes, expect_workers=dist.expect_workers, auto=dist.auto
        ),
    )
    write_manifest(run_dir, manifest)
    log = (run_dir / ENGINE_LOG).open("wb")
    child_env = {**os.environ, **(env or {})}

    def start(args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", ENGINE_MODULE, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=child_env,
        )

    workers: list[subprocess.Popen[bytes]] = []
    if dist.distributed:
        port = dist.port or _free_port(dist.bind_host)
        count = dist.expect_workers or dist.processes
        proc = start(
            [
                str(run_dir),
                "--master",
                "--workers",
                str(count),
                "--bind-host",
                dist.bind_host,
                "--port",
                str(port),
            ]
        )
        master = dataclasses.replace(manifest.distribution, master=f"{dist.bind_host}:{port}")
        manifest = dataclasses.replace(manifest, distribution=master)
        write_manifest(run_dir, manifest)
        if not dist.expect_workers:
            workers = [
                start(["--worker", "--master-host", "127.0.0.1", "--port", str(port)])
                for _ in range(dist.processes)
            ]
    else:
        proc = start([str(run_dir)])
    seen = 0
    status = "complete"
    scraper = ExitStack()  # the endpoint's metrics, scraped while the engine runs
    scraper.enter_context(scraping(metrics, run_dir))
    try:
        while proc.poll() is None:
            time.sleep(0.2)
            if progress is not None:
                events = read_events(run_dir)
                for ev in events[seen:]:
                    progress(ev)
                seen = len(events)
            if tick is not None:
                tick()
    except KeyboardInterrupt:
        status = "interrupted"
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=spec.drain_timeout_s + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    finally:
        scraper.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for worker in workers:  # they leave when the master quits; stop any that did not, by PID
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        log.close()
    code = proc.returncode
    if status == "complete" and code == EXIT_INTERRUPTED:
        status = "interrupted"
    elif status == "complete" and code != 0:
        status = "failed"
    events = read_events(run_dir)
    if progress is not None:
        for ev in events[seen:]:
            progress(ev)
    records = _count_lines(run_dir / RECORDS_FILE)
    failure = run_failure(events) if status != "interrupted" else None
    if failure is not None:
        status = "failed"  # the engine stopped it (exit 3 or 1): the failure says why, not its log
    tail = None
    if status == "failed" and failure is None:
        tail = tuple((run_dir / ENGINE_LOG).read_text(errors="replace").strip().splitlines()[-5:])
    manifest = dataclasses.replace(
        manifest,
        status=status,
        finished_at=time.time(),
        engine_exit_code=code,
        records=records,
        stages=stage_windows(events),
        engine_log_tail=tail,
        failure=failure,
    )
    write_manifest(run_dir, manifest)
    return RunOutcome(run_dir=run_dir, status=status, engine_exit_code=code, records=records, failure=failure)


def _program() -> str:
    """The command's name as the user typed it: ``loadtest`` also for ``python -m loadtest`` (whose ``argv[0]``
    is the package's ``__main__.py``)."""
    name = os.path.basename(sys.argv[0])
    return "loadtest" if name == "__main__.py" else name


def serve_as_worker(master_host: str, port: int) -> int:
    """Be one Locust worker for a master on another host (``loadtest worker``): the engine child in the
    foreground, until the master's run ends; its exit code."""
    args = [
        sys.executable,
        "-m",
        ENGINE_MODULE,
        "--worker",
        "--master-host",
        master_host,
        "--port",
        str(port),
    ]
    return subprocess.run(args, check=False).returncode
