"""Helpers shared by the tests, one version of each: run the CLI as a user would (a child process), check a refusal
is one line, wait for a condition, find the run directory a run wrote, and build records and run directories by
hand, with manifests built by the run-directory contract's own types. Test modules import from here (or take
the fixtures in ``conftest.py``), never from one another."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.client.records import RequestRecord, dump_record
from loadtest.rundir import Host, Manifest, RunDistribution, SimulatedEndpoint, StageWindow
from loadtest.rundir.flows import FlowRecord, dump_flow
from loadtest.rundir.jsonshape import JsonObject
from loadtest.spec.pyscenario import PythonScenario
from loadtest.spec.runspec import RunSpec, Stage
from loadtest.spec.simulator import SimSettings

__all__ = [
    "BASE",
    "FLOW_ERROR",
    "FLOW_SLO",
    "ROOT",
    "SLO",
    "failed_call",
    "flow",
    "flow_call",
    "flow_example",
    "free_port",
    "jsonl",
    "manifest_dict",
    "one_a_second",
    "only_run_dir",
    "records",
    "refused",
    "run_cli",
    "sdk_time",
    "stage_rows",
    "start_cli",
    "two_stage_run",
    "wait_for",
    "window",
    "windows",
    "write_flow_run",
    "write_rows_run",
    "write_run",
]

ROOT = Path(__file__).resolve().parent.parent


# -- the CLI as a child process ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    *args: str, timeout: float = 120.0, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m loadtest ARGS`` in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
        stdin=subprocess.DEVNULL,
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m loadtest ARGS`` started in the background (text pipes), for tests that signal or pair it."""
    return subprocess.Popen(
        [sys.executable, "-m", "loadtest", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def refused(proc: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    """The command failed with ``code`` and one line on stderr, ``loadtest: error: …``, holding every one of
    ``parts``: no traceback, no "internal error"."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("loadtest: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


def only_run_dir(out: Path) -> Path:
    """The one run directory a run wrote under its ``--out`` directory ``out``."""
    runs = sorted(out.iterdir())
    assert len(runs) == 1, [p.name for p in runs]
    return runs[0]


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# -- records and run directories built by hand -------------------------------------------------------------------

BASE = RequestRecord(
    run_id="r1",
    stage="s1",
    request_class="chat",
    endpoint="http://x/v1/chat/completions",
    worker="w0",
    seq=0,
    scheduled_at=100.0,
    started_at=100.0,
    first_token_at=100.2,
    last_token_at=100.5,
    ended_at=101.0,
    status=200,
    error_class=None,
    error_detail=None,
    retry_after_s=None,
    prompt_tokens=20,
    output_tokens=11,
    token_source="usage",
    client_output_tokens=11,
    max_tokens=11,
    finish_reason="length",
    chunk_gaps=(0.01, 0.02, 0.03),
    server_request_id=None,
)
SLO = {"chat": {"ttft_p95": 0.5, "tpot_p50": 0.1}}


def records() -> list[RequestRecord]:
    """Eight records over two stages (s1, s2) and two classes (chat, batch), each with a known verdict against
    ``SLO``."""
    limited = "REQUEST_LIMIT_EXCEEDED: Exceeded workspace output tokens per minute rate limit"
    return [
        BASE,  # good: ttft 0.2, tpot (1.0 − 0.2) / 10 = 0.08
        replace(BASE, seq=1, first_token_at=100.8),  # ttft 0.8 > 0.5: not good
        replace(BASE, seq=2, ended_at=103.0, chunk_gaps=None),  # tpot 0.28 > 0.1: not good; unstreamed
        replace(BASE, seq=3, client_output_tokens=8),  # good; client count 27 % off usage
        replace(
            BASE,
            seq=4,
            first_token_at=None,
            error_class="rate_limited",
            status=429,
            error_detail=limited,
            retry_after_s=2.0,
            output_tokens=None,
            token_source=None,
            client_output_tokens=None,
            chunk_gaps=None,
        ),
        replace(
            BASE, seq=5, error_class="stream_cut", error_detail="cut", chunk_gaps=(9.0,), first_token_at=100.1
        ),
        # another class and stage
        replace(
            BASE,
            seq=6,
            request_class="batch",
            stage="s2",
            started_at=200.0,
            scheduled_at=199.9,
            first_token_at=200.3,
            ended_at=202.0,
            chunk_gaps=None,
        ),
        replace(
            BASE,
            seq=7,
            request_class="chat",
            stage="s2",
            started_at=200.0,
            scheduled_at=200.0,
            first_token_at=200.1,
            ended_at=201.0,
            chunk_gaps=(0.5, 0.5),
        ),
    ]


def jsonl(recs: list[RequestRecord]) -> bytes:
    return b"".join(dump_record(r) for r in recs)


def write_run(tmp_path: Path, lines: bytes, slo: dict[str, dict[str, float]] | None = None) -> Path:
    """``tmp_path/run``: ``lines`` as its records, a manifest with the classes chat (``slo``, default ``SLO``) and
    batch and the stages s1 and s2."""
    run = tmp_path / "run"
    run.mkdir(parents=True)
    manifest = manifest_dict(
        classes={"chat": (slo or SLO)["chat"], "batch": {}},
        stage_labels=("s1", "s2"),
        stages=[{"label": "s1", "target": {"kind": "concurrency"}}, {"label": "s2"}],
    )
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    (run / "records.jsonl").write_bytes(lines)
    return run


def stage_rows(
    label: str,
    n: int,
    duration: float,
    ttft: float | np.ndarray,
    out_tokens: int = 101,
    t0: float = 0.0,
    error_class: str | None = None,
    errors: int = 0,
    detail: str | None = None,
) -> list[dict[str, Any]]:
    """``n`` requests that all start at ``t0`` and end at ``t0 + duration``: req/s = ok / duration and, by Little's
    law, in-flight = n (Σ e2e / duration)."""
    ttfts = np.broadcast_to(np.asarray(ttft, dtype="float64"), (n,))
    rows = []
    for i in range(n):
        failed = i < errors
        rows.append(
            {
                "stage": label,
                "request_class": "chat",
                "scheduled_at": t0,
                "started_at": t0,
                "first_token_at": None if failed else t0 + float(ttfts[i]),
                "ended_at": t0 + duration,
                "error_class": error_class if failed else None,
                "error_detail": detail if failed else None,
                "prompt_tokens": None if failed else 10,
                "output_tokens": None if failed else out_tokens,
                "client_output_tokens": None if failed else out_tokens,
                "token_source": None if failed else "usage",
                "chunk_gaps": None,
                "retry_after_s": None,
            }
        )
    return rows


def write_rows_run(
    run: Path, rows: list[dict[str, Any]], manifest: Mapping[str, Any], prompt_tokens: int, worker: str = "w0"
) -> Path:
    """The run directory ``run`` holding ``rows`` (from ``stage_rows``; ``prompt_tokens`` on each that did not
    fail, numbered in order) and ``manifest``."""
    run.mkdir(parents=True)
    lines = b"".join(
        orjson.dumps(
            {
                **row,
                "prompt_tokens": None if row["error_class"] else prompt_tokens,
                "seq": n,
                "run_id": "r",
                "worker": worker,
            }
        )
        + b"\n"
        for n, row in enumerate(rows)
    )
    (run / "records.jsonl").write_bytes(lines)
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    return run


def two_stage_run(
    tmp_path: Path, simulator: dict[str, object] | None, rps: tuple[float, ...] = (10, 20)
) -> Path:
    """``tmp_path/run`` with two closed-loop stages of 200 requests (1000 in + 100 out each): TTFT 0.2 s then 0.6 s
    against an SLO of ttft_p95 = 0.4 s, so X* is interpolated halfway. Its endpoint is the simulator with the
    settings ``simulator``, or an endpoint when None."""
    rows = []
    for i, (rate, ttft) in enumerate(zip(rps, (0.2, 0.6), strict=True)):
        rows += stage_rows(f"s{i}", 200, 200 / rate, ttft, out_tokens=100, t0=1000.0 * i)
    manifest = manifest_dict(
        format=1,
        classes={"chat": {"ttft_p95": 0.4}},
        stage_labels=(),
        stages=[{"label": "s0"}, {"label": "s1"}],
        simulator=simulator,
    )
    return write_rows_run(tmp_path / "run", rows, manifest, prompt_tokens=1000)


def manifest_dict(
    *,
    classes: Mapping[str, Mapping[str, float]] | None = None,
    stage_labels: Iterable[str] = ("s1",),
    stages: list[dict[str, Any]] | None = None,
    simulator: Mapping[str, Any] | None = None,
    status: str = "complete",
    **top: Any,
) -> dict[str, Any]:
    """A complete format-2 manifest as a dict: ``classes`` ``{name: slo}`` (default one ``chat`` class without
    SLOs), spec stages named ``stage_labels``, the stage windows ``stages`` (raw dicts, as written), a simulator
    target with the given settings (else an endpoint run); ``top`` replaces top-level keys."""
    spec = RunSpec(
        run_id="r1",
        name="test",
        out_dir="runs/r1",
        endpoint=EndpointSpec(base_url="http://127.0.0.1:9/v1", model="m"),
        request_classes=tuple(
            RequestClass(name=name, slo=dict(slo)) for name, slo in (classes or {"chat": {}}).items()
        ),
        stages=tuple(
            Stage(kind="concurrency", users=1, duration_s=1.0, name=label) for label in stage_labels
        ),
    )
    manifest = Manifest(
        format=2,
        run_id="r1",
        name="test",
        status=status,
        seed=0,
        created_at=0.0,
        command=("loadtest", "run"),
        versions={},
        host=Host("test", 1),
        spec=spec,
        simulator=SimulatedEndpoint(SimSettings.from_mapping(simulator), 0)
        if simulator is not None
        else None,
        distribution=RunDistribution(1, 0),
    )
    out = manifest.to_dict()
    if stages is not None:
        out["stages"] = stages
    out.update(top)
    return out


def flow(flow_id: str, outcome: str, started: float, ended: float, calls: int, **kw: Any) -> FlowRecord:
    """A flow line of stage s1 (user ``Chat``, task ``talk``); ``kw`` sets its other fields."""
    fields: dict[str, Any] = {"prompt_tokens": 0, "output_tokens": 0, "stage": "s1", **kw}
    return FlowRecord(
        run_id="r1",
        flow_id=flow_id,
        user="Chat",
        task="talk",
        worker="w0",
        scheduled_at=started,
        started_at=started,
        ended_at=ended,
        calls=calls,
        outcome=outcome,  # type: ignore[arg-type]
        **fields,
    )


FLOW_SLO = {"flow_e2e_p95": 5.0, "attainment": 0.5}
FLOW_ERROR = "ValueError: <script>alert(1)</script>"


def flow_call(
    flow_id: str, step: str, index: int, started: float, ended: float, **kw: object
) -> RequestRecord:
    """A successful call of ``flow_id``: its first token 0.1 s after its start."""
    fields: dict[str, object] = {"first_token_at": started + 0.1, "chunk_gaps": None, **kw}
    return replace(
        BASE,
        flow_id=flow_id,
        request_class=step,
        step_index=index,
        started_at=started,
        scheduled_at=started,
        ended_at=ended,
        **fields,  # type: ignore[arg-type]
    )


def failed_call(record: RequestRecord, error_class: str, status: int) -> RequestRecord:
    """``record`` failed with ``error_class`` and HTTP ``status`` (no first token, no output)."""
    return replace(record, error_class=error_class, status=status, first_token_at=None, output_tokens=None)  # type: ignore[arg-type]


def flow_example() -> tuple[list[RequestRecord], list[FlowRecord]]:
    """Six flows of stage s1 and one call of a seventh that never wrote its line (tests/unit/test_flows.py
    works out every figure of them)."""
    recs = [
        # w0/1 ok: embed 100.0–100.5, answer 101.0–103.0 → latency 3.0
        flow_call("w0/1", "embed", 0, 100.0, 100.5, seq=1),
        flow_call("w0/1", "answer", 1, 101.0, 103.0, seq=2, prompt_tokens=80, cached_tokens=60),
        # w0/2 ok: turn 0 104–105; turn 1 answered 429 at 105.5–105.6, retried 107–108; turn 2 108.5–110 → 6.0
        flow_call("w0/2", "turn", 0, 104.0, 105.0, seq=3),
        failed_call(flow_call("w0/2", "turn", 1, 105.5, 105.6, seq=4), "rate_limited", 429),
        flow_call("w0/2", "turn", 1, 107.0, 108.0, seq=4, attempt=1),
        flow_call("w0/2", "turn", 2, 108.5, 110.0, seq=5),
        # w0/3 failed: its embed failed with a 503
        failed_call(flow_call("w0/3", "embed", 0, 111.0, 111.2, seq=6), "server_error", 503),
        # w0/4 error: the scenario raised after a successful embed
        flow_call("w0/4", "embed", 0, 112.0, 112.4, seq=7),
        # w0/5 cancelled before any call; w0/6 says 2 calls but only step 0 is recorded → 1.0
        flow_call("w0/6", "turn", 0, 113.0, 114.0, seq=8),
        # an orphan: w0/9 has no line (the run stopped before its flow ended)
        flow_call("w0/9", "turn", 0, 120.0, 121.0, seq=9),
    ]
    flows = [
        flow("w0/1", "ok", 99.5, 103.5, 2, prompt_tokens=100, output_tokens=20),
        flow("w0/2", "ok", 103.8, 110.2, 3, prompt_tokens=300, output_tokens=60),
        flow("w0/3", "failed", 110.8, 111.3, 1, error_detail="embed: server_error"),
        flow("w0/4", "error", 111.9, 112.5, 1, error_detail=FLOW_ERROR, where="my_flow.py:42"),
        flow("w0/5", "cancelled", 115.0, 115.5, 0),
        flow("w0/6", "ok", 112.8, 119.5, 2, prompt_tokens=50, output_tokens=10),
    ]
    return recs, flows


def write_flow_run(
    run: Path,
    recs: Iterable[RequestRecord],
    flows: Iterable[FlowRecord],
    slo: Mapping[str, float] | None = None,
    stages: list[dict[str, Any]] | None = None,
    classes: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """The run directory ``run`` of a Python scenario (``my_flow.py``, flow SLO ``slo``): ``recs`` as its records,
    ``flows`` as its ``flows.jsonl``, the stage windows ``stages`` (default: stage s1, no target: a closed loop),
    the steps ``classes`` ``{name: slo}`` (default one ``chat`` step without SLOs)."""
    run.mkdir(parents=True)
    manifest = manifest_dict(classes=classes, stage_labels=(), stages=stages or [{"label": "s1"}])
    manifest["spec"]["python"] = PythonScenario("my_flow.py", "", slo=dict(slo or {})).to_dict()
    (run / "manifest.json").write_bytes(orjson.dumps(manifest))
    (run / "records.jsonl").write_bytes(jsonl(list(recs)))
    (run / "flows.jsonl").write_bytes(b"".join(dump_flow(f) for f in flows))
    return run


def write_flow_stages(run: Path, scale: Mapping[str, float], slo: Mapping[str, float] | None = None) -> Path:
    """A flow run (:func:`write_flow_run`) with, per stage (label: scale), 100 ok flows of one call each, flow i
    (1 … 100) taking i / 10 × scale seconds (p95 9.505 s × scale), then 4 failed flows, 1 error flow and 2 cancelled
    ones (no calls); flow SLO ``slo``."""
    recs: list[RequestRecord] = []
    flows: list[FlowRecord] = []
    for label, k in scale.items():
        for i in range(1, 101):
            fid, start = f"{label}/{i}", 1000.0 + 20.0 * i
            recs.append(flow_call(fid, "turn", 0, start, start + i / 10 * k, stage=label, seq=len(recs)))
            flows.append(flow(fid, "ok", start - 0.1, start + i / 10 * k + 0.1, 1, stage=label))
        for j, outcome in enumerate(["failed"] * 4 + ["error", "cancelled", "cancelled"]):
            flows.append(flow(f"{label}/x{j}", outcome, 900.0 + j, 900.5 + j, 0, stage=label))
    return write_flow_run(run, recs, flows, slo, stages=[{"label": label} for label in scale])


def window(raw: Mapping[str, Any]) -> StageWindow:
    """A stage window from its manifest form (``{"label": "s1", "target": {"kind": "rate", "rate": 4.0}}``)."""
    return StageWindow.read(JsonObject(raw, Path("manifest.json"), "stages[0]."))


def windows(raws: Iterable[Mapping[str, Any]]) -> list[StageWindow]:
    return [window(raw) for raw in raws]


def one_a_second(label: str, lag: float = 0.0) -> Any:
    """A typed frame of 100 requests of stage ``label``, one due every second from 0, each started ``lag`` after
    it was due, 0.1 s to its first token, 1 s long (5 prompt and 10 output tokens)."""
    import pandas as pd

    from analysis.frame import with_metrics

    rows = [
        {
            "stage": label,
            "scheduled_at": float(i),
            "started_at": i + lag,
            "first_token_at": i + lag + 0.1,
            "ended_at": i + lag + 1.0,
            "error_class": None,
            "output_tokens": 10,
            "prompt_tokens": 5,
        }
        for i in range(100)
    ]
    return with_metrics(pd.DataFrame(rows))


# -- the Databricks SDK's clock ------------------------------------------------------------------------------------


def sdk_time(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], float]) -> None:
    """Make the Databricks SDK's OAuth tokens age by ``clock`` (epoch seconds) instead of the wall clock: its token
    expiry and staleness read ``datetime.now()`` in ``databricks.sdk.oauth``. Token refreshes then run in the
    calling thread (``DATABRICKS_DISABLE_ASYNC_TOKEN_REFRESH``), so a test sees them at once."""
    from datetime import datetime, tzinfo

    import databricks.sdk.oauth

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> FakeDatetime:
            return cls.fromtimestamp(clock(), tz)

    monkeypatch.setattr(databricks.sdk.oauth, "datetime", FakeDatetime)
    monkeypatch.setenv("DATABRICKS_DISABLE_ASYNC_TOKEN_REFRESH", "true")
