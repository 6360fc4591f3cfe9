"""The simulator's application: routing, auth, quotas, faults, the replicas' step timers, counters.

Lives on one event loop; :mod:`loadtest.sim.server` runs it. The HTTP surface is described there.

Order of the gates on a model request: route, method, auth (``api_token`` and/or OAuth tokens), body, an injected
HTTP fault (:mod:`loadtest.sim.faults`), the PPT quotas (:mod:`loadtest.sim.quota`; a 429 consumes nothing), the
endpoint's scale (:mod:`loadtest.sim.scaling`: at zero replicas a request is held until a replica is up — a 504 after
``hold_timeout_s`` — or refused with 503 and ``Retry-After``), the batching model. A request admitted by the quotas
but refused by the model (400) is refunded. A held stream's headers go out when it reaches a replica.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from loadtest.model.roofline import kv_capacity_tokens
from loadtest.sim.batching import BatchRequest, Cluster, TokenEvent
from loadtest.sim.config import SimConfig
from loadtest.sim.documents import (
    LastMinute,
    databricks_metrics_text,
    endpoint_document,
    host_metadata,
    metrics_text,
    models_document,
    oidc_discovery,
    optimization_info,
)
from loadtest.sim.faults import FaultInjector, FaultPlan
from loadtest.sim.http11 import Connection, HttpError, Job, Request, error_body
from loadtest.sim.oauth import OAuthIssuer
from loadtest.sim.quota import Quota, Rejection, Ticket
from loadtest.sim.responses import EmbeddingJob, Generation, parse_embedding, parse_generation
from loadtest.sim.scaling import Autoscaler
from loadtest.sim.timing import KEEP_STEPS, FirstTokens, LagMonitor
from loadtest.sim.tokens import TokenRule, TokenText

__all__ = ["App"]

_MAX_LAG_S: Final = 0.25
# token events written per turn of the event loop, after a step's first tokens: between two slices the loop reads
# requests and fires the other replicas' step timers, instead of waiting for a whole batch's writes (≈ 5-10 µs each
# on loopback: 2.5-5 ms for 500 streams)
_SLICE: Final = 64
_TOKEN_PATH: Final = "/oidc/v1/token"
# what the Databricks SDK reads before it authenticates: the host's metadata, then its OIDC endpoints
_HOST_METADATA: Final = "/.well-known/databricks-config"
_OIDC_DISCOVERY: Final = "/oidc/.well-known/oauth-authorization-server"
_OPEN_PATHS: Final = frozenset(
    {"/health", "/metrics", "/sim/stats", "/sim/timings", _TOKEN_PATH, _HOST_METADATA, _OIDC_DISCOVERY}
)
_OPT_INFO: Final = "/api/2.0/serving-endpoints/get-model-optimization-info/"
_HTTP_FAULTS: Final = {
    "http_429": (429, "rate_limit_exceeded", "REQUEST_LIMIT_EXCEEDED", "Injected fault: rate limit exceeded"),
    "http_500": (500, "server_error", "INTERNAL_ERROR", "Injected fault: internal server error"),
    "http_503": (503, "server_error", "TEMPORARILY_UNAVAILABLE", "Injected fault: service unavailable"),
}


def _base_url(req: Request) -> str:
    """The URL the client reached this server at (its ``Host`` header), for documents that name other paths."""
    return "http://" + (req.headers.get("host") or "127.0.0.1")


@dataclass(slots=True, eq=False)
class _Writes:
    """A step's token events, written from ``pos`` on (:meth:`App._write`)."""

    events: list[TokenEvent]
    due: float
    pos: int = 0


@dataclass(slots=True, eq=False)
class _Held:
    """A request that arrived while the endpoint had no replica: ``go`` sends it to one (and starts its stream)."""

    conn: Connection
    request_id: str
    databricks: bool
    go: Callable[[], None]
    timer: asyncio.TimerHandle | None = field(default=None)


