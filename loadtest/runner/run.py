"""Run orchestration in the CLI process: run directory, manifest, the engine subprocess, Ctrl-C.

The engine (Locust, gevent) always runs in a child process so that this process, the analysis and the reports
never import gevent. Children are started in their own session, so a terminal's Ctrl-C reaches only this process,
which then stops them in order (engine first, so in-flight requests are recorded as cancelled, then the simulator).
"""

from __future__ import annotations

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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from loadtest.errors import ConfigError
from loadtest.spec.runspec import RunSpec

__all__ = ["Distribution", "RunOutcome", "execute_run", "new_run_dir", "read_events", "write_manifest"]

ENGINE_EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_dir: Path
    status: str  # "complete" | "interrupted" | "failed"
    engine_exit_code: int | None
    records: int


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
    for dist in ("llm-loadtest", "locust", "geventhttpclient", "httpx", "numpy", "pandas"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_bytes().splitlines():
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a line cut by a crash
    return events


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = run_dir / "manifest.json.tmp"
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(tmp, run_dir / "manifest.json")


def _stage_windows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = {}
    for ev in events:
        label = ev.get("stage")
        if not label:
            continue
        entry = stages.setdefault(label, {"label": label})
        if ev["event"] == "stage_start":
            entry.update(start=ev["t"], cpu_start_s=ev["cpu_s"], target=ev.get("target"))
        elif ev["event"] == "stage_window_end":
            entry.update(window_end=ev["t"])
        elif ev["event"] == "stage_end":
            entry.update(end=ev["t"], cpu_end_s=ev["cpu_s"], generator_rss_max_mb=ev.get("rss_max_mb"))
            keep = (
                "drained",
                "inflight",
                "records",
                "dropped",
                "arrivals",
                "no_free_user",
                "final_rate",
                "expected_input",
                "expected_output",
                "workers",
                "worker_cpu_share_max",
            )
            entry.update({k: ev[k] for k in keep if k in ev})
    for entry in stages.values():
        if entry.get("worker_cpu_share_max") is not None:
            # distributed: the busiest worker is what can distort the measurement, not the master
            entry["generator_cpu_share"] = entry["worker_cpu_share_max"]
        elif "start" in entry and "end" in entry:
            wall = entry["end"] - entry["start"]
            entry["generator_cpu_share"] = (
                (entry["cpu_end_s"] - entry["cpu_start_s"]) / wall if wall > 0 else None
            )
    return list(stages.values())


@dataclass(frozen=True, slots=True)
class Distribution:
    """How many processes send the load (see :func:`execute_run`)."""

    processes: int = 1
    expect_workers: int = 0
    bind_host: str = "127.0.0.1"
    port: int = 0

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
    target: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
    distribution: Distribution | None = None,
) -> RunOutcome:
    """Run the engine for ``spec`` into ``run_dir`` and write ``manifest.json``. Never loses written records.

    ``distribution``: ``processes > 1`` starts a Locust master and that many local workers on 127.0.0.1;
    ``expect_workers`` starts only the master and waits for workers started elsewhere (``loadtest worker``).
    """
    dist = distribution or Distribution()
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    spec.write(run_dir / "spec.json")
    manifest: dict[str, Any] = {
        "format": 2,  # 2: chunk_gaps in chunk_gaps.f32 (see loadtest.client.records)
        "run_id": spec.run_id,
        "name": spec.name,
        "status": "running",
        "seed": spec.seed,
        "created_at": time.time(),
        "command": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        "versions": _versions(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "spec": spec.to_public_dict(),
        "target": target or {},
        "distribution": {"processes": dist.processes, "expect_workers": dist.expect_workers},
    }
    write_manifest(run_dir, manifest)
    log = (run_dir / "engine.log").open("wb")
    child_env = {**os.environ, **(env or {})}

    def start(args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "loadtest.engine", *args],
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
        manifest["distribution"]["master"] = f"{dist.bind_host}:{port}"
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
    try:
        while proc.poll() is None:
            time.sleep(0.2)
            if progress is not None:
                events = read_events(run_dir)
                for ev in events[seen:]:
                    progress(ev)
                seen = len(events)
    except KeyboardInterrupt:
        status = "interrupted"
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=spec.drain_timeout_s + 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    finally:
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
    if status == "complete" and code == ENGINE_EXIT_INTERRUPTED:
        status = "interrupted"
    elif status == "complete" and code != 0:
        status = "failed"
    events = read_events(run_dir)
    if progress is not None:
        for ev in events[seen:]:
            progress(ev)
    records = _count_lines(run_dir / "records.jsonl")
    manifest.update(
        status=status,
        finished_at=time.time(),
        engine_exit_code=code,
        records=records,
        stages=_stage_windows(events),
    )
    if status == "failed":
        tail = (run_dir / "engine.log").read_text(errors="replace").strip().splitlines()[-5:]
        manifest["engine_log_tail"] = tail
    write_manifest(run_dir, manifest)
    return RunOutcome(run_dir=run_dir, status=status, engine_exit_code=code, records=records)
