"""The engine's users and what one engine process shares: :class:`StageGate`, :class:`Engine`, :class:`LLMUser`.

:class:`StageGate` says which stage is on, which users may send, and holds the open-loop arrival queue and the
in-flight count; :class:`Engine` is one process's state (request factory, transport, credentials, record sink) and
sends one request with its retries; :class:`LLMUser` is the Locust user that takes the next closed-loop turn or
open-loop arrival. The rules applied are pure functions elsewhere (:mod:`loadtest.engine.distribute`,
:mod:`loadtest.client.execute`, :mod:`loadtest.engine.sampling` for which requests become samples).

While a stage is open the engine watches its own event loop (:class:`loadtest.engine.loopdelay.LoopMonitor`, a
greenlet that sleeps 10 ms at a time and records how late it woke) and reports the stage's loop delay p50 / p99 /
max beside its CPU share. Test hook: with ``LOADTEST_TEST_ENGINE_BURN_MS=B`` in the environment, a greenlet also
busy-loops B ms without yielding, then yields, for as long as a stage is open — a saturated engine on demand for
the tests of the generator's self-check (:func:`loadtest.engine.loopdelay.burn_forever`); never set it otherwise.

Part of the engine's gevent door: imported only in ``python -m loadtest.engine``, after
:mod:`loadtest.engine.roles` has monkey-patched the process. The role running the process installs its engine
with ``LLMUser.engine = ...`` (a worker's users can spawn before the run's spec arrives, so it may be unset).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import gevent
from gevent.event import Event
from gevent.queue import Queue
from locust import User, constant, task
from locust.env import Environment

from loadtest.client.auth import AuthOptions, AuthProvider, resolve_auth
from loadtest.client.clock import EpochClock
from loadtest.client.execute import Capture, RecordContext, execute_request
from loadtest.client.protocol import PreparedRequest
from loadtest.client.records import RequestRecord, dump_record
from loadtest.client.scrub import header_secrets
from loadtest.engine.distribute import closed_loop_seq, users_per_worker
from loadtest.engine.gevent_transport import GeventTransport
from loadtest.engine.health import Backoff, backs_off
from loadtest.engine.loopdelay import LoopMonitor, burn_forever, burn_seconds
from loadtest.engine.sampling import Sampler
from loadtest.errors import LoadtestError
from loadtest.spec.runspec import RunSpec, Stage
from loadtest.spec.workload import RequestFactory

__all__ = ["CUT_WAIT_S", "DrainCut", "Engine", "LLMUser", "Pacing", "StageGate", "next_ticket"]


def _next_turn() -> None:
    """Yield until the loop's next turn: a timer due at once. ``gevent.sleep(0)`` would not do — gevent runs up to
    50 such callbacks in a row before it polls for I/O again, so a burner yielding that way holds the loop for
    50 burns at a time, not one."""
    gevent.sleep(1e-6)


CUT_WAIT_S = 2.0  # how long a stage waits for what it cut to record itself


class DrainCut(BaseException):
    """Raised in a request or flow still running when its stage's drain timed out (:meth:`Engine.cut_inflight`)."""


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

    def wait_change(self, timeout: float | None = None) -> None:
        """Until the stage opens or closes (or ``timeout`` seconds pass)."""
        self._changed.wait(timeout)

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
        # a Python scenario's calls are built by its flows (loadtest.engine.flows), not drawn from classes
        self.factory = (
            RequestFactory(spec.endpoint, spec.request_classes, spec.seed, spec.prompts)
            if spec.python is None
            else None
        )
        self.include_usage: bool | None = None  # False once the endpoint rejected stream_options
        self.flows_started = 0  # this process's flows: a flow's id is "{name}/{n}"
        self.flow_sink: Callable[[bytes], None] = lambda _line: (
            None
        )  # flows.jsonl lines (loadtest.engine.flows)
        self.step_kinds: dict[str, str] = {}  # a flow step's name -> its kind (one kind per step)
        self.scenario_errors: set[tuple[str | None, str]] = set()  # reported once each
        self.working: set[Any] = set()  # the users' greenlets while they send a request or run a flow
        self.closed_n = 0
        pool = users_per_worker(spec.pool_size, workers)
        self.users = pool
        self.transport = GeventTransport(
            spec.endpoint.base_url, pool, spec.connect_timeout_s, spec.read_timeout_s
        )
        self.auth = _auth_for(spec)
        self.sampler = Sampler()
        self.cpu_at_open = 0.0
        self.wall_at_open = 0.0
        self.loop = LoopMonitor(time.monotonic, gevent.sleep)
        self.burn_s = burn_seconds(os.environ)  # the test hook (module docstring); None in every real run
        self._watchers: list[gevent.Greenlet] = []
        self.report: Callable[[str, dict[str, Any]], None] = lambda _kind, _fields: None
        # stop the run: a Python scenario that cannot run as its stages say (set by the role running this process)
        self.abort: Callable[[str], None] = lambda _reason: None

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
        """Ask the provider again; reported when the credential changed (the headers stay in memory)."""
        try:
            before = self.auth.headers()
            self.auth.refresh()
            if self.auth.headers() != before:
                report("auth_refreshed", {"expires_at": self.auth.expires_at, "by": self.name, "why": why})
        except LoadtestError as exc:
            report("auth_refresh_failed", {"detail": str(exc), "by": self.name})

    def emit(self, request: PreparedRequest, capture: Capture, record: RequestRecord) -> None:
        """Send ``record`` to the sink, with its sample when it is one (:class:`Sampler`)."""
        sample = self.sampler.finish(record, request, capture, lambda: header_secrets(self.auth.headers()))
        self.sink(dump_record(record, sample))

    def flow_capture(self, request_class: str) -> tuple[Capture, Capture]:
        """A flow's call always collects its text (the flow uses the answer): the capture it is sent with, and the
        one the sampler judges — the same when the sampler chose this call as a sample, else only its error body."""
        chosen = self.sampler.capture(request_class)
        if chosen.content is not None:
            return chosen, chosen
        return Capture(content=[]), chosen

    def open_stage(self, stage: Stage, index: int, share: int) -> None:
        ctx = RecordContext(
            run_id=self.spec.run_id,
            stage=stage.label,
            endpoint=self.spec.endpoint.name,
            worker=self.name,
            keep_gaps=self.spec.keep_gaps,
        )
        self.closed_n = 0
        self.stop_watchers()
        self.loop = LoopMonitor(time.monotonic, gevent.sleep)
        self._watchers.append(gevent.spawn(self.loop.run_forever))
        if self.burn_s is not None:
            self.report("test_engine_burn", {"burn_ms": self.burn_s * 1000, "by": self.name})
            self._watchers.append(gevent.spawn(burn_forever, self.burn_s, time.monotonic, _next_turn))
        self.cpu_at_open, self.wall_at_open = time.process_time(), time.monotonic()
        self.gate.open(stage, index, share, ctx)

    def cut_inflight(self) -> int:
        """Stop the requests and flows still running when their stage's drain timed out (:class:`DrainCut` raised
        where each one waits: a request in flight is recorded ``cancelled``, a flow too, and the user goes on), so
        none carries its load into the next stage. Returns how many there were."""
        working = list(self.working)
        loop = gevent.get_hub().loop
        for glet in working:
            # thrown from the loop, and only if that greenlet is still at work then (it leaves the set as it ends)
            loop.run_callback(lambda g=glet: g.throw(DrainCut) if g in self.working else None)
        return len(working)

    def stop_watchers(self) -> None:
        """End the stage's loop monitor (and the test hook's burner)."""
        gevent.killall(self._watchers)
        self._watchers = []

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
        cut = self.cut_inflight() if drain and not drained else 0
        if cut:
            drained = self.gate.drained.wait(CUT_WAIT_S)
        wall = time.monotonic() - self.wall_at_open
        cpu = time.process_time() - self.cpu_at_open
        self.stop_watchers()
        return {
            "worker": self.name,
            "dropped": dropped,
            "no_free_user": self.gate.no_free_user,
            "inflight": self.gate.inflight,
            "drained": bool(drained) and self.gate.inflight == 0,
            "cpu_share": cpu / wall if wall > 0 else None,
            "cut": cut,
            **self.loop.histogram.summary(),
        }

    def next_closed_seq(self) -> int:
        seq = closed_loop_seq(self.gate.index, self.index, self.workers, self.closed_n)
        self.closed_n += 1
        return seq

    def send(self, seq: int, scheduled_at: float) -> RequestRecord:
        """Send request ``seq`` of the scenario's classes (:meth:`attempts`); returns the last attempt's record."""
        factory, gate = self.factory, self.gate
        ctx = gate.ctx
        assert factory is not None and ctx is not None
        gate.started_in_stage += 1
        self.enter()
        try:
            record, _ = self.attempts(seq, scheduled_at, lambda: factory.make(seq), self._sample_capture, ctx)
            return record
        finally:
            self.leave()

    def _sample_capture(self, request_class: str) -> tuple[Capture, Capture]:
        capture = self.sampler.capture(request_class)
        return capture, capture

    def enter(self) -> None:
        """A request (or a flow) is in flight in this greenlet: the stage's drain waits for it."""
        self.gate.inflight += 1
        self.gate.drained.clear()
        self.working.add(gevent.getcurrent())

    def leave(self) -> None:
        self.working.discard(gevent.getcurrent())
        gate = self.gate
        gate.inflight -= 1
        if gate.inflight == 0:
            gate.drained.set()

    def attempts(
        self,
        seq: int,
        scheduled_at: float,
        make: Callable[[], PreparedRequest],
        captures: Callable[[str], tuple[Capture, Capture]],
        ctx: RecordContext,
        flow: tuple[str, int] | None = None,
    ) -> tuple[RequestRecord, Capture]:
        """Send the request ``make`` builds; after a 429, retry it as the scenario's ``[retry]`` policy says; after a
        400 that rejects ``stream_options``, once more without it (``make`` builds it again). Returns the last
        attempt's record and what its response said (``captures`` gives, per attempt, the capture to send with and
        the one the sampler judges). ``flow``: the flow id and step index a flow's call records."""
        gate = self.gate
        retry = self.spec.retry
        attempt = 0
        while True:
            request = make()
            capture, judged = captures(request.request_class)
            record = execute_request(
                self.transport,
                request,
                self.auth.headers(),
                self.clock,
                ctx,
                seq=seq,
                scheduled_at=scheduled_at,
                emit=partial(self._emit_judged, request, capture, judged),
                attempt=attempt,
                capture=capture,
                flow=flow,
            )
            if record.status == 400 and b'"stream_options"' in request.body:
                # external models (e.g. Bedrock behind Databricks) reject stream_options: send this request
                # again without it, and no more of it for the rest of the run (usage then falls back to the
                # client count)
                if self.include_usage is None:
                    self.include_usage = False
                    if self.factory is not None:
                        self.factory.include_usage = False
                    self.report("stream_options_rejected", {"detail": record.error_detail, "by": self.name})
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
                return record, capture
            wait = min(
                record.retry_after_s if record.retry_after_s is not None else 1.0,
                float(retry.max_wait_s),
            )
            gevent.sleep(wait)
            if not gate.accepting:
                return record, capture
            attempt += 1
            scheduled_at = self.clock()

    def _emit_judged(
        self, request: PreparedRequest, capture: Capture, judged: Capture, record: RequestRecord
    ) -> None:
        if judged is not capture:  # a flow's call the sampler did not choose: judged on its error body only
            judged.error_body = capture.error_body
        self.emit(request, judged, record)


