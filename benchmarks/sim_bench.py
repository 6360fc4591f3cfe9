"""Does the embedded simulator keep its model's times at 2,000 concurrent streams on one core? (run by hand; results
go in docs/performance.md)

    python benchmarks/sim_bench.py [--streams 2000] [--duration 20] [--warmup 6] [--pin 0,1] [--clients 1]
                                   [--sim-args "--replicas 4 --max-batch 512"] [--max-tokens 64,256]
                                   [--c-client | --generator N] [--profile FILE]

The simulator (``python -m loadtest sim``) runs on CPU ``S``; a deliberately cheap client — a bare epoll loop over raw
sockets, one keep-alive connection per stream, closed loop, ``--clients`` processes — runs on CPU ``G`` (``taskset``).
Each request is a streamed chat completion of ``--prompt-words`` words and ``max_tokens`` drawn uniformly from
``--max-tokens LO,HI`` (seeded), so the streams do not finish in lockstep; their first requests are spread over
``--ramp`` seconds. The client stamps ``time.monotonic()`` before writing a request and when a read first holds a
content delta (``{"content":"`` followed by a non-empty string), and parses nothing else: it looks for the end of the
chunked body.

The simulator's truth comes from ``GET /sim/timings`` (:mod:`loadtest.sim.timing`): per request, when it arrived,
when its model's first token was due and when it was written; and its event loop's lateness every 10 ms. The event
loop's clock is ``time.monotonic``, the same clock as the client's on one machine, so the client's TTFT minus the
model's (``due − arrived``) splits exactly into arrival (``arrived − sent``), the server's write (``written − due``)
and delivery (``first − written``). Measured over ``--duration`` seconds after ``--warmup``:

- the simulator's loop lateness p50 / p99 / max, its CPU share (``/proc/PID/stat``), chunks/s and streams in flight,
  and how late each step's last token was written (``written − due`` of the step: the most it added to any token);
- the TTFT error (client TTFT − model TTFT) p50 / p99 / max over requests sent in the window, and its three parts;
- the client's own CPU share and loop lateness: what the measuring costs, and whether it kept up.

``--c-client`` runs the same client compiled from ``benchmarks/sim_bench_client.c`` (``cc -O2``): a third of the
Python one's CPU, so that its own delays stay out of the figures. ``--generator N`` drives the simulator with
``loadtest run -c STREAMS --processes N`` instead and reports the generator's view of TTFT.

Every process binds or connects to 127.0.0.1 only; the simulator is stopped by PID; the load is bounded by the
stream count and the duration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.runner.simproc import ManagedProcess  # noqa: E402

CONTENT = b'{"content":"'
END = b"\r\n0\r\n\r\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the client (one process: --client) -----------------------------------------------------------------------------


class Stream:
    """One keep-alive connection, one request at a time."""

    __slots__ = ("first", "head", "in_body", "request_id", "sent", "sock", "tail")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = b""
        self.in_body = False
        self.request_id = ""
        self.sent = self.first = 0.0
        self.tail = b""


class Client:
    """A bare ``select.epoll`` loop over ``--streams`` sockets: per read one ``recv``, a clock read and two byte
    searches; per request ``(request_id, sent, first, ended)``. No asyncio: an asyncio version took 93 % of the core
    at 2,000 streams, this loop 86 % (one run each); ``--c-client`` (``sim_bench_client.c``) takes about 30 %."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        lo, hi = (int(x) for x in args.max_tokens.split(","))
        prompt = " ".join(["word"] * args.prompt_words)
        self.bodies = [_request(args.host, prompt, n) for n in range(lo, hi + 1)]
        self.records: list[tuple[str, float, float, float]] = []
        self.errors = 0
        self.stop_at = args.start_at + args.sending_s
        self.lag: list[tuple[float, float]] = []
        self.cpu: dict[str, float] = {}
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}

    def send(self, stream: Stream) -> None:
        stream.head, stream.in_body, stream.first, stream.tail = b"", False, 0.0, b""
        body = self.bodies[self.rng.randrange(len(self.bodies))]
        stream.sent = time.monotonic()
        stream.sock.send(body)  # < 1 KiB into an empty socket buffer: all of it

    def close(self, stream: Stream) -> None:
        fd = stream.sock.fileno()
        self.epoll.unregister(fd)
        del self.streams[fd]
        stream.sock.close()

    def read(self, stream: Stream, now: float) -> None:
        data = stream.sock.recv(262144)
        if not data:
            self.errors += 1
            self.close(stream)
            return
        if not stream.in_body:
            head = stream.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                stream.head = head
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.errors += 1
                self.close(stream)
                return
            start = head.find(b"x-request-id: ") + len(b"x-request-id: ")
            stream.request_id = head[start : head.index(b"\r\n", start)].decode()
            stream.in_body = True
            data = head[end + 4 :]
            if not data:
                return
        if not stream.first:
            at = data.find(CONTENT)
            if at >= 0 and data[at + len(CONTENT) : at + len(CONTENT) + 1] != b'"':
                stream.first = now
        tail = stream.tail + data[-8:]
        if not tail.endswith(END):
            stream.tail = tail[-8:]
            return
        self.records.append((stream.request_id, stream.sent, stream.first, now))
        if now < self.stop_at:
            self.send(stream)
        else:
            self.close(stream)

    def run(self) -> dict[str, Any]:
        args = self.args
        for _ in range(args.streams):
            sock = socket.create_connection((args.host, args.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self.streams[sock.fileno()] = Stream(sock)
            self.epoll.register(sock.fileno(), select.EPOLLIN)
        pending = deque(
            sorted(
                [
                    (args.start_at + args.ramp * i / args.streams, "send", s)
                    for i, s in enumerate(self.streams.values())
                ]
                + [(args.window_start, "cpu", "start"), (args.window_end, "cpu", "end")],
                key=lambda item: item[0],
            )
        )
        tick = args.start_at
        deadline = self.stop_at + 120
        while self.streams and time.monotonic() < deadline:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, what, arg = pending.popleft()
                if what == "send":
                    assert isinstance(arg, Stream)
                    self.send(arg)
                else:
                    self._cpu(str(arg))
            if now >= tick:
                if tick > args.start_at:
                    self.lag.append((now, now - tick))
                tick = now + 0.01
            nxt = min(tick, pending[0][0]) if pending else tick
            for fd, _ in self.epoll.poll(max(0.0, nxt - time.monotonic())):
                stream = self.streams.get(fd)
                if stream is not None:
                    self.read(stream, time.monotonic())
        return {"records": self.records, "errors": self.errors, "loop_lag": self.lag, "cpu": self.cpu}

    def _cpu(self, name: str) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu[name] = usage.ru_utime + usage.ru_stime
        self.cpu[name + "_at"] = time.monotonic()


def _request(host: str, prompt: str, max_tokens: int) -> bytes:
    body = json.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (host.encode(), len(body), body)
    )


def client_main(args: argparse.Namespace) -> None:
    Path(args.out).write_text(json.dumps(Client(args).run()))


# -- the orchestrator -----------------------------------------------------------------------------------------------


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"GET {url}: {exc.code} {exc.read()[:500]!r}") from None


