"""What the batching model does in a closed loop, derived rather than simulated: the truth the load tests check.

See :func:`predict_closed_loop` for the derivation. ``tests/unit/test_batching.py`` checks it against a
discrete-event run of :class:`loadtest.sim.batching.Replica` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from loadtest.model.roofline import Deployment, decode_cost, decode_step_s, kv_capacity_tokens, prefill_s
from loadtest.model.serving import DEFAULT_MAX_BATCH, ServingConfig

__all__ = [
    "MODEL_UNIT_MIX",
    "MODEL_UNIT_TOKENS_PER_S",
    "REFERENCE_MIX",
    "ClosedLoopPrediction",
    "Resource",
    "Start",
    "bounding_resource",
    "chunk_of",
    "feasible_batch",
    "predict_closed_loop",
    "reference_chunk_size",
    "reference_tokens_per_s",
    "saturation",
]

Start = Literal["spread", "burst"]
Resource = Literal["kv", "memory", "compute"]
# the mixes a provisioned band's nominal tokens/s are quoted at (docs/sources.md): token bands (UNVERIFIED) and
# model units (the published Llama 4 Maverick point)
REFERENCE_MIX: Final[tuple[int, int]] = (2048, 256)
MODEL_UNIT_MIX: Final[tuple[int, int]] = (3500, 300)
MODEL_UNIT_TOKENS_PER_S: Final[float] = 65.0  # one model unit at MODEL_UNIT_MIX: 50 MU ≈ 3,250 tokens/s


@dataclass(frozen=True, slots=True)
class ClosedLoopPrediction:
    """Steady-state means for identical requests. ``batch``: time-averaged running sequences per busy replica;
    ``tpot_s`` is ``None`` at ≤ 1 output token; for prefill-only requests ``ttft_s`` equals ``e2e_s``."""

    concurrency: int
    ttft_s: float
    tpot_s: float | None
    e2e_s: float
    requests_per_s: float
    output_tokens_per_s: float
    batch: float
    step_s: float


def feasible_batch(config: ServingConfig, prompt_tokens: int, output_tokens: int) -> int:
    """``N = min(max_batch, ⌊KV capacity / (prompt + output)⌋)``: how many such requests one replica runs at once."""
    cap = kv_capacity_tokens(config.deployment)
    n = (
        config.max_batch
        if cap is None
        else min(config.max_batch, cap // max(1, prompt_tokens + output_tokens))
    )
    if n < 1:
        raise ValueError(f"a request of {prompt_tokens}+{output_tokens} tokens does not fit the KV cache")
    return n


def bounding_resource(
    config: ServingConfig, prompt_tokens: int, output_tokens: int, concurrency: int = 0
) -> Resource:
    """The resource that bounds one replica with ``concurrency`` such requests in flight (0: at saturation):
    ``kv`` when the KV cache, not ``max_batch``, caps the batch there; ``compute`` for prefill-only requests
    (embeddings); else the larger roofline term of a decode step at that batch and the mean context
    ``prompt + output / 2`` (:attr:`loadtest.model.roofline.DecodeCost.bound`)."""
    cap = feasible_batch(config, prompt_tokens, output_tokens)
    batch = min(concurrency or cap, cap)
    if batch >= cap and cap < config.max_batch:
        return "kv"
    if output_tokens == 0 or config.deployment.architecture.kind == "embedding":
        return "compute"
    return decode_cost(config.deployment, max(batch, 1), prompt_tokens + output_tokens / 2).bound


def _cohorts(count: int, period: int, start: Start) -> list[int]:
    """Members per phase: ``spread`` puts member k at phase ⌊k·period/count⌋, ``burst`` puts 1 at 0, the rest at 1."""
    m = [0] * period
    for k in range(count):
        m[(k * period) // count if start == "spread" else min(k, 1) % period] += 1
    return m


def _orbit(dep: Deployment, m: list[int], p: int, n: int) -> tuple[list[float], list[int]]:
    """Duration and occupancy of each step of one period, given cohort sizes ``m`` by phase.

    A cohort admitted at phase φ is at offset ``o = s − φ`` in step ``s``: admitted at 0 (prefill), decoding with
    context ``p + o`` for ``1 ≤ o ≤ n − 1``, else waiting. ``B_s`` and ``Σctx_s`` are kept as sliding-window sums.
    """
    period = len(m)
    pre = prefill_s(dep, p)
    batch = sum(m[-o % period] for o in range(1, n))
    ctx = sum(m[-o % period] * (p + o) for o in range(1, n))
    durations: list[float] = []
    occupancy: list[int] = []
    for s in range(period):
        step = decode_step_s(dep, batch, ctx / batch) if batch else dep.c0_s
        durations.append(step + m[s] * pre)
        occupancy.append(batch + m[s])
        if n > 1:
            leave = m[(s - n + 1) % period]
            ctx += batch - leave - leave * (p + n - 1) + m[s] * (p + 1)
            batch += m[s] - leave
    return durations, occupancy


def _replica(dep: Deployment, c: int, p: int, n: int, cap: int, start: Start) -> tuple[float, ...]:
    """(requests/s, ttft, e2e, batch, step) of one replica with ``c`` closed-loop clients."""
    run = max(n, 1)  # steps a request holds a slot: its admission step and n − 1 decode steps
    m = [c] + [0] * (run - 1) if c == 1 else _cohorts(c, run + 1, start)
    durations, occupancy = _orbit(dep, m, p, n)
    period = sum(durations)
    if c == 1:  # the replica idles while the lone client resubmits: no waiting step
        ttft, e2e, rate = durations[0], period, 1 / period
    elif max(occupancy) <= cap:  # every request waits one step, then runs: the period is run + 1 steps
        ttft = sum(m[i] * (durations[i - 1] + durations[i]) for i in range(len(m))) / c
        e2e, rate = period, c / period
    else:  # saturated: the cap slots refill at once from the queue, each slot cycles in run steps
        m = _cohorts(cap, run, start)
        durations, occupancy = _orbit(dep, m, p, n)
        period = sum(durations)
        rate = cap / period
        e2e = c / rate  # Little's law, zero think time
        ttft = e2e - period + sum(m[i] * durations[i] for i in range(run)) / cap
    busy = sum(d * k for d, k in zip(durations, occupancy, strict=True)) / period
    return rate, (e2e if n == 0 else ttft), e2e, busy, period / len(durations)


def predict_closed_loop(
    config: ServingConfig, concurrency: int, prompt_tokens: int, output_tokens: int, start: Start = "spread"
) -> ClosedLoopPrediction:
    """Steady state of ``concurrency`` closed-loop clients (zero think time) sending identical requests.

    Derivation. Clients split evenly over replicas (least-outstanding routing keeps a client on its replica). A
    finished client resubmits just after the step boundary at which its last token left, when the next step is
    already planned, so it waits that whole step, then is prefilled in the following one and decodes ``n − 1`` more
    steps: each client cycles through ``n + 1`` steps, and requests that finish together stay a cohort forever.
    With cohort sizes ``m_φ`` by phase φ of that cycle, the state of every client in every step of the period is
    known, hence each step's time ``t_s = decode_step_s(B_s, ctx̄_s) + m_s·prefill_s(p)`` (``B_s`` and ``ctx̄_s`` of
    the cohorts at offsets 1…n−1). Then, exactly for this orbit:
    ``T = Σ_s t_s``, ``e2e = T``, ``X = c/T``, ``TTFT_φ = t_{φ−1} + t_φ`` (wait step + prefill step),
    ``TPOT = (e2e − TTFT)/(n − 1)``.
    Layouts: ``spread`` (clients desynchronised evenly, ``φ_k = ⌊k(n+1)/c⌋``: a ramped start) or ``burst`` (all
    start at once: the first finds the replica idle and starts a step alone, the others join the next step; phases
    ``{0: 1, 1: c − 1}``). One client alone never waits: the replica is idle when it resubmits, ``TTFT = c0 +
    prefill(p)``, cycle ``n`` steps. When some step would need more than ``N`` (:func:`feasible_batch`) running
    sequences, the replica is saturated: ``N`` slots, each refilled from the queue at the next boundary, cycle ``n``
    steps, ``X = N/T``, ``e2e = c/X`` (Little), ``TTFT = e2e − T + t_admission``. Jitter is ignored (mean 1).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    cap = feasible_batch(config, prompt_tokens, output_tokens)
    r = config.replicas
    shares = [concurrency // r + (1 if i < concurrency % r else 0) for i in range(r)]
    parts = [_replica(config.deployment, c, prompt_tokens, output_tokens, cap, start) for c in shares if c]
    rate = sum(x[0] for x in parts)

    def mean(i: int) -> float:
        return sum(x[0] * x[i] for x in parts) / rate

    ttft, e2e = mean(1), mean(2)
    tpot = (e2e - ttft) / (output_tokens - 1) if output_tokens > 1 else None
    batch = sum(x[3] for x in parts) / len(parts)
    step = sum(x[4] for x in parts) / len(parts)
    return ClosedLoopPrediction(concurrency, ttft, tpot, e2e, rate, rate * output_tokens, batch, step)


def saturation(
    config: ServingConfig, prompt_tokens: int, output_tokens: int, start: Start = "spread"
) -> ClosedLoopPrediction:
    """The throughput ceiling: the smallest concurrency that keeps all ``N`` slots of every replica busy,
    ``⌈N·(run + 1)/run⌉`` per replica (``run = max(n, 1)``), predicted by :func:`predict_closed_loop`."""
    cap = feasible_batch(config, prompt_tokens, output_tokens)
    run = max(output_tokens, 1)
    per_replica = -(-cap * (run + 1) // run)
    return predict_closed_loop(config, per_replica * config.replicas, prompt_tokens, output_tokens, start)


def reference_tokens_per_s(config: ServingConfig, mix: tuple[int, int] = REFERENCE_MIX) -> float:
    """Tokens/s (input + output) one replica sustains at saturation on ``mix`` — what a band's nominal tokens/s are
    quoted against; embeddings read only (input clipped to the context, no output)."""
    arch = config.deployment.architecture
    prompt, output = mix
    if arch.kind == "embedding":
        prompt, output = min(prompt, arch.context), 0
    return saturation(config, prompt, output).requests_per_s * (prompt + output)


def chunk_of(tokens_per_s: float) -> int:
    """A ``throughput_chunk_size`` from a replica's reference tokens/s: rounded down to 10, at least 10."""
    return max(10, int(tokens_per_s) // 10 * 10)


def reference_chunk_size(
    deployment: Deployment, max_batch: int = DEFAULT_MAX_BATCH, mix: tuple[int, int] = REFERENCE_MIX
) -> int:
    """The simulator's ``throughput_chunk_size``: one replica's :func:`reference_tokens_per_s` on ``mix``
    (default 2048 in / 256 out) as :func:`chunk_of`; a PT band of ``k`` chunks is ``k`` replicas."""
    return chunk_of(reference_tokens_per_s(ServingConfig(deployment, max_batch=max_batch), mix))
