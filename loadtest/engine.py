"""The Locust engine: the one module (besides locustfiles in ``scenarios/``) that imports locust and gevent.

Run as ``python -m loadtest.engine RUN_DIR`` by :mod:`loadtest.run`, never imported by the CLI, the analysis or the
reports (``import locust`` monkey-patches the interpreter). It reads ``RUN_DIR/spec.json``, drives Locust users
through the stages and appends

* ``records.jsonl`` — one line per request as it completes, written straight to the file descriptor (a crash or
  Ctrl-C loses nothing that completed; in-flight requests are recorded as ``cancelled``);
* ``events.jsonl`` — stage start/end markers with the generator's CPU time, so stage windows survive a crash.

Stage semantics (closed loop): at a stage's start the first ``users`` users may send; when its duration is over no
user starts a new request and in-flight requests drain (up to ``drain_timeout_s``) before the next stage begins, so
every stage is measured on its own.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import orjson  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402
from locust import User, constant, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from loadtest.arrivals import ArrivalProcess, TokenRateController  # noqa: E402
from loadtest.auth import AuthOptions, AuthProvider, resolve_auth  # noqa: E402
from loadtest.clock import EpochClock  # noqa: E402
from loadtest.errors import LoadtestError  # noqa: E402
from loadtest.execute import RecordContext, TransportFailure, execute_request  # noqa: E402
from loadtest.records import RequestRecord, dump_record  # noqa: E402
from loadtest.runspec import RunSpec, Stage  # noqa: E402
from loadtest.workload import RequestFactory  # noqa: E402

__all__ = ["main"]

EXIT_INTERRUPTED = 130
STALE_RETRIES = 2


class GeventResponse:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status_code

    def header(self, name: str) -> str | None:
        value = self._response.get(name)
        return None if value is None else str(value)

    def lines(self) -> Iterator[bytes]:
        readline = self._response.readline
        try:
            while True:
                line = readline(b"\n")
                if not line:
                    return
                yield line
        except (TimeoutError, gevent.Timeout):
            raise TransportFailure("timeout", "no data within the read timeout mid-stream") from None
        except (HTTPConnectionClosed, HTTPParseError, OSError) as exc:
            raise TransportFailure("stream_cut", f"stream broken: {type(exc).__name__}") from None

    def read(self) -> bytes:
        try:
            return bytes(self._response.read())
        except (TimeoutError, gevent.Timeout):
            raise TransportFailure("timeout", "no data within the read timeout") from None
        except (HTTPConnectionClosed, HTTPParseError, OSError) as exc:
            raise TransportFailure("stream_cut", f"body broken: {type(exc).__name__}") from None

    def close(self) -> None:
        response = self._response
        if response.message_complete:
            response.release()
        elif response._sock is not None and response._pool is not None:
            # never hand a half-read connection back to the pool
            response._pool.release_socket(response._sock)
            response._sock = None
            response._pool = None


class GeventTransport:
    """geventhttpclient with one connection pool shared by every user in this process."""

    def __init__(self, base_url: str, concurrency: int, connect_timeout: float, read_timeout: float) -> None:
        url = URL(base_url)
        self.client = HTTPClient.from_url(
            url,
            concurrency=max(1, concurrency),
            connection_timeout=connect_timeout,
            network_timeout=read_timeout,
        )

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> GeventResponse:
        path = URL(url).request_uri
        merged = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream, application/json",
            **headers,
        }
        for attempt in range(STALE_RETRIES + 1):
            try:
                return GeventResponse(self.client.request("POST", path, body=body, headers=merged))
            except HTTPConnectionClosed as exc:
                # A pooled keep-alive connection the server had already closed (llama.cpp closes after every
                # stream while advertising keep-alive): nothing reached the server, so send again on a fresh one.
                if attempt == STALE_RETRIES:
                    raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None
            except (TimeoutError, gevent.Timeout):
                raise TransportFailure("timeout", "timeout before the response headers") from None
            except (HTTPParseError, OSError) as exc:
                raise TransportFailure("connection", f"connection failed: {type(exc).__name__}") from None
        raise AssertionError("unreachable")


class StageGate:
    """Which stage is on, which users may send, the open-loop arrival queue, and the in-flight count."""

    def __init__(self) -> None:
        self.stage: Stage | None = None
        self.ctx: RecordContext | None = None
        self.accepting = False
        self.inflight = 0
        self.idle = 0  # open loop: users waiting on the arrival queue
        self.started_in_stage = 0
        self.no_free_user = 0
        self.arrivals: Queue[tuple[int, float]] = Queue()
        self._changed = Event()
        self.drained = Event()
        self.drained.set()

    def open(self, stage: Stage, ctx: RecordContext) -> None:
        self.stage, self.ctx, self.accepting = stage, ctx, True
        self.started_in_stage = self.no_free_user = 0
        self._signal()

    def close(self) -> int:
        """Stop admitting; returns how many queued open-loop arrivals were dropped unsent."""
        self.accepting = False
        dropped = 0
        while not self.arrivals.empty():
            self.arrivals.get_nowait()
            dropped += 1
        for _ in range(self.idle):  # wake users blocked on the queue
            self.arrivals.put((-1, 0.0))
        self._signal()
        return dropped

    def _signal(self) -> None:
        old, self._changed = self._changed, Event()
        old.set()

    def wait_change(self) -> None:
        self._changed.wait()

    def admits(self, index: int) -> bool:
        stage = self.stage
        if not self.accepting or stage is None or stage.open_loop or index >= (stage.users or 0):
            return False
        return stage.max_requests is None or self.started_in_stage < stage.max_requests


class Engine:
    """Process-wide state shared by the Locust users of this process."""

    def __init__(self, spec: RunSpec, run_dir: Path, worker: str) -> None:
        self.spec = spec
        self.worker = worker
        self.clock = EpochClock()
        self.gate = StageGate()
        self.factory = RequestFactory(spec.endpoint, spec.request_classes, spec.seed)
        self.controller: TokenRateController | None = None
        self.seq = 0
        self.records_written = 0
        self.errors = 0
        self._fd = os.open(run_dir / "records.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._events_fd = os.open(run_dir / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.pool_size = max(s.pool_size for s in spec.stages)
        self.transport = GeventTransport(
            spec.endpoint.base_url, self.pool_size, spec.connect_timeout_s, spec.read_timeout_s
        )
        self.auth = _auth_for(spec)

    def refresh_credentials_forever(self) -> None:
        """OAuth tokens expire: refresh ahead of expiry while the run goes on (a failure keeps the old token)."""
        while True:
            gevent.sleep(5.0)
            if self.auth.refresh_due(time.time()):
                try:
                    self.auth.refresh()
                    self.event("auth_refreshed", expires_at=self.auth.expires_at)
                except LoadtestError as exc:
                    self.event("auth_refresh_failed", detail=str(exc))

    def emit(self, record: RequestRecord) -> None:
        os.write(self._fd, dump_record(record))
        self.records_written += 1
        if record.error_class is not None:
            self.errors += 1
        elif (
            self.controller is not None and self.gate.ctx is not None and record.stage == self.gate.ctx.stage
        ):
            self.controller.observe(record.prompt_tokens, record.output_tokens)

    def event(self, kind: str, **fields: Any) -> None:
        line = {
            "event": kind,
            "t": self.clock(),
            "cpu_s": time.process_time(),
            "rss_max_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker": self.worker,
            **fields,
        }
        os.write(self._events_fd, orjson.dumps(line) + b"\n")

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, seq: int, scheduled_at: float) -> None:
        gate = self.gate
        ctx = gate.ctx
        assert ctx is not None
        request = self.factory.make(seq)
        gate.inflight += 1
        gate.started_in_stage += 1
        gate.drained.clear()
        try:
            execute_request(
                self.transport,
                request,
                self.auth.headers(),
                self.clock,
                ctx,
                seq=seq,
                scheduled_at=scheduled_at,
                emit=self.emit,
            )
        finally:
            gate.inflight -= 1
            if gate.inflight == 0:
                gate.drained.set()

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._events_fd)


_ENGINE: Engine | None = None


def _auth_for(spec: RunSpec) -> AuthProvider:
    """Credentials in the engine process: Databricks auth from the environment the CLI prepared, or the bearer
    token named by ``api_key_env``."""
    if spec.endpoint.auth == "databricks":
        return resolve_auth(AuthOptions(), env=os.environ)
    key_env = spec.endpoint.api_key_env
    return resolve_auth(
        AuthOptions(api_key_env=key_env, auth_type=None if key_env else "none"), env=os.environ
    )


class LLMUser(User):
    """Closed loop: while its stage admits it, the user sends its next request as soon as the last one ends.
    Open loop: the user takes the next arrival from the stage's queue (its ``scheduled_at`` is the arrival time)."""

    wait_time = constant(0)
    _counter = 0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = LLMUser._counter
        LLMUser._counter += 1

    @task
    def work(self) -> None:
        engine = _ENGINE
        assert engine is not None
        gate = engine.gate
        stage = gate.stage
        if stage is not None and stage.open_loop and gate.accepting:
            gate.idle += 1
            try:
                item = gate.arrivals.get()
            finally:
                gate.idle -= 1
            if item[0] >= 0:
                engine.send(item[0], item[1])
            return
        if not gate.admits(self.index):
            gate.wait_change()
            return
        engine.send(engine.next_seq(), engine.clock())


