"""The simulator's application: routing, auth, the replicas' step timers, counters, and the GET documents.

Lives on one event loop; :mod:`loadtest.sim.server` runs it. The HTTP surface is described there.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from loadtest.errors import ConfigError
from loadtest.perfmodel import ARCHITECTURES, GPUS, Deployment, Dtype, kv_capacity_tokens
from loadtest.sim.engine import Cluster, EngineConfig, EngineRequest
from loadtest.sim.http11 import Connection, HttpError, Job, Request, error_body
from loadtest.sim.predict import reference_chunk_size
from loadtest.sim.responses import EmbeddingJob, Generation, parse_embedding, parse_generation
from loadtest.sim.tokens import TokenText

__all__ = ["App", "SimConfig"]

_MAX_LAG_S: Final = 0.25
_OPEN_PATHS: Final = frozenset({"/health", "/metrics", "/sim/stats"})


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate and where. ``port=0`` takes a free port; ``model_name=""`` serves the architecture key."""

    host: str = "127.0.0.1"
    port: int = 0
    architecture: str = "llama-3.1-8b"
    gpu: str = "h100"
    tp: int = 0
    dtype: Dtype | None = None
    replicas: int = 1
    max_batch: int = 256
    seed: int = 0
    jitter_cv: float = 0.0
    api_token: str | None = field(default=None, repr=False)
    endpoint_name: str = "sim-llama"
    model_name: str = ""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHITECTURES)}"
            )
        if self.gpu not in GPUS:
            raise ConfigError(f"unknown gpu {self.gpu!r}; known: {', '.join(GPUS)}")
        try:
            self.engine_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def served_model_name(self) -> str:
        return self.model_name or self.architecture

    def deployment(self) -> Deployment:
        return Deployment.of(self.architecture, self.gpu, tp=self.tp, dtype=self.dtype)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(self.deployment(), self.max_batch, self.replicas, self.seed, self.jitter_cv)


