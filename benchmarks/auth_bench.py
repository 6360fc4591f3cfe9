"""What do Databricks credentials cost per request? (run by hand; results go in docs/databricks-auth.md)

    python benchmarks/auth_bench.py [--calls 200000]

Starts ``loadtest sim`` with OAuth on a free port of 127.0.0.1 and a PAT, then, in this process monkey-patched by
gevent as the engine is, resolves OAuth M2M and PAT credentials through the Databricks SDK and times per call:
the SDK's ``Config.authenticate()`` (what a provider calling the SDK on every request would pay) and the
provider's cached ``headers()`` (what the engine pays). Stops the simulator by its PID.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.client.auth import DatabricksAuth, databricks_auth  # noqa: E402


def per_call_us(call: object, calls: int) -> float:
    assert callable(call)
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "BENCH_SECRET": "bench-secret-0123456789", "BENCH_PAT": "dapi-bench-0123456789"}
    sim = subprocess.Popen(
        [sys.executable, "-m", "loadtest", "sim", "--port", str(port), "--oauth-client-id", "bench",
         "--oauth-secret-env", "BENCH_SECRET", "--api-token-env", "BENCH_PAT"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/health")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        for name in [n for n in os.environ if n.startswith("DATABRICKS_")]:
            del os.environ[name]
        os.environ["HOME"] = "/nonexistent"
        os.environ.update(
            DATABRICKS_HOST=url, DATABRICKS_CLIENT_ID="bench", DATABRICKS_CLIENT_SECRET=env["BENCH_SECRET"]
        )
        oauth = databricks_auth()
        del os.environ["DATABRICKS_CLIENT_ID"], os.environ["DATABRICKS_CLIENT_SECRET"]
        os.environ["DATABRICKS_TOKEN"] = env["BENCH_PAT"]
        pat = databricks_auth()
        for label, auth in (("oauth-m2m", oauth), ("pat", pat)):
            assert isinstance(auth, DatabricksAuth)
            sdk = per_call_us(auth.config.authenticate, args.calls)
            cached = per_call_us(auth.headers, args.calls)
            print(
                f"{label:9s}  Config.authenticate() {sdk:6.2f} µs/call   cached headers() {cached:5.2f} µs/call"
            )
    finally:
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