def next_ticket(engine: Engine, index: int) -> tuple[int, float, bool] | None:
    """What user ``index`` does next: ``(seq, scheduled_at, closed_loop)`` — the next open-loop arrival from the
    stage's queue (scheduled at its arrival time), or a closed-loop turn now when the stage admits this user — or
    None when there is none (the user waited for the queue or for the stage to change)."""
    gate = engine.gate
    stage = gate.stage
    if stage is not None and stage.open_loop and gate.accepting:
        gate.idle += 1
        try:
            item = gate.arrivals.get()
        finally:
            gate.idle -= 1
        return (item[0], item[1], False) if item[0] >= 0 else None
    if not gate.admits(index):
        gate.wait_change()
        return None
    return engine.next_closed_seq(), engine.clock(), True


class Pacing:
    """One user's back-off after failures (:class:`loadtest.engine.health.Backoff`, jitter seeded by the run's
    seed and the user's index): none until the first failure that calls for it."""

    _counter = 0  # users of this process, in spawn order, whatever their class

    def __init__(self) -> None:
        self.index = Pacing._counter
        Pacing._counter += 1
        self.backoff: Backoff | None = None

    def after(self, engine: Engine, record: RequestRecord, closed_loop: bool) -> None:
        """Wait as the back-off says after ``record`` (waking early when the stage changes)."""
        backoff = self.backoff
        if backoff is None:
            if not backs_off(record.status, record.error_class, closed_loop, record.retry_after_s):
                return  # the hot path: a success or an answer, and this user never had to back off
            rand = random.Random(f"{engine.spec.seed}/backoff/{engine.index}/{self.index}").random
            backoff = self.backoff = Backoff(rand)
        wait = backoff.after(record.status, record.error_class, closed_loop, record.retry_after_s)
        if wait > 0:
            engine.gate.wait_change(wait)


class LLMUser(User):
    """Closed loop: while its stage admits it, the user sends its next request as soon as the last one ends.
    Open loop: the user takes the next arrival from the stage's queue (its ``scheduled_at`` is the arrival time).

    After a request that got no response (refused, reset, timed out before any status) — or, in a closed loop, a
    429 or 5xx answer, and in either loop a 503 that said when to come back (``Retry-After``) — the user backs off
    before its next one (:class:`Pacing`), waking early when its stage ends. An open-loop arrival is never lost
    meanwhile: it waits in the queue for a free user, and the stage's self-check counts it (``no_free_user``)."""

    wait_time = constant(0)
    engine: ClassVar[Engine | None] = None  # set by the role running this process

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.pacing = Pacing()

    @task
    def work(self) -> None:
        engine = LLMUser.engine
        if engine is None:  # a worker's users can spawn before the run's spec arrives
            gevent.sleep(0.05)
            return
        ticket = next_ticket(engine, self.pacing.index)
        if ticket is not None:
            seq, scheduled_at, closed_loop = ticket
            try:
                record = engine.send(seq, scheduled_at)
            except DrainCut:  # its stage's drain timed out: recorded as cancelled
                return
            self.pacing.after(engine, record, closed_loop)