class App:
    """Routing, the engine's replicas and their step timers, counters. Lives on one event loop."""

    def __init__(self, config: SimConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config, self.loop = config, loop
        self.engine = config.engine_config()
        self.cluster = Cluster(self.engine)
        self.deployment = self.engine.deployment
        self.arch = self.deployment.architecture
        self.model = config.served_model_name
        self.text = TokenText(config.seed)
        self.jobs: dict[int, tuple[Job, int]] = {}  # engine id -> (job, replica index)
        self.connections: set[Connection] = set()
        self.counters: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.max_lag_s = 0.0
        n = config.replicas
        self._deadlines = [0.0] * n
        self._timers: list[asyncio.TimerHandle | None] = [None] * n
        self._ids, self._engine_ids, self._prefix = 0, 0, os.urandom(3).hex()
        self._auth = ("Bearer " + config.api_token).encode() if config.api_token else None
        self.chunk = reference_chunk_size(self.deployment, config.max_batch)
        self.created = int(time.time())
        ep = f"/serving-endpoints/{config.endpoint_name}"
        self.routes: dict[str, tuple[str, Callable[[Connection, Request], None]]] = {
            "/health": ("GET", lambda c, r: c.respond(200, b"{}", r.request_id)),
            "/metrics": (
                "GET",
                lambda c, r: c.respond(200, self.metrics(), r.request_id, "text/plain; version=0.0.4"),
            ),
            "/sim/stats": ("GET", lambda c, r: c.respond(200, orjson.dumps(self.snapshot()), r.request_id)),
            "/v1/models": ("GET", self._models),
            "/v1/chat/completions": ("POST", lambda c, r: self._generate(c, r, self._body(r), chat=True)),
            "/v1/completions": ("POST", lambda c, r: self._generate(c, r, self._body(r), chat=False)),
            "/v1/embeddings": ("POST", lambda c, r: self._embed(c, r, self._body(r))),
            "/serving-endpoints/chat/completions": (
                "POST",
                lambda c, r: self._generate(c, r, self._db(r), True),
            ),
            "/serving-endpoints/completions": ("POST", lambda c, r: self._generate(c, r, self._db(r), False)),
            "/serving-endpoints/embeddings": ("POST", lambda c, r: self._embed(c, r, self._db(r))),
            ep + "/invocations": ("POST", self._invocations),
            "/api/2.0" + ep: (
                "GET",
                lambda c, r: c.respond(200, orjson.dumps(self.endpoint()), r.request_id),
            ),
        }

    def new_request_id(self) -> str:
        self._ids += 1
        return f"{self._prefix}-{self._ids:08x}"

    def new_engine_id(self) -> int:
        self._engine_ids += 1
        return self._engine_ids

    def count_status(self, status: int) -> None:
        self.by_status[status] += 1

    # -- requests ------------------------------------------------------------------------------------------------

    def handle(self, conn: Connection, req: Request) -> None:
        self.counters["requests_received"] += 1
        req.request_id = self.new_request_id()
        req.databricks = req.path.startswith(("/serving-endpoints/", "/api/2.0/"))
        route = self.routes.get(req.path)
        self.by_path[req.path if route else "(unknown)"] += 1
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
            if self._auth is not None and req.path not in _OPEN_PATHS:
                given = req.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, self._auth):
                    raise HttpError(
                        401, "Missing or invalid bearer token", "authentication_error", "UNAUTHENTICATED"
                    )
            route[1](conn, req)
        except HttpError as err:
            conn.respond(err.status, error_body(err, req.databricks), req.request_id)

    @staticmethod
    def _body(req: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            raise HttpError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return body

    def _db(self, req: Request) -> dict[str, Any]:
        body = self._body(req)
        if body.get("model") != self.config.endpoint_name:
            model = body.get("model")
            raise HttpError(404, f"Endpoint {model!r} does not exist", code="RESOURCE_DOES_NOT_EXIST")
        return body

    def _invocations(self, conn: Connection, req: Request) -> None:
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

    def _generate(self, conn: Connection, req: Request, body: dict[str, Any], chat: bool) -> None:
        if self.arch.kind == "embedding":
            raise HttpError(400, f"{self.model} is an embedding model: use embeddings")
        params = parse_generation(body, chat, self.arch.context)
        job = Generation(self, conn, req.request_id, chat, params)
        self._submit(conn, job, [(job.engine_id, params.prompt_tokens, params.max_tokens)])
        if params.stream:
            conn.start_stream(req.request_id)

    def _embed(self, conn: Connection, req: Request, body: dict[str, Any]) -> None:
        inputs = parse_embedding(body)
        job = EmbeddingJob(self, conn, req.request_id, inputs)
        self._submit(conn, job, [(eid, n, 0) for eid, (_, n) in zip(job.engine_ids, inputs, strict=True)])

    def _submit(self, conn: Connection, job: Job, seqs: list[tuple[int, int, int]]) -> None:
        index = self.cluster.route()
        replica = self.cluster.replicas[index]
        for k, (eid, prompt, out) in enumerate(seqs):
            try:
                replica.submit(EngineRequest(eid, prompt, out))
            except ValueError as exc:
                for done, _, _ in seqs[:k]:
                    replica.cancel(done)
                raise HttpError(400, str(exc)) from None
        for eid, prompt, _ in seqs:
            self.jobs[eid] = (job, index)
            self.counters["prompt_tokens"] += prompt
        conn.active = job
        if not replica.busy:
            self._start_step(index, self.loop.time())

    def finish(self, conn: Connection, request_id: str, body: bytes | None) -> None:
        """A job is done: send its body (or end the stream already written), then serve what is buffered."""
        self.counters["requests_completed"] += 1
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

    def drop(self, engine_ids: list[int]) -> None:
        self.counters["requests_cancelled"] += 1
        for eid in engine_ids:
            entry = self.jobs.pop(eid, None)
            if entry is not None:
                self.cluster.replicas[entry[1]].cancel(eid)

    # -- engine steps --------------------------------------------------------------------------------------------

    def _start_step(self, index: int, t0: float) -> None:
        plan = self.cluster.replicas[index].next_step()
        if plan is None:
            self._timers[index] = None
            return
        self._deadlines[index] = deadline = t0 + plan.duration_s
        self._timers[index] = self.loop.call_at(deadline, self._end_step, index)

    def _end_step(self, index: int) -> None:
        jobs = self.jobs
        emitted = 0
        for event in self.cluster.replicas[index].finish_step():
            entry = jobs.get(event.request_id)
            if entry is None:
                continue
            emitted += event.tokens > 0
            if event.finished:
                del jobs[event.request_id]
            entry[0].on_token(event)
        self.counters["tokens_emitted"] += emitted
        self.counters["steps"] += 1
        deadline = self._deadlines[index]
        lag = self.loop.time() - deadline
        self.max_lag_s = max(self.max_lag_s, lag)
        if lag > _MAX_LAG_S:
            self.counters["step_resyncs"] += 1
            deadline += lag
        self._start_step(index, deadline)

    def cancel_timers(self) -> None:
        for timer in self._timers:
            if timer is not None:
                timer.cancel()

    # -- documents -----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        reps = self.cluster.replicas
        return {
            **{k: self.counters[k] for k in ("requests_received", "requests_completed", "requests_cancelled",
                                             "prompt_tokens", "tokens_emitted", "steps", "step_resyncs")},
            "by_path": dict(self.by_path),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "running": sum(r.running for r in reps),
            "waiting": sum(r.waiting for r in reps),
            "step_lag_max_s": round(max(self.max_lag_s, 0.0), 6),
            "connections": len(self.connections),
            "deployment": self.deployment.name,
            "replicas": len(reps),
            "max_batch": self.engine.max_batch,
            "kv_capacity_tokens": kv_capacity_tokens(self.deployment),
            "throughput_chunk_size": self.chunk,
        }  # fmt: skip

    def metrics(self) -> bytes:
        label = f'{{model_name="{self.model}"}}'
        s = self.snapshot()
        rows = [
            ("vllm:num_requests_running", "gauge", "Requests in model execution batches.", s["running"]),
            ("vllm:num_requests_waiting", "gauge", "Requests waiting to be processed.", s["waiting"]),
            ("vllm:request_success_total", "counter", "Finished requests.", s["requests_completed"]),
            ("vllm:prompt_tokens_total", "counter", "Prefill tokens processed.", s["prompt_tokens"]),
            ("vllm:generation_tokens_total", "counter", "Generation tokens processed.", s["tokens_emitted"]),
            ("sim:requests_received_total", "counter", "HTTP requests received.", s["requests_received"]),
        ]
        lines = [f"# HELP {n} {h}\n# TYPE {n} {t}\n{n}{label} {v}\n" for n, t, h, v in rows]
        return "".join(lines).encode()

    def _models(self, conn: Connection, req: Request) -> None:
        model = {"id": self.model, "object": "model", "created": self.created, "owned_by": "loadtest-sim",
                 "root": self.arch.name, "max_model_len": self.arch.context}  # fmt: skip
        conn.respond(200, orjson.dumps({"object": "list", "data": [model]}), req.request_id)

    def endpoint(self) -> dict[str, Any]:
        cfg, dep = self.config, self.deployment
        entity: dict[str, Any] = {"name": f"{cfg.endpoint_name}-entity", "entity_name": f"system.ai.{self.arch.key}",
                                  "entity_version": "1", "state": {"deployment": "DEPLOYMENT_READY"}}  # fmt: skip
        if self.arch.provisioning == "model_units":
            units = reference_chunk_size(dep, cfg.max_batch, (3500, 300)) // 65
            entity["provisioned_model_units"] = cfg.replicas * max(1, units)
        else:
            band = cfg.replicas * self.chunk
            entity.update(min_provisioned_throughput=band, max_provisioned_throughput=band)
            entity["throughput_chunk_size"] = self.chunk
        return {
            "name": cfg.endpoint_name, "id": f"sim-{self._prefix}", "creator": "loadtest-sim",
            "creation_timestamp": self.created * 1000, "last_updated_timestamp": self.created * 1000,
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "task": "llm/v1/embeddings" if self.arch.kind == "embedding" else "llm/v1/chat",
            "config": {"served_entities": [entity], "config_version": 1},
            "simulator": {"deployment": dep.name, "replicas": cfg.replicas, "max_batch": cfg.max_batch},
        }  # fmt: skip
