"""The Locust engine: the one module (besides locustfiles in ``scenarios/``) that imports locust and gevent.

Everything that runs under gevent lives here — the HTTP transport, the users, stage gating, the arrival timers and
the master/worker messages — which is why this module is longer than the others; the rules it applies are pure
functions elsewhere (:mod:`loadtest.engine.distribute`, :mod:`loadtest.spec.arrivals`, :mod:`loadtest.client.execute`).

Run by :mod:`loadtest.runner.run`, never imported by the CLI, the analysis or the reports (``import locust``
monkey-patches the interpreter)::

    python -m loadtest.engine RUN_DIR                                   # one process (LocalRunner)
    python -m loadtest.engine RUN_DIR --master --workers N --port P     # MasterRunner: stages, arrivals, records
    python -m loadtest.engine --worker --master-host H --port P         # WorkerRunner: users that send requests

The master (or the local process) reads ``RUN_DIR/spec.json`` and appends

* ``records.jsonl`` — one line per request as it completes, its chunk gaps in ``chunk_gaps.f32`` (workers forward
  batches every 100 ms, gaps inline; a crash or Ctrl-C loses nothing that completed; in-flight requests are
  recorded as ``cancelled``);
* ``events.jsonl`` — stage start/end markers with the generator's CPU time, so stage windows survive a crash.

Stage semantics: at a stage's start the first ``users`` users may send (closed loop), or arrivals start at their
scheduled instants (open loop); when its duration is over no new request starts and in-flight requests drain (up to
``drain_timeout_s``) before the next stage begins, so every stage is measured on its own.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Mapping  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402
from locust import User, constant, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import MasterRunner, WorkerRunner  # noqa: E402

from loadtest.client.auth import AuthOptions, AuthProvider, resolve_auth  # noqa: E402
from loadtest.client.clock import EpochClock  # noqa: E402
from loadtest.client.execute import RecordContext, TransportFailure, execute_request  # noqa: E402
from loadtest.client.records import RequestRecord, dump_record  # noqa: E402
from loadtest.engine.conduct import LOOKAHEAD_S, Conductor, Recorder, run_stages  # noqa: E402
from loadtest.engine.distribute import (  # noqa: E402
    closed_loop_seq,
    split_evenly,
    users_per_worker,
)
from loadtest.errors import LoadtestError  # noqa: E402
from loadtest.rundir.files import SPEC_FILE  # noqa: E402
from loadtest.spec.runspec import RunSpec, Stage  # noqa: E402
from loadtest.spec.workload import RequestFactory  # noqa: E402

__all__ = ["main"]

EXIT_INTERRUPTED = 130
STALE_RETRIES = 2
FORWARD_EVERY_S = 0.1


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
        self.index = 0
        self.share = 0  # closed loop: how many of this process's users may send
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

    def open(self, stage: Stage, index: int, share: int, ctx: RecordContext) -> None:
        self.stage, self.index, self.share, self.ctx, self.accepting = stage, index, share, ctx, True
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
        if not self.accepting or stage is None or stage.open_loop or index >= self.share:
            return False
        return stage.max_requests is None or self.started_in_stage < stage.max_requests


def _auth_for(spec: RunSpec) -> AuthProvider:
    """Credentials in the engine process: Databricks auth from the environment the CLI prepared, or the bearer
    token named by ``api_key_env``."""
    if spec.endpoint.auth == "databricks":
        return resolve_auth(AuthOptions(), env=os.environ)
    key_env = spec.endpoint.api_key_env
    return resolve_auth(
        AuthOptions(api_key_env=key_env, auth_type=None if key_env else "none"), env=os.environ
    )


class Engine:
    """One process's users and what they share: stage gate, request factory, transport, credentials."""

    def __init__(
        self, spec: RunSpec, name: str, index: int, workers: int, sink: Callable[[bytes], None]
    ) -> None:
        self.spec = spec
        self.name = name
        self.index = index
        self.workers = workers
        self.sink = sink
        self.clock = EpochClock()
        self.gate = StageGate()
        self.factory = RequestFactory(spec.endpoint, spec.request_classes, spec.seed)
        self.closed_n = 0
        pool = users_per_worker(spec.pool_size, workers)
        self.users = pool
        self.transport = GeventTransport(
            spec.endpoint.base_url, pool, spec.connect_timeout_s, spec.read_timeout_s
        )
        self.auth = _auth_for(spec)
        self.cpu_at_open = 0.0
        self.wall_at_open = 0.0
        self.report: Callable[[str, dict[str, Any]], None] = lambda _kind, _fields: None

    def refresh_credentials_forever(self, report: Callable[[str, dict[str, Any]], None]) -> None:
        """OAuth tokens expire: refresh ahead of expiry while the run goes on (a failure keeps the old token).

        Checks every 5 s, or every quarter of the token's remaining life when that is shorter, so even a token
        that lives only seconds is replaced before it expires."""
        while True:
            expires = self.auth.expires_at
            remaining = expires - time.time() if expires is not None else 20.0
            gevent.sleep(min(5.0, max(0.2, remaining / 4)))
            if self.auth.refresh_due(time.time()):
                self.refresh_credentials(report, "due")

    def refresh_credentials(self, report: Callable[[str, dict[str, Any]], None], why: str) -> None:
        try:
            self.auth.refresh()
            report("auth_refreshed", {"expires_at": self.auth.expires_at, "by": self.name, "why": why})
        except LoadtestError as exc:
            report("auth_refresh_failed", {"detail": str(exc), "by": self.name})

    def emit(self, record: RequestRecord) -> None:
        self.sink(dump_record(record))

    def open_stage(self, stage: Stage, index: int, share: int) -> None:
        ctx = RecordContext(
            run_id=self.spec.run_id,
            stage=stage.label,
            endpoint=self.spec.endpoint.name,
            worker=self.name,
            keep_gaps=self.spec.keep_gaps,
        )
        self.closed_n = 0
        self.cpu_at_open, self.wall_at_open = time.process_time(), time.monotonic()
        self.gate.open(stage, index, share, ctx)

    def schedule(self, seq: int, due: float) -> None:
        """Hand an open-loop arrival to a free user at ``due`` (epoch seconds)."""
        gevent.spawn_later(max(0.0, due - self.clock()), self._arrive, seq, due)

    def _arrive(self, seq: int, due: float) -> None:
        gate = self.gate
        if not gate.accepting:
            return
        if gate.idle <= gate.arrivals.qsize():
            gate.no_free_user += 1
        gate.arrivals.put((seq, due))

    def close_stage(self, drain: bool = True) -> dict[str, Any]:
        """Stop admitting, wait for in-flight requests (up to the drain timeout; not when the run is being
        interrupted: they are cancelled and recorded as such) and report the stage."""
        dropped = self.gate.close()
        gevent.sleep(0)
        drained = self.gate.drained.wait(self.spec.drain_timeout_s if drain else 0.0)
        wall = time.monotonic() - self.wall_at_open
        return {
            "worker": self.name,
            "dropped": dropped,
            "no_free_user": self.gate.no_free_user,
            "inflight": self.gate.inflight,
            "drained": bool(drained) and self.gate.inflight == 0,
            "cpu_share": (time.process_time() - self.cpu_at_open) / wall if wall > 0 else None,
        }

    def next_closed_seq(self) -> int:
        seq = closed_loop_seq(self.gate.index, self.index, self.workers, self.closed_n)
        self.closed_n += 1
        return seq

    def send(self, seq: int, scheduled_at: float) -> None:
        """Send request ``seq``; after a 429, retry it as the scenario's ``[retry]`` policy says; after a 400 that
        rejects ``stream_options``, once more without it."""
        gate = self.gate
        ctx = gate.ctx
        assert ctx is not None
        retry = self.spec.retry
        gate.inflight += 1
        gate.started_in_stage += 1
        gate.drained.clear()
        try:
            attempt = 0
            while True:
                request = self.factory.make(seq)
                record = execute_request(
                    self.transport,
                    request,
                    self.auth.headers(),
                    self.clock,
                    ctx,
                    seq=seq,
                    scheduled_at=scheduled_at,
                    emit=self.emit,
                    attempt=attempt,
                )
                if record.status == 400 and b'"stream_options"' in request.body:
                    # external models (e.g. Bedrock behind Databricks) reject stream_options: send this request
                    # again without it, and no more of it for the rest of the run (usage then falls back to the
                    # client count)
                    if self.factory.include_usage is None:
                        self.factory.include_usage = False
                        self.report(
                            "stream_options_rejected", {"detail": record.error_detail, "by": self.name}
                        )
                    attempt += 1
                    scheduled_at = self.clock()
                    continue
                if (
                    record.error_class != "rate_limited"
                    or retry is None
                    or retry.policy != "retry-after"
                    or attempt >= retry.max_retries
                    or not gate.accepting
                ):
                    return
                wait = min(
                    record.retry_after_s if record.retry_after_s is not None else 1.0,
                    float(retry.max_wait_s),
                )
                gevent.sleep(wait)
                if not gate.accepting:
                    return
                attempt += 1
                scheduled_at = self.clock()
        finally:
            gate.inflight -= 1
            if gate.inflight == 0:
                gate.drained.set()