def dispatch_arrivals(engine: Engine, stage: Stage, index: int, stop: Event) -> dict[str, Any]:
    """Put open-loop arrivals on the queue at their scheduled times until the stage's time is up."""
    gate = engine.gate
    process = ArrivalProcess(stage.arrival, stage.burstiness)  # type: ignore[arg-type]
    rng = random.Random(f"{engine.spec.seed}/arrivals/{index}")
    controller = engine.controller
    t0 = engine.clock()
    offset = 0.0 if process.kind == "constant" else process.gap(_rate(stage, controller, 0.0, 0), rng)
    arrivals = 0
    while not stop.is_set() and offset < stage.duration_s:
        if stage.max_requests is not None and arrivals >= stage.max_requests:
            break
        due = t0 + offset
        wait = due - engine.clock()
        if wait > 0:
            stop.wait(wait)
            if stop.is_set():
                break
        if gate.idle <= gate.arrivals.qsize():
            gate.no_free_user += 1
        gate.arrivals.put((engine.next_seq(), due))
        arrivals += 1
        offset += process.gap(_rate(stage, controller, offset, arrivals), rng)
    if not stop.is_set() and (stage.max_requests is None or arrivals < stage.max_requests):
        left = t0 + stage.duration_s - engine.clock()
        if left > 0:
            stop.wait(left)  # the window lasts its full duration even when the next arrival falls after it
    gevent.sleep(0)  # let idle users take what is queued; what is left found no free user
    return {"arrivals": arrivals, "no_free_user": gate.no_free_user}


