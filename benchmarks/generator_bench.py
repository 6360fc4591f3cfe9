"""How fast is the load generator, and how wrong are its clocks? (run by hand; results go in docs/performance.md)

    python benchmarks/generator_bench.py [--duration 10] [--users 64] [--timing-users 50,200] [--pin 0,1]
                                         [--baseline] [--rounds 1]

1. Ceiling: a cheap SSE server (benchmarks/sse_server.py) writes each 64-chunk response at once; the generator runs
   closed loop with ``--users`` users. Reports requests/s, SSE chunks/s, the engine's CPU share and peak RSS.
2. Timing error: the server paces chunks (TTFT 50 ms, ITL 20 ms) and records when it wrote each first content chunk;
   the error is the client's ``first_token_at`` minus that server truth (same host, same wall clock).

Both report the engine's event-loop delay over the stage (p50 / p99 / max, ms: how late a 10 ms timer woke), and
``inexact``: successful records that do not hold exactly the chunks the server sent (the client's count, the usage
count, one gap fewer) — 0 is the only right answer.

``--pin S,G`` runs the benchmark server on CPU ``S`` and ``loadtest run`` (its CLI and the engine child, which
inherit the mask) on CPU ``G`` with ``taskset``, so the two never share a core and the scheduler does not move them.

``--baseline`` runs bare Locust (``benchmarks/bare_locust.py``: a ``FastHttpUser`` reading the raw stream line by
line and ``json.loads``-ing each chunk) right after each of the project's runs, against the same server, pinned the
same way, and prints the ratios; ``--rounds N`` repeats the alternation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis import load_run  # noqa: E402
from loadtest.rundir import StageWindow  # noqa: E402
from loadtest.runner.simproc import ManagedProcess  # noqa: E402

PACED_TOKENS = 64  # a paced stream: 64 chunks, 1.3 s
PIN: dict[str, list[str]] = {"server": [], "generator": []}  # a taskset prefix per side (--pin)


def loadtest_run(url: str, out: Path, users: int, duration: float, tokens: int) -> Path:
    subprocess.run(
        [
            *PIN["generator"],
            sys.executable,
            "-m",
            "loadtest",
            "run",
            "--endpoint",
            url,
            "--model",
            "bench",
            "--skip-preflight",
            "-c",
            str(users),
            "-d",
            f"{duration}s",
            "--max-tokens",
            str(tokens),
            "--prompt-tokens",
            "8",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    (run_dir,) = out.iterdir()
    return run_dir


def loop_delay_ms(stage: StageWindow) -> dict[str, float]:
    """The engine's event-loop delay over the stage (``loadtest.engine.loopdelay``), in ms."""
    values = {"p50": stage.loop_delay_p50_s, "p99": stage.loop_delay_p99_s, "max": stage.loop_delay_max_s}
    return {f"loop_delay_ms_{k}": float("nan") if v is None else v * 1000 for k, v in values.items()}


def ceiling_server() -> ManagedProcess:
    """The benchmark server writing each 64-chunk response at once."""
    return ManagedProcess(
        [*PIN["server"], sys.executable, str(ROOT / "benchmarks" / "sse_server.py"), "--tokens", "64"],
        what="bench server",
    )


def inexact(ok: Any, tokens: int) -> int:
    """Successful records that do not say exactly what the server sent: ``tokens`` content chunks by the client's
    count and by usage, and one gap fewer."""
    gaps = ok["chunk_gaps"].map(lambda g: 0 if g is None else len(g))
    wrong = (ok["client_output_tokens"] != tokens) | (ok["output_tokens"] != tokens) | (gaps != tokens - 1)
    return int(wrong.sum())


def ceiling(users: int, duration: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ceiling_server() as server,
    ):
        run_dir = loadtest_run(server.url + "/v1", Path(tmp), users, duration, 64)
        data = load_run(run_dir)
        (stage, *_) = data.manifest.stages or ()
        df = data.records
        wall = df["ended_at"].max() - df["started_at"].min()
        ok = df[df["ok"]]
        return {
            "users": users,
            "requests": len(df),
            "errors": int((~df["ok"]).sum()),
            "inexact": inexact(ok, 64),
            "req_per_s": len(ok) / wall,
            "chunks_per_s": float(ok["client_output_tokens"].sum()) / wall,
            "engine_cpu_share": stage.generator_cpu_share,
            "req_per_s_per_core": len(ok) / wall / (stage.generator_cpu_share or float("nan")),
            "engine_rss_max_mb": stage.generator_rss_max_mb,
            **loop_delay_ms(stage),
        }