_ENGINE: Engine | None = None


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
        if engine is None:  # a worker's users can spawn before the run's spec arrives
            gevent.sleep(0.05)
            return
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
        engine.send(engine.next_closed_seq(), engine.clock())


class LocalConductor(Conductor):
    def __init__(self, spec: RunSpec, recorder: Recorder, stop: Event, engine: Engine) -> None:
        super().__init__(spec, recorder, stop)
        self.engine = engine

    def open(self, stage: Stage, index: int) -> None:
        self.engine.open_stage(stage, index, stage.users or 0)

    def deal(self, seq: int, due: float, n: int) -> None:
        self.engine.schedule(seq, due)

    def close(self) -> list[dict[str, Any]]:
        if not self.stop.is_set():
            gevent.sleep(LOOKAHEAD_S)  # arrivals dealt ahead of time reach their users
        return [self.engine.close_stage(drain=not self.stop.is_set())]


class MasterConductor(Conductor):
    """Stages over Locust messages: ``lt_open`` / ``lt_arrivals`` / ``lt_close`` to workers, ``lt_closed`` back."""

    def __init__(
        self, spec: RunSpec, recorder: Recorder, stop: Event, runner: MasterRunner, workers: list[str]
    ) -> None:
        super().__init__(spec, recorder, stop)
        self.runner = runner
        self.workers = workers
        self.batches: dict[str, list[list[float]]] = {w: [] for w in workers}
        self.closed: dict[str, dict[str, Any]] = {}
        self.closed_event = Event()
        self.flusher: Any = None

    def on_closed(self, node_id: str, data: dict[str, Any]) -> None:
        self.closed[node_id] = data
        if len(self.closed) >= len(self.workers):
            self.closed_event.set()

    def open(self, stage: Stage, index: int) -> None:
        shares = split_evenly(stage.users or 0, len(self.workers))
        self.closed, self.closed_event = {}, Event()
        for worker, share in zip(self.workers, shares, strict=True):
            self.runner.send_message(
                "lt_open", {"index": index, "share": share, "stage": asdict(stage)}, client_id=worker
            )
        self.flusher = gevent.spawn(self._flush_forever) if stage.open_loop else None

    def deal(self, seq: int, due: float, n: int) -> None:
        self.batches[self.workers[n % len(self.workers)]].append([seq, due])

    def _flush(self) -> None:
        for worker, batch in self.batches.items():
            if batch:
                self.runner.send_message("lt_arrivals", {"items": batch}, client_id=worker)
                self.batches[worker] = []

    def _flush_forever(self) -> None:
        while True:
            self._flush()
            gevent.sleep(LOOKAHEAD_S / 5)

    def close(self) -> list[dict[str, Any]]:
        if self.flusher is not None:
            self.flusher.kill()
            self._flush()
            gevent.sleep(LOOKAHEAD_S)
        self.runner.send_message("lt_close", {"drain": not self.stop.is_set()})
        self.closed_event.wait(self.spec.drain_timeout_s + 15.0)
        missing = [w for w in self.workers if w not in self.closed]
        if missing:
            self.recorder.event("workers_lost", workers=missing)
        return list(self.closed.values())