def _rate(stage: Stage, controller: TokenRateController | None, elapsed_s: float, arrivals: int) -> float:
    if controller is not None:
        return controller.rate_at(elapsed_s, arrivals)
    return float(stage.rate or 0.0)


def run(spec: RunSpec, run_dir: Path) -> int:
    global _ENGINE
    engine = Engine(spec, run_dir, worker=f"local-{os.getpid()}")
    _ENGINE = engine
    stop = Event()
    interrupted: list[str] = []

    def on_signal(signame: str) -> None:
        interrupted.append(signame)
        stop.set()

    gevent.signal_handler(signal.SIGINT, on_signal, "SIGINT")
    gevent.signal_handler(signal.SIGTERM, on_signal, "SIGTERM")

    env = Environment(user_classes=[LLMUser])
    runner = env.create_local_runner()
    users = engine.pool_size
    runner.start(users, spawn_rate=max(100.0, users * 50.0), wait=False)
    deadline = time.monotonic() + 30
    while runner.user_count < users and time.monotonic() < deadline and not stop.is_set():
        gevent.sleep(0.01)
    engine.event("run_start", users=runner.user_count, auth=engine.auth.describe())
    refresher = gevent.spawn(engine.refresh_credentials_forever)
    try:
        for index, stage in enumerate(spec.stages):
            if stop.is_set():
                break
            run_stage(engine, stage, index, stop)
    finally:
        refresher.kill()
        engine.gate.close()
        runner.quit()  # kills user greenlets; in-flight requests record themselves as cancelled
        engine.event(
            "run_end", interrupted=bool(interrupted), records=engine.records_written, errors=engine.errors
        )
        engine.close()
    return EXIT_INTERRUPTED if interrupted else 0


def run_stage(engine: Engine, stage: Stage, index: int, stop: Event) -> None:
    spec = engine.spec
    ctx = RecordContext(
        run_id=spec.run_id,
        stage=stage.label,
        endpoint=spec.endpoint.name,
        worker=engine.worker,
        keep_gaps=spec.keep_gaps,
    )
    target: dict[str, Any] = {"kind": stage.kind, "users": stage.users, "rate": stage.rate}
    engine.controller = None
    if stage.kind == "tokens":
        e_in, e_out = engine.factory.expected_tokens()
        engine.controller = TokenRateController(
            total_per_min=stage.tokens_per_min,
            input_per_min=stage.input_tokens_per_min,
            output_per_min=stage.output_tokens_per_min,
            expected_input=e_in,
            expected_output=e_out,
        )
        target.update(
            tokens_per_min=stage.tokens_per_min,
            input_tokens_per_min=stage.input_tokens_per_min,
            output_tokens_per_min=stage.output_tokens_per_min,
            initial_rate=engine.controller.rate(),
        )
    before = engine.records_written
    engine.event("stage_start", stage=stage.label, duration_s=stage.duration_s, target=target)
    engine.gate.open(stage, ctx)
    dispatch: dict[str, Any] = {}
    if stage.open_loop:
        dispatch = dispatch_arrivals(engine, stage, index, stop)
    else:
        ends = time.monotonic() + stage.duration_s
        while not stop.is_set():
            left = ends - time.monotonic()
            if left <= 0:
                break
            if stage.max_requests is not None and engine.gate.started_in_stage >= stage.max_requests:
                break
            stop.wait(min(left, 0.05))
    engine.event("stage_window_end", stage=stage.label)
    dropped = engine.gate.close()
    drained = stop.is_set() or engine.gate.drained.wait(spec.drain_timeout_s)
    if engine.controller is not None:
        dispatch.update(
            final_rate=engine.controller.rate(),
            expected_input=engine.controller.expected_input,
            expected_output=engine.controller.expected_output,
        )
    engine.event(
        "stage_end",
        stage=stage.label,
        drained=bool(drained) and engine.gate.inflight == 0,
        inflight=engine.gate.inflight,
        records=engine.records_written - before,
        dropped=dropped,
        **dispatch,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m loadtest.engine RUN_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="engine: %(message)s")
    logging.getLogger("locust").setLevel(logging.ERROR)
    run_dir = Path(args[0])
    spec = RunSpec.read(run_dir / "spec.json")
    return run(spec, run_dir)


if __name__ == "__main__":
    sys.exit(main())
