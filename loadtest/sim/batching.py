"""The simulator's batching model: continuous batching at iteration level, one step at a time.

Pure and deterministic: no I/O, no clock. Whoever drives it (the asyncio server, or a discrete-event test) owns time.

**One step of a replica** (:meth:`Replica.next_step`, then :meth:`Replica.finish_step` when its time is over):

1. Admit waiting requests in FCFS order while ``running < max_batch`` and the KV cache has room; a request reserves
   ``prompt + max_tokens`` KV tokens at admission (no preemption). The head of the queue blocks the rest.
2. Duration: ``decode_step_s(B, ctx̄) + Σ prefill_s(prompt_i, cached_i)`` over the requests admitted in this step
   (``cached_i``: the tokens of its prompt the replica's prefix cache holds, :mod:`loadtest.sim.prefix`; 0 for a
   request without block hashes or a replica without a cache), where ``B``
   counts the sequences admitted in earlier steps and ``ctx̄`` their mean context (prompt + tokens emitted); with
   ``B = 0`` the decode term is just ``c0``. Times an optional jitter factor of mean 1 (lognormal or normal, CV
   ``jitter_cv``, seeded ``random.Random``), and times ``slowdown`` (1 unless a test asks for a slower server).
3. At the end of the step every request admitted in it emits its first token, every earlier one one more token; a
   request finishes when it has emitted ``output_tokens`` (ignore_eos); a prefill-only request (``output_tokens=0``,
   embeddings) finishes at the end of its admission step. The prompt blocks of the requests admitted in it enter the
   prefix cache, then the answer blocks of those that finished in it (``BatchRequest.answer``: the prompt's content
   continued by the generated text, as the next turn sends it back). The KV a request reserves is the same whether
   its prefix was cached or not.

Requests that arrive while a step runs wait for the next step; an idle replica starts a step at once.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from loadtest.model.roofline import Deployment, decode_step_s, kv_capacity_tokens, prefill_s
from loadtest.model.serving import DEFAULT_MAX_BATCH, Jitter, ServingConfig
from loadtest.sim.prefix import BLOCK_SIZE, PrefixCache

__all__ = [
    "BatchRequest",
    "Cluster",
    "Lane",
    "Replica",
    "ServingModel",
    "StepPlan",
    "TokenEvent",
]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One sequence: ``output_tokens`` is exactly what it will emit (0 = prefill only); ``blocks`` the chained hashes
    of its prompt's full blocks (:func:`loadtest.sim.prefix.block_hashes`; empty: it never hits the prefix cache);
    ``answer`` gives, for the ``n`` tokens it generated, the block hashes of its prompt's content followed by them
    as the next turn will send them (:meth:`loadtest.sim.prefix.Continuation.blocks`), inserted when it finishes
    (``None``: its answer is not cached). Called once, at the end of the step it finishes in."""

    request_id: int
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...] = ()
    answer: Callable[[int], Sequence[int]] | None = None

    @property
    def kv_tokens(self) -> int:
        """KV tokens reserved at admission: ``prompt + output``."""
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class StepPlan:
    """A planned step: who was admitted, how many decoded, and how long it lasts. ``prefill_tokens`` counts the
    prompt tokens computed (not those the prefix cache held); ``cached`` is each admitted request's cached tokens, in
    the order of ``admitted`` (empty when the lane has no prefix cache)."""

    index: int
    duration_s: float
    admitted: tuple[int, ...]
    decode_batch: int
    mean_context: float
    prefill_tokens: int
    cached: tuple[int, ...] = ()


class TokenEvent(NamedTuple):
    """What one sequence did in a step: ``tokens`` emitted so far (0 for prefill-only), and whether it is done.

    A NamedTuple rather than a frozen dataclass: one is built per token on the server's hot path.
    """

    request_id: int
    tokens: int
    finished: bool


class Lane(Protocol):
    """What has its own step timer in the server: a replica of the batching model, or a slot of the fixed-slots
    model (:mod:`loadtest.sim.slots`)."""

    @property
    def busy(self) -> bool: ...

    @property
    def running(self) -> int: ...

    def next_step(self) -> StepPlan | None: ...

    def finish_step(self) -> list[TokenEvent]: ...