class Forwarder:
    """A worker's record sink: batches of JSON lines to the master every 100 ms (or sooner when large)."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.lines: list[bytes] = []

    def __call__(self, line: bytes) -> None:
        self.lines.append(line)
        if len(self.lines) >= 500:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            payload, self.lines = b"".join(self.lines), []
            self.runner.send_message("lt_records", {"lines": payload})

    def forever(self) -> None:
        while True:
            gevent.sleep(FORWARD_EVERY_S)
            self.flush()


def _install_signals(stop: Event, interrupted: list[str]) -> None:
    def on_signal(signame: str) -> None:
        interrupted.append(signame)
        stop.set()

    gevent.signal_handler(signal.SIGINT, on_signal, "SIGINT")
    gevent.signal_handler(signal.SIGTERM, on_signal, "SIGTERM")


def _spawn_users(runner: Any, users: int, stop: Event) -> int:
    runner.start(users, spawn_rate=max(100.0, users * 50.0), wait=False)
    deadline = time.monotonic() + 60
    while runner.user_count < users and time.monotonic() < deadline and not stop.is_set():
        gevent.sleep(0.02)
    return int(runner.user_count)


def run_local(spec: RunSpec, run_dir: Path) -> int:
    global _ENGINE
    stop, interrupted = Event(), []  # type: ignore[var-annotated]
    _install_signals(stop, interrupted)
    recorder = Recorder(run_dir, f"local-{os.getpid()}")
    engine = Engine(spec, f"local-{os.getpid()}", 0, 1, recorder.write)
    _ENGINE = engine
    runner = Environment(user_classes=[LLMUser]).create_local_runner()
    users = _spawn_users(runner, engine.users, stop)
    recorder.event("run_start", users=users, workers=1, auth=engine.auth.describe())
    engine.report = lambda kind, fields: recorder.event(kind, **fields)
    refresher = gevent.spawn(engine.refresh_credentials_forever, engine.report)
    try:
        run_stages(LocalConductor(spec, recorder, stop, engine), spec)
    finally:
        refresher.kill()
        engine.gate.close()
        runner.quit()  # kills user greenlets; in-flight requests record themselves as cancelled
        recorder.event(
            "run_end", interrupted=bool(interrupted), records=recorder.records, errors=recorder.errors
        )
        recorder.close()
    return EXIT_INTERRUPTED if interrupted else 0


def run_master(spec: RunSpec, run_dir: Path, workers: int, bind_host: str, port: int) -> int:
    stop, interrupted = Event(), []  # type: ignore[var-annotated]
    _install_signals(stop, interrupted)
    recorder = Recorder(run_dir, f"master-{os.getpid()}")
    runner = Environment(user_classes=[LLMUser]).create_master_runner(bind_host, port)
    ready: dict[str, bool] = {}
    finished: dict[str, bool] = {}
    conductor: MasterConductor | None = None
    runner.register_message("lt_records", lambda environment, msg: recorder.write(msg.data["lines"]))
    runner.register_message("lt_ready", lambda environment, msg: ready.__setitem__(msg.node_id, True))
    runner.register_message("lt_finished", lambda environment, msg: finished.__setitem__(msg.node_id, True))
    runner.register_message(
        "lt_event", lambda environment, msg: recorder.event(msg.data["kind"], **msg.data["fields"])
    )
    runner.register_message(
        "lt_closed",
        lambda environment, msg: conductor.on_closed(msg.node_id, msg.data) if conductor else None,
    )
    deadline = time.monotonic() + 60
    while runner.worker_count < workers and time.monotonic() < deadline and not stop.is_set():
        gevent.sleep(0.05)
    ids = sorted((c.id for c in runner.clients.all), key=runner.get_worker_index)[:workers]
    if len(ids) < workers:
        recorder.event("run_end", interrupted=True, records=0, errors=0, reason="workers did not connect")
        print(f"engine: only {len(ids)} of {workers} workers connected within 60 s", file=sys.stderr)
        runner.quit()
        return 1
    for k, worker in enumerate(ids):
        runner.send_message(
            "lt_spec", {"spec": spec.to_public_dict(), "index": k, "workers": workers}, client_id=worker
        )
    while len(ready) < workers and time.monotonic() < deadline + 30 and not stop.is_set():
        gevent.sleep(0.05)
    per_worker = users_per_worker(spec.pool_size, workers)
    users = _spawn_users(runner, per_worker * workers, stop)
    recorder.event("run_start", users=users, workers=workers)
    conductor = MasterConductor(spec, recorder, stop, runner, ids)
    try:
        run_stages(conductor, spec)
    finally:
        runner.send_message("lt_finish", {"abort": bool(interrupted)})
        end = time.monotonic() + 15
        while len(finished) < workers and time.monotonic() < end:
            gevent.sleep(0.05)
        recorder.event(
            "run_end", interrupted=bool(interrupted), records=recorder.records, errors=recorder.errors
        )
        runner.quit()
        recorder.close()
    return EXIT_INTERRUPTED if interrupted else 0


def run_worker(master_host: str, port: int) -> int:
    global _ENGINE
    runner = Environment(user_classes=[LLMUser]).create_worker_runner(master_host, port)
    forwarder = Forwarder(runner)
    greenlets: list[Any] = []

    def report(kind: str, fields: dict[str, Any]) -> None:
        runner.send_message("lt_event", {"kind": kind, "fields": fields})

    def on_spec(environment: Any, msg: Any) -> None:
        global _ENGINE
        spec = RunSpec.from_dict(msg.data["spec"])
        name = f"worker{msg.data['index']}-{os.getpid()}"
        _ENGINE = Engine(spec, name, msg.data["index"], msg.data["workers"], forwarder)
        greenlets.append(gevent.spawn(forwarder.forever))
        _ENGINE.report = report
        greenlets.append(gevent.spawn(_ENGINE.refresh_credentials_forever, report))
        runner.send_message("lt_ready", {"worker": name})

    def on_open(environment: Any, msg: Any) -> None:
        assert _ENGINE is not None
        stage = RunSpec.stage_from_dict(msg.data["stage"])
        _ENGINE.open_stage(stage, msg.data["index"], msg.data["share"])

    def on_arrivals(environment: Any, msg: Any) -> None:
        assert _ENGINE is not None
        for seq, due in msg.data["items"]:
            _ENGINE.schedule(int(seq), float(due))

    def on_close(environment: Any, msg: Any) -> None:
        def close() -> None:
            assert _ENGINE is not None
            result = _ENGINE.close_stage(drain=bool(msg.data.get("drain", True)))
            forwarder.flush()  # every record of the stage reaches the master before the stage ends there
            runner.send_message("lt_closed", result)

        gevent.spawn(close)

    def on_finish(environment: Any, msg: Any) -> None:
        if _ENGINE is not None:
            _ENGINE.gate.close()
        if msg.data.get("abort"):
            runner.stop()  # kills users: in-flight requests record themselves as cancelled
        forwarder.flush()
        runner.send_message("lt_finished", {})

    for name, handler in (
        ("lt_spec", on_spec),
        ("lt_open", on_open),
        ("lt_arrivals", on_arrivals),
        ("lt_close", on_close),
        ("lt_finish", on_finish),
    ):
        runner.register_message(name, handler)
    gevent.signal_handler(signal.SIGTERM, runner.quit)
    gevent.signal_handler(signal.SIGINT, lambda: None)  # the master decides when a run ends
    runner.greenlet.join()
    for greenlet in greenlets:
        greenlet.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.engine")
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--master", action="store_true")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bind-host", default="127.0.0.1")
    parser.add_argument("--master-host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5557)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="engine: %(message)s")
    logging.getLogger("locust").setLevel(logging.ERROR)
    if args.worker:
        return run_worker(args.master_host, args.port)
    if args.run_dir is None:
        parser.error("RUN_DIR is required")
    spec = RunSpec.read(args.run_dir / SPEC_FILE)
    if args.master:
        return run_master(spec, args.run_dir, args.workers, args.bind_host, args.port)
    return run_local(spec, args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
