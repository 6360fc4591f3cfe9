"""How fast is the load generator, and how wrong are its clocks? (run by hand; results go in docs/performance.md)

    python benchmarks/generator_bench.py [--duration 10] [--users 64] [--timing-users 50,200] [--pin 0,1]

1. Ceiling: a cheap SSE server (benchmarks/sse_server.py) writes each 64-chunk response at once; the generator runs
   closed loop with ``--users`` users. Reports requests/s, SSE chunks/s, the engine's CPU share and peak RSS.
2. Timing error: the server paces chunks (TTFT 50 ms, ITL 20 ms) and records when it wrote each first content chunk;
   the error is the client's ``first_token_at`` minus that server truth (same host, same wall clock).

Both report the engine's event-loop delay over the stage (p50 / p99 / max, ms: how late a 10 ms timer woke).

``--pin S,G`` runs the benchmark server on CPU ``S`` and ``loadtest run`` (its CLI and the engine child, which
inherit the mask) on CPU ``G`` with ``taskset``, so the two never share a core and the scheduler does not move them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis import load_run  # noqa: E402
from loadtest.rundir import StageWindow  # noqa: E402
from loadtest.runner.simproc import ManagedProcess  # noqa: E402

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


def ceiling(users: int, duration: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ManagedProcess(
            [*PIN["server"], sys.executable, str(ROOT / "benchmarks" / "sse_server.py"), "--tokens", "64"],
            what="bench server",
        ) as server,
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
            "req_per_s": len(ok) / wall,
            "chunks_per_s": float(ok["client_output_tokens"].sum()) / wall,
            "engine_cpu_share": stage.generator_cpu_share,
            "req_per_s_per_core": len(ok) / wall / (stage.generator_cpu_share or float("nan")),
            "engine_rss_max_mb": stage.generator_rss_max_mb,
            **loop_delay_ms(stage),
        }


def timing_error(users: int, duration: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        truth_file = Path(tmp) / "truth.json"
        server = ManagedProcess(
            [
                *PIN["server"],
                sys.executable,
                str(ROOT / "benchmarks" / "sse_server.py"),
                "--tokens",
                "32",
                "--ttft-ms",
                "50",
                "--itl-ms",
                "20",
                "--truth",
                str(truth_file),
            ],
            what="bench server",
        )
        server.start()
        try:
            run_dir = loadtest_run(server.url + "/v1", Path(tmp) / "runs", users, duration, 32)
        finally:
            server.stop()
        truth = json.loads(truth_file.read_text())
        df = load_run(run_dir).records
        df = df[df["ok"] & df["server_request_id"].isin(list(truth))]
        err_ms = (df["first_token_at"] - df["server_request_id"].map(truth).astype(float)).to_numpy() * 1000
        (stage, *_) = load_run(run_dir).manifest.stages or ()
        return {
            "users": users,
            "requests": len(df),
            "ttft_error_ms_p50": float(np.percentile(err_ms, 50)),
            "ttft_error_ms_p99": float(np.percentile(err_ms, 99)),
            "ttft_error_ms_max": float(err_ms.max()),
            "engine_cpu_share": stage.generator_cpu_share or float("nan"),
            **loop_delay_ms(stage),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--timing-users", default="50,200")
    parser.add_argument("--pin", metavar="S,G", help="taskset: the server on CPU S, loadtest run on CPU G")
    args = parser.parse_args()
    if args.pin:
        server_cpu, generator_cpu = args.pin.split(",")
        PIN.update(server=["taskset", "-c", server_cpu], generator=["taskset", "-c", generator_cpu])
    print(json.dumps({"ceiling": ceiling(args.users, args.duration)}, indent=1))
    for n in (int(x) for x in args.timing_users.split(",")):
        print(json.dumps({"timing": timing_error(n, args.duration)}, indent=1))


if __name__ == "__main__":
    main()
