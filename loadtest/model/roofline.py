"""The roofline model of one serving step: a :class:`Deployment` (an architecture on TP GPUs in a dtype), decode and
prefill step times, KV cache capacity.

Symbols as in :mod:`loadtest.model.hardware` and :mod:`loadtest.model.architectures` (``docs/capacity-model.md``).

- Weights read by one decode step of batch ``B``: dense ``P_tot·b``; MoE
  ``(P_dense + L_moe·E·P_expert·(1 − (1 − k/E)^B))·b`` (the expected share of experts touched by ``B`` tokens).
- Decode step: ``t = max(mem, compute) + comm + c0 + c1·B`` with
  ``mem = (W_read + B·ctx̄·KV_tok) / (TP·η·BW·MBU)``, ``compute = (2·P_act·B + 4·L·d_a·B·ctx̄) / (TP·η·peak·MFU)``,
  ``comm = 2·L · B·hidden·2 B · 2(TP−1)/TP / (NCCL_EFF·NVLink)`` (two ring all-reduces of fp16 activations per layer;
  0 at TP 1) and a per-sequence step overhead ``c1`` (sampling, scheduling, detokenisation bookkeeping).
- Prefill of one sequence of ``n`` tokens: ``(2·P_act·n + 2·L·d_a·n²) / (TP·η·peak·MFU)`` (no ``c0``: the batching model
  adds it once per step); of its last ``n − c`` when a prefix cache holds the first ``c``: the same minus the
  prefill of ``c`` tokens.
- KV capacity in tokens: ``(TP·mem·0.9 − P_tot·b) / KV_tok``.

Constants and their sources (``docs/capacity-model.md`` has the calibration table that holds them):

- ``c0`` 2 ms (range 1.5–3 ms): ``docs/sources.md`` ("Roofline constants").
- ``c1`` = 10 µs per running sequence per step: Vidur models CPU overhead as a function of batch size
  (``docs/sources.md``); the value is the one that, with the rest fixed at these defaults, brings the large-batch
  TensorRT-LLM points (batches of 200–2048) within the error budget. It is invisible at small batch (10 µs at B = 1).
- The all-reduce term applies to decode only; prefill keeps ``η_TP`` alone (its communication is ∝ n and small beside
  its compute).

Every number here is a model, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from loadtest.model import catalog
from loadtest.model.architectures import Architecture
from loadtest.model.hardware import (
    GPU_MEMORY_UTILIZATION,
    NCCL_EFFICIENCY,
    TP_EFFICIENCY,
    Dtype,
    GpuProfile,
    dtype_bytes,
)

__all__ = [
    "DecodeCost",
    "Deployment",
    "decode_cost",
    "decode_step_s",
    "default_tp",
    "kv_capacity_tokens",
    "prefill_s",
    "weight_read_bytes",
]

# default_tp picks the smallest TP whose weights take at most this share of the usable memory, leaving the rest to KV.
_MAX_WEIGHT_SHARE: Final[float] = 0.75


def default_tp(arch: Architecture, gpu: GpuProfile, dtype: Dtype = "fp16") -> int:
    """Smallest TP in 1, 2, 4, 8, 16 whose weights fill at most 75 % of ``TP·mem·0.9`` (the rest holds KV)."""
    weights = arch.params_total * dtype_bytes(dtype)
    for tp in TP_EFFICIENCY:
        if weights <= _MAX_WEIGHT_SHARE * GPU_MEMORY_UTILIZATION * tp * gpu.mem_bytes:
            return tp
    raise ValueError(f"{arch.name} in {dtype} does not fit on 16 x {gpu.name}")


@dataclass(frozen=True, slots=True)
class Deployment:
    """One replica: an architecture on ``tp`` GPUs in ``dtype``. ``tp=0`` picks :func:`default_tp`.

    ``c0_s`` is the fixed per-step overhead (scheduling, kernel launches); ``c1_s`` the overhead per running sequence
    per decode step (sampling, bookkeeping).
    """

    architecture: Architecture
    gpu: GpuProfile
    tp: int = 0
    dtype: Dtype = "fp16"
    c0_s: float = 0.002
    c1_s: float = 1e-5

    def __post_init__(self) -> None:
        if self.tp == 0:
            object.__setattr__(self, "tp", default_tp(self.architecture, self.gpu, self.dtype))
        if self.tp not in TP_EFFICIENCY:
            raise ValueError(f"tensor-parallel degree must be one of {sorted(TP_EFFICIENCY)}, got {self.tp}")
        if self.dtype not in ("fp16", "fp8"):
            raise ValueError(f"dtype must be fp16 or fp8, got {self.dtype!r}")
        if self.c0_s < 0 or self.c1_s < 0:
            raise ValueError("c0_s and c1_s must be >= 0")

    @classmethod
    def of(
        cls,
        architecture: str | Architecture,
        gpu: str | GpuProfile = "h100",
        *,
        tp: int = 0,
        dtype: Dtype | None = None,
        c0_s: float = 0.002,
        c1_s: float = 1e-5,
    ) -> Deployment:
        """Build from catalog keys (``"llama-3.1-8b"``, ``"h100"``); ``dtype=None`` uses the model's native dtype."""
        arch = catalog.architecture(architecture) if isinstance(architecture, str) else architecture
        prof = catalog.gpu(gpu) if isinstance(gpu, str) else gpu
        return cls(arch, prof, tp, dtype or arch.native_dtype, c0_s, c1_s)

    @property
    def name(self) -> str:
        """Readable identity, e.g. ``llama-3.1-8b@h100x1-fp16``."""
        gpu_key = self.gpu.name.split("-")[0].lower()
        return f"{self.architecture.key}@{gpu_key}x{self.tp}-{self.dtype}"

    @property
    def bytes_per_value(self) -> int:
        return dtype_bytes(self.dtype)

    @property
    def weight_bytes(self) -> float:
        """``P_tot·b``: what must sit in GPU memory."""
        return self.architecture.params_total * self.bytes_per_value

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache bytes per token at this dtype (fp8 halves the 16-bit figure)."""
        return self.architecture.kv_bytes_per_token * self.bytes_per_value / 2

    @property
    def effective_bandwidth(self) -> float:
        """``TP·η·BW·MBU`` in B/s."""
        return self.tp * TP_EFFICIENCY[self.tp] * self.gpu.mem_bw_bytes_s * self.gpu.mbu

    @property
    def effective_flops(self) -> float:
        """``TP·η·peak·MFU`` in FLOP/s; fp8 doubles ``peak`` on GPUs with FP8 tensor cores."""
        peak = self.gpu.peak_flops_fp16 * (2 if self.dtype == "fp8" and self.gpu.fp8_tensor_cores else 1)
        return self.tp * TP_EFFICIENCY[self.tp] * peak * self.gpu.mfu


def weight_read_bytes(dep: Deployment, batch: int) -> float:
    """Weight bytes one decode step of ``batch`` sequences streams from memory.

    Dense: ``P_tot·b``. MoE: ``(P_dense + L_moe·E·P_expert·(1 − (1 − k/E)^B))·b``.
    """
    arch = dep.architecture
    if not arch.is_moe:
        return dep.weight_bytes
    touched = 1.0 - (1.0 - arch.moe_top_k / arch.moe_experts) ** max(batch, 0)
    return (arch.dense_params + arch.routed_expert_params * touched) * dep.bytes_per_value


@dataclass(frozen=True, slots=True)
class DecodeCost:
    """The two roofline terms of one decode step, the all-reduce time and the overhead ``c0 + c1·B``, in seconds."""

    memory_s: float
    compute_s: float
    overhead_s: float
    comm_s: float = 0.0

    @property
    def total_s(self) -> float:
        """``max(memory, compute) + comm + overhead``."""
        return max(self.memory_s, self.compute_s) + self.comm_s + self.overhead_s

    @property
    def bound(self) -> Literal["memory", "compute"]:
        return "memory" if self.memory_s >= self.compute_s else "compute"


def decode_cost(dep: Deployment, batch: int, mean_ctx: float) -> DecodeCost:
    """Roofline terms of a decode step of ``batch`` sequences whose mean context is ``mean_ctx`` tokens.

    ``mem = (W_read + B·ctx̄·KV_tok) / (TP·η·BW·MBU)``, ``compute = (2·P_act·B + 4·L·d_a·B·ctx̄) / (TP·η·peak·MFU)``,
    ``comm = 2·L·B·hidden·2·2(TP−1)/TP / (NCCL_EFFICIENCY·NVLink)``, overhead ``c0 + c1·B``.
    """
    arch = dep.architecture
    if arch.kind == "embedding":
        raise ValueError(f"{arch.name} is an embedding model: it has no decode step")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    memory = (
        weight_read_bytes(dep, batch) + batch * mean_ctx * dep.kv_bytes_per_token
    ) / dep.effective_bandwidth
    flops = 2.0 * arch.params_active * batch + 4.0 * arch.layers * arch.attn_dim * batch * mean_ctx
    comm = 0.0
    if dep.tp > 1:
        traffic = 2.0 * arch.layers * batch * arch.hidden * 2.0 * 2.0 * (dep.tp - 1) / dep.tp
        comm = traffic / (NCCL_EFFICIENCY * dep.gpu.nvlink_bytes_s)
    return DecodeCost(memory, flops / dep.effective_flops, dep.c0_s + dep.c1_s * batch, comm)


def decode_step_s(dep: Deployment, batch: int, mean_ctx: float) -> float:
    """Seconds of one decode step: ``max(mem, compute) + comm + c0 + c1·B`` (see :func:`decode_cost`)."""
    return decode_cost(dep, batch, mean_ctx).total_s


def prefill_s(dep: Deployment, n_tokens: int, cached_tokens: int = 0) -> float:
    """Seconds to prefill one sequence of ``n`` tokens: ``(2·P_act·n + 2·L·d_a·n²) / (TP·η·peak·MFU)``.

    With its first ``c = cached_tokens`` tokens' KV already in a prefix cache only the other ``n − c`` are
    computed, each still attending to the whole prefix: ``(2·P_act·(n − c) + 2·L·d_a·(n² − c²)) / (TP·η·peak·MFU)``
    — exactly ``prefill_s(n) − prefill_s(c)``, so a cache hit saves the prefill time of the cached tokens.
    For several sequences, sum this per sequence (the quadratic term is per sequence).
    """
    if n_tokens < 0:
        raise ValueError("n_tokens must be >= 0")
    if not 0 <= cached_tokens <= n_tokens:
        raise ValueError("cached_tokens must be within [0, n_tokens]")
    arch = dep.architecture
    n, c = float(n_tokens), float(cached_tokens)
    linear = 2.0 * arch.params_active * (n - c)
    return (linear + 2.0 * arch.layers * arch.attn_dim * (n * n - c * c)) / dep.effective_flops


def kv_capacity_tokens(dep: Deployment) -> int | None:
    """Tokens the paged KV cache holds: ``⌊(TP·mem·0.9 − P_tot·b) / KV_tok⌋`` (0 when the weights do not fit).

    ``None`` for embedding models, which keep no KV cache.
    """
    if dep.kv_bytes_per_token <= 0:
        return None
    free = dep.tp * dep.gpu.mem_bytes * GPU_MEMORY_UTILIZATION - dep.weight_bytes
    return max(0, int(free // dep.kv_bytes_per_token))