class ServingModel(Protocol):
    """What the server drives: the batching model's :class:`Cluster` or the fixed-slots
    :class:`~loadtest.sim.slots.SlotPool`. A request's sequences are submitted together to one *home* (a replica;
    the pool has one), and the lanes :meth:`wake` names are started if idle."""

    @property
    def lanes(self) -> Sequence[Lane]: ...

    @property
    def replica_count(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def running(self) -> int: ...

    @property
    def kv_used(self) -> int: ...

    def submit_all(self, requests: Sequence[BatchRequest]) -> int: ...

    def wake(self, home: int) -> list[int]: ...

    def cancel(self, request_id: int, home: int) -> bool: ...


class _Seq:
    __slots__ = ("cached", "emitted", "request", "running")

    def __init__(self, request: BatchRequest) -> None:
        self.request = request
        self.emitted = 0
        self.running = False
        self.cached = 0


class Replica:
    """One replica: FCFS queue, running set, KV accounting, prefix cache, one step at a time.

    ``prefix_cache_tokens``: what its prefix cache holds, in tokens (whole blocks); ``None`` its KV cache's capacity
    (the cached blocks are KV blocks), 0 no prefix cache. A replica without a KV cache (embeddings) has none."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        seed: int = 0,
        jitter_cv: float = 0.0,
        jitter: Jitter = "lognormal",
        slowdown: float = 1.0,
        prefix_cache_tokens: int | None = None,
    ) -> None:
        self.deployment = deployment
        self.max_batch = max_batch
        self.kv_capacity: int | None = kv_capacity_tokens(deployment)
        size = self.kv_capacity if prefix_cache_tokens is None else prefix_cache_tokens
        blocks = (size or 0) // BLOCK_SIZE if self.kv_capacity is not None else 0
        self.prefix: PrefixCache | None = PrefixCache(blocks) if blocks else None
        self.kv_used = 0
        self.steps = 0
        self._jitter_cv = jitter_cv
        self._jitter = jitter
        self._slowdown = slowdown
        self._rng = random.Random(seed)
        self._waiting: deque[_Seq] = deque()
        self._running: dict[int, _Seq] = {}  # admitted in earlier steps: the decoders
        self._admitted: list[_Seq] = []  # admitted in the step in flight
        self._index: dict[int, _Seq] = {}
        self._ctx_sum = 0  # Σ (prompt + emitted) over the decoders
        self._in_step = False

    @property
    def outstanding(self) -> int:
        """Requests submitted and not finished (waiting + running)."""
        return len(self._index)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running) + len(self._admitted)

    @property
    def busy(self) -> bool:
        """True between :meth:`next_step` and :meth:`finish_step`."""
        return self._in_step

    def submit(self, request: BatchRequest) -> None:
        """Queue a request. Raises ``ValueError`` if its id is in use or it can never fit the KV cache."""
        if request.request_id in self._index:
            raise ValueError(f"request id {request.request_id} is already queued")
        if request.prompt_tokens < 0 or request.output_tokens < 0:
            raise ValueError("token counts must be >= 0")
        if self.kv_capacity is not None and request.kv_tokens > self.kv_capacity:
            raise ValueError(
                f"request needs {request.kv_tokens} KV tokens; a replica holds {self.kv_capacity}"
            )
        seq = _Seq(request)
        self._index[request.request_id] = seq
        self._waiting.append(seq)

    def take_waiting(self) -> BatchRequest | None:
        """Take back the request queued last (not yet admitted), to serve it elsewhere; ``None`` if none waits."""
        if not self._waiting:
            return None
        seq = self._waiting.pop()
        del self._index[seq.request.request_id]
        return seq.request

    def cancel(self, request_id: int) -> bool:
        """Drop a request wherever it is (its KV is freed now); False if unknown or already finished."""
        seq = self._index.pop(request_id, None)
        if seq is None:
            return False
        if not seq.running:
            self._waiting.remove(seq)
            return True
        self.kv_used -= seq.request.kv_tokens
        if self._running.pop(request_id, None) is not None:
            self._ctx_sum -= seq.request.prompt_tokens + seq.emitted
        else:
            self._admitted.remove(seq)
        return True

    def next_step(self) -> StepPlan | None:
        """Admit FCFS and plan one step; ``None`` when there is nothing to do (the replica goes idle)."""
        if self._in_step:
            raise RuntimeError("a step is already in flight; call finish_step first")
        decoders = len(self._running)
        admitted = self._admitted
        cap = self.kv_capacity
        while self._waiting and decoders + len(admitted) < self.max_batch:
            head = self._waiting[0]
            if cap is not None and self.kv_used + head.request.kv_tokens > cap:
                break
            self._waiting.popleft()
            head.running = True
            self.kv_used += head.request.kv_tokens
            admitted.append(head)
        if not decoders and not admitted:
            return None
        dep = self.deployment
        mean_ctx = self._ctx_sum / decoders if decoders else 0.0
        duration = decode_step_s(dep, decoders, mean_ctx) if decoders else dep.c0_s
        prefill_tokens = 0
        prefix = self.prefix
        for seq in admitted:
            prompt = seq.request.prompt_tokens
            if prefix is not None:
                seq.cached = prefix.lookup(seq.request.blocks, prompt)
            duration += prefill_s(dep, prompt, seq.cached)
            prefill_tokens += prompt - seq.cached
        duration *= self._jitter_factor() * self._slowdown
        self._in_step = True
        plan = StepPlan(
            self.steps,
            duration,
            tuple(s.request.request_id for s in admitted),
            decoders,
            mean_ctx,
            prefill_tokens,
            tuple(s.cached for s in admitted) if prefix is not None else (),
        )
        self.steps += 1
        return plan

    def finish_step(self) -> list[TokenEvent]:
        """End the step in flight: every running sequence emits a token; finished ones leave and free their KV.

        The events of the sequences admitted in this step (their first tokens) come first: they are all due at the
        same instant, and a server writes them in this order, so a first token — what TTFT measures — never waits
        behind the step's other writes (hundreds, in a big batch)."""
        if not self._in_step:
            raise RuntimeError("no step in flight")
        self._in_step = False
        events: list[TokenEvent] = []
        done: list[_Seq] = []
        admitted, self._admitted = self._admitted, []
        prefix = self.prefix
        for seq in admitted:
            req = seq.request
            if prefix is not None and req.blocks:
                prefix.insert(req.blocks)
            seq.emitted = 1 if req.output_tokens > 0 else 0
            events.append(TokenEvent(req.request_id, seq.emitted, seq.emitted >= req.output_tokens))
        running = self._running
        for rid, seq in running.items():
            seq.emitted += 1
            finished = seq.emitted >= seq.request.output_tokens
            events.append(TokenEvent(rid, seq.emitted, finished))
            if finished:
                done.append(seq)
        self._ctx_sum += len(running)
        for seq in done:
            del running[seq.request.request_id]
            self._ctx_sum -= seq.request.prompt_tokens + seq.emitted
        for seq in admitted:
            req = seq.request
            if seq.emitted >= req.output_tokens:
                done.append(seq)
            else:
                running[req.request_id] = seq
                self._ctx_sum += req.prompt_tokens + seq.emitted
        for seq in done:
            req = seq.request
            del self._index[req.request_id]
            self.kv_used -= req.kv_tokens
            if prefix is not None and req.answer is not None and seq.emitted:
                prefix.insert(req.answer(seq.emitted))
        return events

    def _jitter_factor(self) -> float:
        cv = self._jitter_cv
        if cv <= 0.0:
            return 1.0
        if self._jitter == "lognormal":
            sigma = math.sqrt(math.log1p(cv * cv))
            return math.exp(self._rng.gauss(-0.5 * sigma * sigma, sigma))
        return min(1.7, max(0.3, self._rng.gauss(1.0, cv)))  # clamped to ±70 % like llm-d-inference-sim


class Cluster:
    """``config.replicas`` replicas; :meth:`route` picks the one with the fewest outstanding requests (lowest index
    on ties), which is what least-outstanding-requests load balancing does. Only the first ``active`` replicas take
    requests (all of them unless an autoscaler, :mod:`loadtest.sim.scaling`, says fewer)."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.replicas: tuple[Replica, ...] = tuple(
            Replica(
                config.deployment,
                max_batch=config.max_batch,
                seed=config.seed * 1_000_003 + i,
                jitter_cv=config.jitter_cv,
                jitter=config.jitter,
                slowdown=config.slowdown,
                prefix_cache_tokens=config.prefix_cache_tokens,
            )
            for i in range(config.replicas)
        )
        self.active = len(self.replicas)

    def route(self) -> int:
        """Index of the active replica with the fewest outstanding requests."""
        if not self.active:
            raise RuntimeError("no replica takes requests (the endpoint has scaled to zero)")
        best = 0
        best_load = self.replicas[0].outstanding
        for i in range(1, self.active):
            load = self.replicas[i].outstanding
            if load < best_load:
                best, best_load = i, load
        return best

    def rebalance(self) -> list[tuple[int, int]]:
        """Move queued requests (not yet admitted) from the busiest active replicas to the least loaded ones, the
        last queued first, until no two differ by more than one outstanding request or nothing queued is left to
        move (what a replica that just came up does to the endpoint's queue); returns ``(request id, new index)``."""
        moved: list[tuple[int, int]] = []
        active = self.replicas[: self.active]
        while True:
            dst = min(range(len(active)), key=lambda i: active[i].outstanding)
            src = max(range(len(active)), key=lambda i: active[i].outstanding if active[i].waiting else -1)
            if not active[src].waiting or active[src].outstanding - active[dst].outstanding < 2:
                return moved
            request = active[src].take_waiting()
            assert request is not None
            active[dst].submit(request)
            moved.append((request.request_id, dst))

    def submit(self, request: BatchRequest) -> int:
        """Route and queue ``request``; returns the replica index."""
        index = self.route()
        self.replicas[index].submit(request)
        return index

    # -- the ServingModel protocol: what the server drives --------------------------------------------------------

    @property
    def lanes(self) -> tuple[Replica, ...]:
        return self.replicas

    @property
    def replica_count(self) -> int:
        return len(self.replicas)

    @property
    def waiting(self) -> int:
        return sum(r.waiting for r in self.replicas)

    @property
    def running(self) -> int:
        return sum(r.running for r in self.replicas)

    @property
    def kv_used(self) -> int:
        return sum(r.kv_used for r in self.replicas)

    def prefix_stats(self) -> dict[str, int] | None:
        """The replicas' prefix caches summed: capacity and blocks held, prompt tokens looked up (``queries``) and
        found (``hits``), as vLLM counts them; ``None`` without prefix caches."""
        caches = [r.prefix for r in self.replicas if r.prefix is not None]
        if not caches:
            return None
        return {
            "block_size": BLOCK_SIZE,
            "capacity_blocks": sum(c.capacity for c in caches),
            "blocks": sum(len(c) for c in caches),
            "queries": sum(c.queries for c in caches),
            "hits": sum(c.hits for c in caches),
        }

    def submit_all(self, requests: Sequence[BatchRequest]) -> int:
        """Queue ``requests`` (one request's sequences) on the routed replica; returns its index. ``ValueError``
        (and nothing queued) when one cannot be."""
        index = self.route()
        replica = self.replicas[index]
        for k, request in enumerate(requests):
            try:
                replica.submit(request)
            except ValueError:
                for done in requests[:k]:
                    replica.cancel(done.request_id)
                raise
        return index

    def wake(self, home: int) -> list[int]:
        """The replica to start after a submit, if it is idle."""
        return [] if self.replicas[home].busy else [home]

    def cancel(self, request_id: int, home: int) -> bool:
        return self.replicas[home].cancel(request_id)