def paced_server(truth_file: Path) -> ManagedProcess:
    """The benchmark server pacing ``PACED_TOKENS`` chunks (TTFT 50 ms, then a chunk per 20 ms — one chunk per packet,
    as real servers pace tokens), writing its truth to ``truth_file``."""
    return ManagedProcess(
        [
            *PIN["server"],
            sys.executable,
            str(ROOT / "benchmarks" / "sse_server.py"),
            "--tokens",
            str(PACED_TOKENS),
            "--ttft-ms",
            "50",
            "--itl-ms",
            "20",
            "--truth",
            str(truth_file),
        ],
        what="bench server",
    )


def timing_error(users: int, duration: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        truth_file = Path(tmp) / "truth.json"
        server = paced_server(truth_file)
        server.start()
        try:
            run_dir = loadtest_run(server.url + "/v1", Path(tmp) / "runs", users, duration, PACED_TOKENS)
        finally:
            server.stop()
        truth = json.loads(truth_file.read_text())
        df = load_run(run_dir).records
        wrong = inexact(df[df["ok"]], PACED_TOKENS)
        df = df[df["ok"] & df["server_request_id"].isin(list(truth))]
        err_ms = (df["first_token_at"] - df["server_request_id"].map(truth).astype(float)).to_numpy() * 1000
        (stage, *_) = load_run(run_dir).manifest.stages or ()
        return {
            "users": users,
            "requests": len(df),
            "ttft_error_ms_p50": float(np.percentile(err_ms, 50)),
            "ttft_error_ms_p99": float(np.percentile(err_ms, 99)),
            "ttft_error_ms_max": float(err_ms.max()),
            "inexact": wrong,
            "engine_cpu_share": stage.generator_cpu_share or float("nan"),
            **loop_delay_ms(stage),
        }


def bare_run(url: str, users: int, duration: float, tokens: int, out: Path) -> dict[str, Any]:
    """Bare Locust (``benchmarks/bare_locust.py``) against ``url``: its requests and its process's CPU time."""
    proc = subprocess.run(
        [
            *PIN["generator"],
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "benchmarks" / "bare_locust.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{max(1, round(duration))}s",  # Locust takes whole seconds
            "--host",
            url,
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        check=False,  # locust exits 1 when a request failed; the counts say it
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "BARE_LOCUST_OUT": str(out), "BARE_LOCUST_TOKENS": str(tokens)},
    )
    if not out.exists():
        raise SystemExit(
            f"bare Locust wrote no results (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def bare_ceiling(users: int, duration: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ceiling_server() as server,
    ):
        got = bare_run(server.url, users, duration, 64, Path(tmp) / "bare.json")
    reqs = got["requests"]
    wall = max(r[3] for r in reqs) - min(r[1] for r in reqs)
    ok = sum(1 for r in reqs if r[4])
    share = got["cpu_s"] / got["wall_s"]
    return {
        "users": users,
        "requests": len(reqs),
        "errors": len(reqs) - ok,
        "req_per_s": ok / wall,
        "engine_cpu_share": share,
        "req_per_s_per_core": ok / wall / share,
    }


def bare_timing(users: int, duration: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        truth_file = Path(tmp) / "truth.json"
        server = paced_server(truth_file)
        server.start()
        try:
            got = bare_run(server.url, users, duration, PACED_TOKENS, Path(tmp) / "bare.json")
        finally:
            server.stop()
        truth = json.loads(truth_file.read_text())
    err_ms = np.array([(r[2] - float(truth[r[0]])) * 1000 for r in got["requests"] if r[4] and r[0] in truth])
    return {
        "users": users,
        "requests": len(err_ms),
        "ttft_error_ms_p50": float(np.percentile(err_ms, 50)),
        "ttft_error_ms_p99": float(np.percentile(err_ms, 99)),
        "ttft_error_ms_max": float(err_ms.max()),
        "engine_cpu_share": got["cpu_s"] / got["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--timing-users", default="50,200")
    parser.add_argument("--pin", metavar="S,G", help="taskset: the server on CPU S, loadtest run on CPU G")
    parser.add_argument("--baseline", action="store_true", help="bare Locust after each run, and the ratios")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if args.pin:
        server_cpu, generator_cpu = args.pin.split(",")
        PIN.update(server=["taskset", "-c", server_cpu], generator=["taskset", "-c", generator_cpu])
    for _ in range(args.rounds):
        ours = ceiling(args.users, args.duration)
        print(json.dumps({"ceiling": ours}, indent=1))
        if args.baseline:
            bare = bare_ceiling(args.users, args.duration)
            ratio = {k: ours[k] / bare[k] for k in ("req_per_s", "req_per_s_per_core")}
            print(json.dumps({"bare_locust_ceiling": bare, "ratio": ratio}, indent=1))
        for n in (int(x) for x in args.timing_users.split(",")):
            timed = timing_error(n, args.duration)
            print(json.dumps({"timing": timed}, indent=1))
            if args.baseline:
                print(json.dumps({"bare_locust_timing": bare_timing(n, args.duration)}, indent=1))


if __name__ == "__main__":
    main()
