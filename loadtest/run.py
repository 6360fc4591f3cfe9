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
from loadtest.runspec import RunSpec

__all__ = ["RunOutcome", "execute_run", "new_run_dir", "read_events", "write_manifest"]

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
            )
            entry.update({k: ev[k] for k in keep if k in ev})
    for entry in stages.values():
        if "start" in entry and "end" in entry:
            wall = entry["end"] - entry["start"]
            entry["generator_cpu_share"] = (
                (entry["cpu_end_s"] - entry["cpu_start_s"]) / wall if wall > 0 else None
            )
    return list(stages.values())


def execute_run(
    spec: RunSpec,
    run_dir: Path,
    *,
    target: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """Run the engine for ``spec`` into ``run_dir`` and write ``manifest.json``. Never loses written records."""
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    spec.write(run_dir / "spec.json")
    manifest: dict[str, Any] = {
        "format": 1,
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
    }
    write_manifest(run_dir, manifest)
    log = (run_dir / "engine.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.engine", str(run_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
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