def cpu_busy() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from ``/proc/stat`` (busy: all but idle and iowait)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values]
            out[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def pct(values: list[float], q: float) -> float:
    """Nearest rank, as the simulator's summaries."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] if ordered else math.nan


def ms3(values: list[float]) -> dict[str, float]:
    return {k: round(v * 1000, 2) for k, v in (("p50", pct(values, 50)), ("p99", pct(values, 99)),
                                                ("max", max(values, default=math.nan)))}  # fmt: skip


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def _pinned(pin: str) -> tuple[str, str]:
    """``S,G`` → (S, G): this process (and the clients it starts) moved to CPU G, this tree first on the path."""
    server_cpu, client_cpu = pin.split(",")
    os.sched_setaffinity(0, {int(client_cpu)})
    # `python -m loadtest` puts the working directory first on sys.path: this tree's, not another
    os.chdir(ROOT)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    return server_cpu, client_cpu


def bench(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu, client_cpu = _pinned(args.pin)
    sim = ManagedProcess(
        ["taskset", "-c", server_cpu, sys.executable,
         *(["-m", "cProfile", "-o", args.profile] if args.profile else []), "-m", "loadtest", "sim", "--port", "0",
         *shlex.split(args.sim_args)],
        what="simulator",
    )  # fmt: skip
    url = sim.start()
    try:
        assert sim.proc is not None
        pid = sim.proc.pid
        host, port = url.removeprefix("http://").rsplit(":", 1)
        start_at = time.monotonic() + 2.0 + args.streams / 2000  # connections are opened first
        window_start = start_at + args.warmup
        window_end = window_start + args.duration
        with tempfile.TemporaryDirectory() as tmp:
            compiled = str(Path(tmp) / "sim_bench_client")
            if args.c_client:
                subprocess.run(
                    ["cc", "-O2", "-o", compiled, str(ROOT / "benchmarks" / "sim_bench_client.c")], check=True
                )
            clients = []
            share = args.streams // args.clients
            for k in range(args.clients):
                n = share + (1 if k < args.streams % args.clients else 0)
                out = Path(tmp) / f"client{k}.json"
                if args.c_client:
                    lo, hi = args.max_tokens.split(",")
                    argv = [
                        "taskset",
                        "-c",
                        client_cpu,
                        compiled,
                        host,
                        port,
                        str(n),
                        repr(start_at),
                        str(args.ramp),
                        str(args.warmup + args.duration),
                        repr(window_start),
                        repr(window_end),
                        lo,
                        hi,
                        str(args.prompt_words),
                        str(args.seed + k),
                        str(out),
                    ]
                else:
                    argv = ["taskset", "-c", client_cpu, sys.executable, __file__, "--client", "--host", host,
                            "--port", port, "--streams", str(n), "--start-at", repr(start_at), "--ramp",
                            str(args.ramp), "--sending-s", str(args.warmup + args.duration),
                            "--window-start", repr(window_start), "--window-end", repr(window_end),
                            "--max-tokens", args.max_tokens, "--prompt-words", str(args.prompt_words),
                            "--seed", str(args.seed + k), "--out", str(out)]  # fmt: skip
                clients.append((subprocess.Popen(argv), out))
            sleep_until(window_start)
            cpu0, busy0, stats0 = cpu_seconds(pid), cpu_busy(), get_json(url + "/sim/stats")
            t0 = time.monotonic()
            sleep_until(window_end)
            cpu1, busy1, stats1 = cpu_seconds(pid), cpu_busy(), get_json(url + "/sim/stats")
            t1 = time.monotonic()
            for proc, _ in clients:
                proc.wait(timeout=args.warmup + args.duration + 180)
            results = [json.loads(out.read_text()) for _, out in clients]
        timings = get_json(url + "/sim/timings")
    finally:
        sim.stop()
    cores = {f"cpu{c}_busy": round((busy1[c][0] - busy0[c][0]) / max(1, busy1[c][1] - busy0[c][1]), 3)
             for c in sorted(busy1)}  # fmt: skip
    summary = summarise(
        args, results, timings, stats0, stats1, (cpu1 - cpu0) / (t1 - t0), window_start, window_end
    )
    return {**summary, **cores}


def bench_generator(args: argparse.Namespace) -> dict[str, Any]:
    """The same simulator driven by the project's own generator: ``loadtest run --processes N`` on CPU G with a
    scenario of one class, ``--prompt-words`` prompt tokens and ``max_tokens`` uniform over ``--max-tokens`` (as the
    cheap client draws them, so the streams do not finish in lockstep), closed loop at ``--streams``; the TTFT error
    over its records' ``server_request_id``."""
    import threading

    from analysis import load_run

    server_cpu, client_cpu = _pinned(args.pin)
    sim = ManagedProcess(
        ["taskset", "-c", server_cpu, sys.executable, "-m", "loadtest", "sim", "--port", "0",
         *shlex.split(args.sim_args)],
        what="simulator",
    )  # fmt: skip
    url = sim.start()
    samples: list[tuple[float, float, dict[int, tuple[int, int]]]] = []
    done = threading.Event()
    try:
        assert sim.proc is not None
        pid = sim.proc.pid

        def sample() -> None:
            while not done.wait(0.5):
                samples.append((time.monotonic(), cpu_seconds(pid), cpu_busy()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        lo, hi = (int(x) for x in args.max_tokens.split(","))
        with tempfile.TemporaryDirectory() as tmp:
            scenario = Path(tmp) / "scenario.toml"
            scenario.write_text(
                f'[[classes]]\nname = "chat"\nprompt_tokens = {args.prompt_words}\n'
                f'output_tokens = {{ dist = "uniform", min = {lo}, max = {hi} }}\n'
                f'[load]\nconcurrency = [{args.streams}]\nduration = "{args.warmup + args.duration}s"\n'
            )
            subprocess.run(
                ["taskset", "-c", client_cpu, sys.executable, "-m", "loadtest", "run", str(scenario),
                 "--endpoint", url + "/v1", "--model", "m", "--skip-preflight", "--quiet",
                 "--processes", str(args.generator), "--out", str(Path(tmp) / "runs")],
                check=True, capture_output=True, timeout=args.warmup + args.duration + 300,
            )  # fmt: skip
            done.set()
            (run_dir,) = (Path(tmp) / "runs").iterdir()
            data = load_run(run_dir)
        timings = get_json(url + "/sim/timings")
    finally:
        done.set()
        sim.stop()
    offset = time.time() - time.monotonic()  # epoch − monotonic, for the records' epoch times
    df = data.records
    stage_start = float(df["started_at"].min()) - offset
    window_start = stage_start + args.warmup
    window_end = window_start + args.duration
    truth = {row[0]: row[1:] for row in timings["first_tokens"]["rows"]}
    errors = []
    for rid, started, first in zip(
        df["server_request_id"], df["started_at"], df["first_token_at"], strict=True
    ):
        if rid in truth and first == first and window_start <= started - offset < window_end:
            arrived, due, _ = truth[rid]
            errors.append((first - started) - (due - arrived))
    inside = [(t, c, b) for t, c, b in samples if window_start <= t <= window_end]
    (t0, c0, b0), (t1, c1, b1) = inside[0], inside[-1]
    (stage, *_) = data.manifest.stages or ()
    return {
        "streams": args.streams,
        "client": f"loadtest run --processes {args.generator}",
        "sim_args": args.sim_args,
        "window_s": round(t1 - t0, 1),
        "requests_in_window": len(errors),
        "client_errors": int((~df["ok"]).sum()),
        "sim_cpu_share": round((c1 - c0) / (t1 - t0), 3),
        "sim_loop_lag_ms": ms3([late for t, late in timings["loop_lag"] if window_start <= t < window_end]),
        "ttft_error_ms": ms3(errors),
        "generator_cpu_share": stage.generator_cpu_share,
        "generator_loop_delay_ms": {
            k: None if v is None else round(v * 1000, 2)
            for k, v in (
                ("p50", stage.loop_delay_p50_s),
                ("p99", stage.loop_delay_p99_s),
                ("max", stage.loop_delay_max_s),
            )
        },
        **{f"cpu{c}_busy": round((b1[c][0] - b0[c][0]) / max(1, b1[c][1] - b0[c][1]), 3) for c in sorted(b1)},
    }


def summarise(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    timings: dict[str, Any],
    stats0: dict[str, Any],
    stats1: dict[str, Any],
    sim_cpu_share: float,
    window_start: float,
    window_end: float,
) -> dict[str, Any]:
    span = window_end - window_start
    sim_lag = [late for t, late in timings["loop_lag"] if window_start <= t < window_end]
    steps = timings.get("steps", {"rows": []})["rows"]  # (the tree before the sliced writes has none)
    step_last = [written - due for due, written in steps if window_start <= due < window_end]
    truth = {row[0]: row[1:] for row in timings["first_tokens"]["rows"]}
    records = [r for res in results for r in res["records"]]
    in_window = [r for r in records if window_start <= r[1] < window_end and r[2]]
    errors, arrival, write, delivery = [], [], [], []
    for rid, sent, first, _ in in_window:
        if rid not in truth:
            continue
        arrived, due, written = truth[rid]
        errors.append((first - sent) - (due - arrived))
        arrival.append(arrived - sent)
        write.append(written - due)
        delivery.append(first - written)
    busy = sum(min(end, window_end) - max(sent, window_start) for _, sent, _, end in records
               if sent < window_end and end > window_start)  # fmt: skip
    client_cpu = sum(r["cpu"]["end"] - r["cpu"]["start"] for r in results) / span
    client_lag = [late for r in results for t, late in r["loop_lag"] if window_start <= t < window_end]
    model_ttft = [truth[r[0]][1] - truth[r[0]][0] for r in in_window if r[0] in truth]
    return {
        "streams": args.streams,
        "client": "c" if args.c_client else "python",
        "sim_args": args.sim_args,
        "window_s": span,
        "requests_in_window": len(in_window),
        "joined": len(errors),
        "client_errors": sum(r["errors"] for r in results),
        "streams_in_flight_mean": round(busy / span, 1),
        "sim_running_end": stats1["running"],
        "sim_waiting_end": stats1["waiting"],
        "chunks_per_s": round((stats1["tokens_emitted"] - stats0["tokens_emitted"]) / span),
        "steps_per_s": round((stats1["steps"] - stats0["steps"]) / span, 1),
        "sim_cpu_share": round(sim_cpu_share, 3),
        "sim_loop_lag_ms": ms3(sim_lag),
        "sim_step_resyncs": stats1["step_resyncs"],
        "sim_step_last_write_ms": ms3(step_last),
        "model_ttft_ms": ms3(model_ttft),
        "ttft_error_ms": ms3(errors),
        "ttft_error_parts_ms": {"arrival": ms3(arrival), "write": ms3(write), "delivery": ms3(delivery)},
        "client_cpu_share": round(client_cpu, 3),
        "client_loop_lag_ms": ms3(client_lag),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--ramp", type=float, default=3.0)
    parser.add_argument(
        "--pin", default="0,1", metavar="S,G", help="the simulator on CPU S, the client on CPU G"
    )
    parser.add_argument("--clients", type=int, default=1, help="client processes (all on CPU G)")
    parser.add_argument("--sim-args", default="--replicas 4 --max-batch 512")
    parser.add_argument("--max-tokens", default="64,256", metavar="LO,HI")
    parser.add_argument("--prompt-words", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--c-client", action="store_true", help="the client in C (benchmarks/sim_bench_client.c)"
    )
    parser.add_argument(
        "--generator", type=int, metavar="N", help="drive it with `loadtest run --processes N` instead"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="run the simulator under cProfile, its stats to FILE"
    )
    # the client process's own arguments
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--sending-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--window-start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--window-end", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    for _ in range(args.rounds):
        print(json.dumps(bench_generator(args) if args.generator else bench(args), indent=1))


if __name__ == "__main__":
    main()