def rate_limit_error(rejection: Rejection, endpoint: str) -> HttpError:
    """The 429 of a quota: Databricks' documented body on OpenAI paths, ``REQUEST_LIMIT_EXCEEDED`` on its own."""
    return HttpError(
        429,
        rejection.databricks_message(endpoint),
        "rate_limit_exceeded",
        "REQUEST_LIMIT_EXCEEDED",
        headers=(("retry-after", str(rejection.retry_after_s)),),
        detail=rejection.openai_detail(),
    )


class App:
    """Routing, auth, quotas, faults, the batching model's replicas and their step timers, counters. One event loop.

    ``clock`` (default ``loop.time``) times the quotas and OAuth token expiry; tests inject a fake one.
    """

    def __init__(
        self, config: SimConfig, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] | None = None
    ) -> None:
        self.config, self.loop = config, loop
        self.clock = clock or loop.time
        self.serving = config.serving_config()
        self.model_server = config.serving_model()  # the batching model's replicas, or the fixed slots
        self.deployment = self.serving.deployment
        self.arch = self.deployment.architecture
        self.model = config.served_model_name
        self.text = TokenText(config.seed)
        self.token_rule = TokenRule(config.tokens_per_word, config.template_tokens)
        server = self.model_server
        self.prefix_cache = isinstance(server, Cluster) and any(r.prefix is not None for r in server.replicas)
        self.jobs: dict[int, tuple[Job, int]] = {}  # sequence id -> (job, its home: the replica index)
        self.tickets: dict[int, Ticket] = {}  # sequence id -> what a generation charged the quotas
        self.connections: set[Connection] = set()
        self.counters: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.max_lag_s = 0.0
        self.lag = LagMonitor(loop)  # started by the server (start_monitor)
        self.first_tokens = FirstTokens()
        self.step_writes: deque[tuple[float, float]] = deque(maxlen=KEEP_STEPS)  # (deadline, last write)
        self._arrived: dict[
            int, tuple[str, float]
        ] = {}  # sequence id -> (request id, arrival), until its 1st token
        self.last_minute = LastMinute()  # answers by status, for the Databricks metrics export
        n = len(self.model_server.lanes)
        self._deadlines = [0.0] * n
        self._timers: list[asyncio.TimerHandle | None] = [None] * n
        self._queue: deque[_Writes] = deque()  # steps whose tokens are not all written, oldest first
        self._draining = False
        self._ids, self._seq_ids, self._prefix = 0, 0, os.urandom(3).hex()
        self._auth = ("Bearer " + config.api_token).encode() if config.api_token else None
        limits = config.quota_limits()
        self.quota = Quota(limits, self.clock) if limits is not None else None
        self.oauth: OAuthIssuer | None = None
        if config.oauth_client_id is not None and config.oauth_client_secret is not None:
            self.oauth = OAuthIssuer(
                config.oauth_client_id, config.oauth_client_secret, config.oauth_token_ttl_s, self.clock
            )
        faults = config.faults
        self.faults = FaultInjector(faults, config.seed) if faults is not None and faults.active else None
        self.chunk = config.throughput_chunk_size
        self.created = int(time.time())
        scaling = config.scaling_config()
        self.scaler = Autoscaler(scaling, self.clock) if scaling is not None else None
        self.held: deque[_Held] = deque()  # requests waiting for the endpoint to come up from zero
        self.scale_counts: Counter[str] = Counter()
        self._scale_timer: asyncio.TimerHandle | None = None
        self._scale_due = 0.0
        if self.scaler is not None:
            assert isinstance(
                self.model_server, Cluster
            )  # SimConfig allows scaling for the batching model only
            self.model_server.active = self.scaler.replicas
            self._arm_scaler()
        self.routes: dict[str, tuple[str, Callable[[Connection, Request], None]]] = {
            "/health": ("GET", lambda c, r: c.respond(200, b"{}", r.request_id)),
            "/metrics": ("GET", lambda c, r: c.respond(200, metrics_text(self.model, self.snapshot()),
                                                       r.request_id, "text/plain; version=0.0.4")),
            "/sim/stats": ("GET", lambda c, r: self._json(c, r, self.snapshot())),
            "/sim/timings": ("GET", lambda c, r: self._json(c, r, self.timings())),
            "/v1/models": ("GET", lambda c, r: self._json(c, r, models_document(self.model, self.arch,
                                                                               self.created))),
            "/v1/chat/completions": ("POST", lambda c, r: self._generate(c, r, self._body(r), chat=True)),
            "/v1/completions": ("POST", lambda c, r: self._generate(c, r, self._body(r), chat=False)),
            "/v1/embeddings": ("POST", lambda c, r: self._embed(c, r, self._body(r))),
            "/serving-endpoints/chat/completions": ("POST", lambda c, r: self._generate(c, r, self._db(r), True)),
            "/serving-endpoints/completions": ("POST", lambda c, r: self._generate(c, r, self._db(r), False)),
            "/serving-endpoints/embeddings": ("POST", lambda c, r: self._embed(c, r, self._db(r))),
            _HOST_METADATA: ("GET", lambda c, r: self._json(c, r, host_metadata(_base_url(r), self._prefix))),
            _OIDC_DISCOVERY: ("GET", lambda c, r: self._json(c, r, oidc_discovery(_base_url(r)))),
        }  # fmt: skip
        if self.oauth is not None:
            self.routes[_TOKEN_PATH] = ("POST", self._token)

    def new_request_id(self) -> str:
        self._ids += 1
        return f"{self._prefix}-{self._ids:08x}"

    def new_seq_id(self) -> int:
        self._seq_ids += 1
        return self._seq_ids

    def count_status(self, status: int) -> None:
        self.by_status[status] += 1
        self.last_minute.add(self.clock(), status)

    def count_fault(self, kind: str) -> None:
        self.faults_injected[kind] += 1

    # -- requests ------------------------------------------------------------------------------------------------

    def handle(self, conn: Connection, req: Request) -> None:
        self.counters["requests_received"] += 1
        req.request_id = self.new_request_id()
        req.databricks = req.path.startswith(("/serving-endpoints/", "/api/2.0/"))
        route = self.routes.get(req.path)
        key = req.path
        if route is None and req.path.startswith(_OPT_INFO):
            route, key = ("GET", self._optimization_info), _OPT_INFO + "{model}/{version}"
        elif route is None:
            route = self._named_route(req.path)
        self.by_path[key if route else "(unknown)"] += 1
        try:
            if route is None:
                if req.databricks:
                    raise HttpError(
                        404, f"Endpoint or path {req.path} does not exist", code="RESOURCE_DOES_NOT_EXIST"
                    )
                raise HttpError(404, f"Not found: {req.method} {req.path}", "not_found_error", "NOT_FOUND")
            if req.method != route[0]:
                raise HttpError(
                    405, f"Method {req.method} not allowed; use {route[0]}", code="METHOD_NOT_ALLOWED"
                )
            if req.path not in _OPEN_PATHS and not self._authorized(req.headers.get("authorization", "")):
                raise HttpError(
                    401, "Missing or invalid bearer token", "authentication_error", "UNAUTHENTICATED"
                )
            route[1](conn, req)
        except HttpError as err:
            conn.respond(err.status, error_body(err, req.databricks), req.request_id, headers=err.headers)

    def _authorized(self, header: str) -> bool:
        """Open when neither ``api_token`` nor OAuth is set; else ``Bearer <api_token>`` or ``Bearer <an OAuth
        token issued here and not expired>``."""
        if self._auth is None and self.oauth is None:
            return True
        if self._auth is not None and hmac.compare_digest(header.encode(), self._auth):
            return True
        scheme, _, token = header.partition(" ")
        return self.oauth is not None and scheme == "Bearer" and self.oauth.valid(token)

    @staticmethod
    def _json(conn: Connection, req: Request, document: dict[str, Any], status: int = 200) -> None:
        conn.respond(status, orjson.dumps(document), req.request_id)

    @staticmethod
    def _body(req: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            raise HttpError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return body

    def _named_route(self, path: str) -> tuple[str, Callable[[Connection, Request], None]] | None:
        """``/serving-endpoints/{name}/invocations`` and ``/api/2.0/serving-endpoints/{name}`` for any name (or the
        one ``endpoint_name`` when set)."""
        if path.startswith("/serving-endpoints/") and path.endswith("/invocations"):
            name = path[len("/serving-endpoints/") : -len("/invocations")]
            if name and "/" not in name:
                return "POST", lambda c, r: self._invocations(c, r, name)
        elif path.startswith("/api/2.0/serving-endpoints/") and path.endswith("/metrics"):
            name = path[len("/api/2.0/serving-endpoints/") : -len("/metrics")]
            if name and "/" not in name:
                return "GET", lambda c, r: self._export_metrics(c, r, name)
        elif path.startswith("/api/2.0/serving-endpoints/"):
            name = path[len("/api/2.0/serving-endpoints/") :]
            if name and "/" not in name:
                return "GET", lambda c, r: self._json(c, r, self.endpoint(self._served(name)))
        return None

    def _export_metrics(self, conn: Connection, req: Request, name: str) -> None:
        text = databricks_metrics_text(
            self._served(name), self.snapshot(), self.last_minute.counts(self.clock())
        )
        conn.respond(200, text, req.request_id, "text/plain; version=0.0.4")

    def _served(self, name: object) -> str:
        """The endpoint name a Databricks request names, if this simulator serves it; else a 404 that names it."""
        if not isinstance(name, str) or not name:
            raise HttpError(
                400, "model (the serving endpoint's name) is required", code="INVALID_PARAMETER_VALUE"
            )
        if self.config.endpoint_name is not None and name != self.config.endpoint_name:
            raise HttpError(
                404,
                f"Endpoint {name!r} does not exist (this workspace serves {self.config.endpoint_name!r})",
                code="RESOURCE_DOES_NOT_EXIST",
            )
        return name

    def _db(self, req: Request) -> dict[str, Any]:
        body = self._body(req)
        self._served(body.get("model"))
        return body

    def _token(self, conn: Connection, req: Request) -> None:
        assert self.oauth is not None
        status, document = self.oauth.token_response(req.headers.get("authorization", ""), req.body)
        self._json(conn, req, document, status)

    def _optimization_info(self, conn: Connection, req: Request) -> None:
        """For the served entity at its versions (:mod:`loadtest.sim.documents`); any other is a 404 naming it."""
        model, _, version = (urllib.parse.unquote(p) for p in req.path[len(_OPT_INFO) :].rpartition("/"))
        if not model or not version:
            raise HttpError(
                404, "use get-model-optimization-info/{model}/{version}", code="RESOURCE_DOES_NOT_EXIST"
            )
        served, latest = self.config.served_entity, self.config.entity_version
        if model != served:
            raise HttpError(
                404,
                f"Registered model {model!r} does not exist (this workspace has {served!r})",
                code="RESOURCE_DOES_NOT_EXIST",
            )
        if version != latest and not (
            version.isdigit() and latest.isdigit() and 1 <= int(version) <= int(latest)
        ):
            raise HttpError(
                404,
                f"Version {version} of registered model {model!r} does not exist (its latest is {latest})",
                code="RESOURCE_DOES_NOT_EXIST",
            )
        info = optimization_info(self.arch, self.chunk, self.config.dbus_per_chunk, self.config.optimizable)
        self._json(conn, req, info)

    def _invocations(self, conn: Connection, req: Request, name: str) -> None:
        self._served(name)
        body = self._body(req)
        if "messages" in body:
            self._generate(conn, req, body, chat=True)
        elif "prompt" in body:
            self._generate(conn, req, body, chat=False)
        elif "input" in body:
            self._embed(conn, req, body)
        else:
            raise HttpError(
                400, "body needs 'messages' (chat), 'prompt' (completions) or 'input' (embeddings)"
            )

    def _gate(
        self, prompt_tokens: int, max_tokens: int, stream: bool
    ) -> tuple[FaultPlan | None, Ticket | None]:
        """An injected HTTP fault or a quota 429 (raised), else the stream fault to apply and the quota ticket."""
        plan = self.faults.draw(max_tokens, stream) if self.faults is not None else None
        if plan is not None and not plan.in_stream:
            self.count_fault(plan.kind)
            status, kind, code, message = _HTTP_FAULTS[plan.kind]
            headers = (("retry-after", "1"),) if status == 429 else ()
            raise HttpError(status, message, kind, code, headers=headers)
        if self.quota is None:
            return plan, None
        result = self.quota.admit(prompt_tokens, max_tokens)
        if isinstance(result, Rejection):
            self.rate_limited[result.limit_type] += 1
            raise rate_limit_error(result, self.config.endpoint_name or "sim-llama")
        return plan, result

    def _generate(self, conn: Connection, req: Request, body: dict[str, Any], chat: bool) -> None:
        if self.arch.kind == "embedding":
            raise HttpError(400, f"{self.model} is an embedding model: use embeddings")
        params = parse_generation(
            body,
            chat,
            self.arch.context,
            self.config.reject_stream_options,
            self.token_rule,
            self.prefix_cache,
        )
        arrived = self.loop.time()
        plan, ticket = self._gate(params.prompt_tokens, params.max_tokens, params.stream)
        job = Generation(self, conn, req.request_id, chat, params, plan)

        def go() -> None:
            seqs = [(job.seq_id, params.prompt_tokens, params.max_tokens)]
            answer = job.answer_blocks if params.continuation is not None else None
            self._submit(conn, job, seqs, ticket, (req.request_id, arrived), params.blocks or (), answer)
            if ticket is not None:
                self.tickets[job.seq_id] = ticket
            if params.stream:
                conn.start_stream(req.request_id)

        self._when_up(conn, req, job, go)

    def _embed(self, conn: Connection, req: Request, body: dict[str, Any]) -> None:
        inputs = parse_embedding(body, self.token_rule)
        _, ticket = self._gate(sum(n for _, n in inputs), 0, False)
        job = EmbeddingJob(self, conn, req.request_id, inputs)
        seqs = [(eid, n, 0) for eid, (_, n) in zip(job.seq_ids, inputs, strict=True)]
        self._when_up(conn, req, job, lambda: self._submit(conn, job, seqs, ticket))

    # -- the endpoint's scale (loadtest.sim.scaling) ---------------------------------------------------------------

    def _when_up(self, conn: Connection, req: Request, job: Job, go: Callable[[], None]) -> None:
        """Send the request to a replica now (``go``), or hold it, or refuse it with 503, as the scale says."""
        scaler = self.scaler
        if scaler is None:
            go()
            return
        due = scaler.due()
        if scaler.cold and due is not None and self.clock() >= due:
            self._scale_tick()  # the replicas are up now, whether or not their timer has fired yet
        admission = scaler.arrive()
        if admission == "serve":
            go()
            self._demand()
            return
        self._arm_scaler()
        if admission == "refuse":
            self.scale_counts["requests_refused"] += 1
            wait = scaler.retry_after_s()
            raise HttpError(
                503,
                f"The endpoint is scaling up from zero; retry after {wait} s",
                "server_error",
                "TEMPORARILY_UNAVAILABLE",
                headers=(("retry-after", str(wait)),),
            )
        held = _Held(conn, req.request_id, req.databricks, go)
        held.timer = self.loop.call_later(scaler.config.hold_timeout_s, self._expire, held)
        self.held.append(held)
        self.scale_counts["requests_held"] += 1
        conn.active = job  # the connection waits (pipelined requests too); a client that leaves cancels it

    def _expire(self, held: _Held) -> None:
        """A request held longer than ``hold_timeout_s``: 504, as a gateway whose upstream never answered."""
        if held in self.held:
            self.held.remove(held)
        if self.scaler is not None:
            self.scaler.touch()
        conn = held.conn
        if conn.closed:
            return
        self.scale_counts["requests_timed_out"] += 1
        err = HttpError(
            504, "upstream request timeout: the endpoint did not scale up from zero in time", "server_error",
            "DEADLINE_EXCEEDED",
        )  # fmt: skip
        conn.respond(504, error_body(err, held.databricks), held.request_id)
        if conn.buf and not conn.closed:
            self.loop.call_soon(conn.data_received, b"")

    def _release_held(self) -> None:
        """Replicas are up: the held requests go to them, in arrival order (those whose client left are dropped)."""
        held, self.held = self.held, deque()
        for entry in held:
            if entry.timer is not None:
                entry.timer.cancel()
            if entry.conn.closed:
                continue
            try:
                entry.go()
            except HttpError as err:
                entry.conn.respond(err.status, error_body(err, entry.databricks), entry.request_id)

    def _demand(self) -> None:
        """Tell the scale how many requests are outstanding (it may start a replica), and re-arm its timer."""
        assert self.scaler is not None
        server = self.model_server
        self.scaler.demand(server.waiting + server.running + len(self.held), self.serving.max_batch)
        self._arm_scaler()

    def _arm_scaler(self) -> None:
        """A timer for the scale's next change, unless one is armed at or before it (an early one re-arms)."""
        assert self.scaler is not None
        due = self.scaler.due()
        if due is None or (self._scale_timer is not None and self._scale_due <= due):
            return
        if self._scale_timer is not None:
            self._scale_timer.cancel()
        self._scale_due = due
        self._scale_timer = self.loop.call_later(max(0.0, due - self.clock()), self._scale_tick)

    def _scale_tick(self) -> None:
        assert self.scaler is not None and isinstance(self.model_server, Cluster)
        self._scale_timer = None
        server = self.model_server
        before = self.scaler.replicas
        after = self.scaler.advance(server.waiting + server.running + len(self.held))
        if after != before:
            server.active = after
            if before == 0:
                self._release_held()
            elif after > before:
                self._rebalance(server)
        self._demand()

    def _rebalance(self, server: Cluster) -> None:
        """New replicas take their share of the requests queued on the others (the endpoint has one queue)."""
        woken: set[int] = set()
        for request_id, home in server.rebalance():
            job, _ = self.jobs[request_id]
            self.jobs[request_id] = (job, home)
            woken.add(home)
        now = self.loop.time()
        for index in sorted(woken):
            if self._timers[index] is None:
                self._start_step(index, now)

    def _submit(
        self,
        conn: Connection,
        job: Job,
        seqs: list[tuple[int, int, int]],
        ticket: Ticket | None,
        arrival: tuple[str, float] | None = None,
        blocks: tuple[int, ...] = (),
        answer: Callable[[int], Sequence[int]] | None = None,
    ) -> None:
        """Queue a request's sequences on a replica; ``arrival`` (request id, when it arrived) asks for its first
        token's times in :attr:`first_tokens`; ``blocks``: the prompt's block hashes, ``answer``: its answer's
        (:attr:`BatchRequest.answer`; a generation, one sequence)."""
        server = self.model_server
        try:
            batch = [BatchRequest(eid, prompt, out, blocks, answer) for eid, prompt, out in seqs]
            home = server.submit_all(batch)
        except ValueError as exc:
            if ticket is not None and self.quota is not None:
                self.quota.cancel(ticket)
            raise HttpError(400, str(exc)) from None
        for eid, prompt, _ in seqs:
            self.jobs[eid] = (job, home)
            self.counters["prompt_tokens"] += prompt
        if arrival is not None:
            self._arrived[seqs[0][0]] = arrival
        conn.active = job
        now = self.loop.time()
        for index in server.wake(home):
            if self._timers[index] is None:
                self._start_step(index, now)

    def finish(self, conn: Connection, request_id: str, body: bytes | None, completed: bool = True) -> None:
        """A job is done: send its body (or end the stream already written), then serve what is buffered."""
        if completed:
            self.counters["requests_completed"] += 1
        if self.scaler is not None:
            self.scaler.touch()
        if body is None:
            self.count_status(200)
            conn.done()
        else:
            conn.respond(200, body, request_id)
        if conn.buf and not conn.closed:
            self.loop.call_soon(conn.data_received, b"")

    def reject(self, conn: Connection, status: int, message: str) -> None:
        """A request that could not even be parsed."""
        self.counters["requests_received"] += 1
        conn.respond(status, error_body(HttpError(status, message), False), self.new_request_id())

    def _forget(self, seq_id: int) -> None:
        entry = self.jobs.pop(seq_id, None)
        self._arrived.pop(seq_id, None)
        if entry is not None:
            self.model_server.cancel(seq_id, entry[1])

    def drop(self, seq_ids: list[int]) -> None:
        """The client went away: its sequences leave the batch."""
        self.counters["requests_cancelled"] += 1
        for eid in seq_ids:
            self._forget(eid)
        if self.scaler is not None:
            self.scaler.touch()

    def abandon(self, seq_id: int, produced: int) -> None:
        """A faulted stream ended early: the sequence leaves the batch and its quota settles."""
        self._forget(seq_id)
        self.release(seq_id, produced)

    def release(self, seq_id: int, produced: int) -> None:
        """A generation is over after ``produced`` tokens: credit its unused OTPM reservation back (once)."""
        ticket = self.tickets.pop(seq_id, None)
        if ticket is not None and self.quota is not None:
            self.quota.release(ticket, produced)

    # -- replica steps --------------------------------------------------------------------------------------------

    def _start_step(self, index: int, t0: float) -> None:
        plan = self.model_server.lanes[index].next_step()
        if plan is None:
            self._timers[index] = None
            return
        if plan.cached:  # each admitted generation learns how much of its prompt the prefix cache held
            jobs = self.jobs
            for seq_id, cached in zip(plan.admitted, plan.cached, strict=True):
                entry = jobs.get(seq_id)
                if cached and entry is not None and isinstance(entry[0], Generation):
                    entry[0].cached_tokens = cached
        self._deadlines[index] = deadline = t0 + plan.duration_s
        self._timers[index] = self.loop.call_at(deadline, self._end_step, index)

    def _end_step(self, index: int) -> None:
        """A step's time is over: plan the lane's next step at once, from this one's deadline (the model's time,
        not now: lateness does not accumulate), write the step's first tokens, and queue its other tokens. The
        queue is first in, first out, so a stream's tokens are written in order even when its last step's are not
        all written yet (a busy loop)."""
        deadline = self._deadlines[index]
        events = self.model_server.lanes[index].finish_step()
        self.counters["steps"] += 1
        lag = self.loop.time() - deadline
        self.max_lag_s = max(self.max_lag_s, lag)
        if lag > _MAX_LAG_S:
            self.counters["step_resyncs"] += 1
            self._start_step(index, deadline + lag)
        else:
            self._start_step(index, deadline)
        writes = _Writes(events, deadline)
        first = 0  # the sequences admitted in the step lead the list (Replica.finish_step): 0 or 1 token each
        while first < len(events) and events[first].tokens < 2:
            first += 1
        self._write(writes, first if self._queue else max(first, _SLICE))
        if writes.pos < len(events):
            self._queue.append(writes)
            if not self._draining:
                self._draining = True
                self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Write :data:`_SLICE` queued token events, oldest step first; again at the loop's next turn if any are
        left."""
        queue, budget = self._queue, _SLICE
        while queue and budget > 0:
            writes = queue[0]
            n = min(budget, len(writes.events) - writes.pos)
            self._write(writes, n)
            budget -= n
            if writes.pos >= len(writes.events):
                queue.popleft()
        if queue:
            self.loop.call_soon(self._drain)
        else:
            self._draining = False

    def _write(self, writes: _Writes, n: int) -> None:
        """Hand the next ``n`` token events of a step to their jobs (which write them to their connections)."""
        jobs, arrived, events, due = self.jobs, self._arrived, writes.events, writes.due
        start = writes.pos
        stop = min(start + n, len(events))
        emitted = 0
        for event in events[start:stop] if start or stop < len(events) else events:
            entry = jobs.get(event.request_id)
            if entry is None:
                continue
            emitted += event.tokens > 0
            if event.finished:
                del jobs[event.request_id]
            entry[0].on_token(event)
            if event.tokens == 1 and event.request_id in arrived:
                request_id, t0 = arrived.pop(event.request_id)
                self.first_tokens.add(request_id, t0, due, self.loop.time())
        self.counters["tokens_emitted"] += emitted
        writes.pos = stop
        if stop == len(events):  # the step is written
            self.step_writes.append((due, self.loop.time()))

    def start_monitor(self) -> None:
        """Start measuring the loop's lateness (``loop_lag`` in :meth:`snapshot`, samples in :meth:`timings`)."""
        self.lag.start()

    def cancel_timers(self) -> None:
        self.lag.stop()
        for timer in [*self._timers, self._scale_timer, *(h.timer for h in self.held)]:
            if timer is not None:
                timer.cancel()

    # -- documents -----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        server = self.model_server
        return {
            **{k: self.counters[k] for k in ("requests_received", "requests_completed", "requests_cancelled",
                                             "prompt_tokens", "tokens_emitted", "steps", "step_resyncs")},
            "by_path": dict(self.by_path),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "running": server.running,
            "waiting": server.waiting + self.held_waiting(),
            "kv_used_tokens": server.kv_used,
            "step_lag_max_s": round(max(self.max_lag_s, 0.0), 6),
            "loop_lag": self.lag.summary(),
            "connections": len(self.connections),
            "deployment": self.deployment.name,
            "replicas": server.replica_count,
            "max_batch": self.serving.max_batch,
            "slots": self.config.slots,
            "kv_capacity_tokens": kv_capacity_tokens(self.deployment),
            "throughput_chunk_size": self.chunk,
            "mode": self.config.mode,
            "rate_limited": dict(self.rate_limited),
            "quota_usage": self.quota.usage() if self.quota is not None else {},
            "faults": dict(self.faults_injected),
            "oauth_tokens_issued": self.oauth.issued if self.oauth is not None else 0,
            "scaling": self._scaling_snapshot(),
            "prefix_cache": (server.prefix_stats() if isinstance(server, Cluster) else None) or {},
        }  # fmt: skip

    def timings(self) -> dict[str, Any]:
        """``GET /sim/timings``: the loop's lateness samples and the first tokens' times, raw (:mod:`.timing`)."""
        return {
            "clock": "loop.time() (time.monotonic), seconds",
            "now": self.loop.time(),
            "loop_lag_interval_s": self.lag.interval,
            "loop_lag": list(self.lag.samples),
            "steps": {"columns": ["due", "written"], "rows": list(self.step_writes)},
            "first_tokens": {
                "columns": ["request_id", "arrived", "due", "written"],
                "rows": list(self.first_tokens.rows),
            },
        }

    def held_waiting(self) -> int:
        """Requests held for a cold start whose client is still there: they wait, as the replicas' queue does."""
        return sum(not entry.conn.closed for entry in self.held)

    def _scaling_snapshot(self) -> dict[str, Any]:
        """The scale now and its changes (seconds since the simulator started, replicas); ``{}`` at a fixed size."""
        scaler = self.scaler
        if scaler is None:
            return {}
        t0 = scaler.history[0][0]
        return {
            "replicas": scaler.replicas,
            "held_now": self.held_waiting(),
            **scaler.counts,
            **{k: self.scale_counts[k] for k in ("requests_held", "requests_refused", "requests_timed_out")},
            "history": [[round(t - t0, 3), n] for t, n in scaler.history],
        }

    def endpoint(self, name: str | None = None) -> dict[str, Any]:
        return endpoint_document(
            self.config,
            self.deployment,
            self.chunk,
            f"sim-{self._prefix}",
            self.created,
            name or self.config.endpoint_name or "sim-llama",
        )
