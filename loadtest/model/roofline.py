"""Hardware and architecture catalog, and the roofline model of one engine step.

Symbols (``reference/capacity.md`` §1 and §(a)): ``P_tot``/``P_act`` total/active parameters, ``L`` layers,
``d_a = heads·head_dim``, ``b`` bytes per value (2 for fp16/bf16, 1 for fp8), ``BW`` memory bandwidth, ``peak`` dense
fp16 tensor FLOP/s, ``MBU``/``MFU`` achievable fractions of them, ``TP`` tensor-parallel degree with efficiency
``η_TP`` (1 / 0.95 / 0.7 / 0.6 for TP 1/2/4/8; 0.5 for TP 16, an extrapolation for two nodes).

- KV bytes per token: ``2·L·n_kv·head_dim·b`` (MLA: ``L·(kv_lora + rope)·b``).
- Weights read by one decode step of batch ``B``: dense ``P_tot·b``; MoE
  ``(P_dense + L_moe·E·P_expert·(1 − (1 − k/E)^B))·b`` (the expected share of experts touched by ``B`` tokens).
- Decode step: ``t = max(mem, compute) + comm + c0 + c1·B`` with
  ``mem = (W_read + B·ctx̄·KV_tok) / (TP·η·BW·MBU)``, ``compute = (2·P_act·B + 4·L·d_a·B·ctx̄) / (TP·η·peak·MFU)``,
  ``comm = 2·L · B·hidden·2 B · 2(TP−1)/TP / (NCCL_EFF·NVLink)`` (two ring all-reduces of fp16 activations per layer;
  0 at TP 1) and a per-sequence step overhead ``c1`` (sampling, scheduling, detokenisation bookkeeping).
- Prefill of one sequence of ``n`` tokens: ``(2·P_act·n + 2·L·d_a·n²) / (TP·η·peak·MFU)`` (no ``c0``: the engine adds
  it once per step).
- KV capacity in tokens: ``(TP·mem·0.9 − P_tot·b) / KV_tok``.
- FP8 halves the bytes of weights and of the KV cache; it doubles ``peak`` only on GPUs with FP8 tensor cores (H100).
  On an A100 it is weight-only quantisation: fewer bytes, fp16 arithmetic.

Constants and their sources (``docs/capacity-model.md`` has the calibration table that holds them):

- ``BW``, ``peak``, ``MBU`` (A100 0.75, H100 0.80), ``MFU`` 0.65, ``η_TP``, ``c0`` 2 ms (range 1.5–3 ms),
  ``GPU_MEMORY_UTILIZATION`` 0.9, fp8 handling: ``reference/capacity.md`` §(a). MBU/MFU sit in the ranges Vidur's
  ``mlp.csv`` gives (MBU 0.69–0.82, MFU 0.65–0.71, ``capacity.md`` §1).
- ``c1`` = 10 µs per running sequence per step: Vidur models CPU overhead as a function of batch size (``capacity.md``
  §1); the value is the one that, with the rest fixed at the ``capacity.md`` defaults, brings the large-batch
  TensorRT-LLM points (batches of 200–2048) within the error budget. It is invisible at small batch (10 µs at B = 1).
- NVLink per-direction bandwidth: A100 300 GB/s (NVLink 3, 600 GB/s bidirectional), H100 450 GB/s (NVLink 4, 900 GB/s
  bidirectional), NVIDIA datasheets. ``NCCL_EFFICIENCY`` 0.5: achieved all-reduce bus bandwidth for the 1–30 MB
  activations of a decode step is about half the link peak (nccl-tests bus-bandwidth curves only reach ~80 % of
  peak at ≥ 256 MB messages). An assumption, checked only through the TP 2/4/8 calibration points.
- The all-reduce term applies to decode only; prefill keeps ``η_TP`` alone (its communication is ∝ n and small beside
  its compute).

Architecture shapes come from the table in ``reference/capacity.md`` (HF configs); Llama 2/3 and Llama 4 Maverick
shapes are from their HF configs as well and are marked as such. Every number here is a model, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "ARCHITECTURES",
    "GPUS",
    "GPU_MEMORY_UTILIZATION",
    "NCCL_EFFICIENCY",
    "TP_EFFICIENCY",
    "Architecture",
    "DecodeCost",
    "Deployment",
    "Dtype",
    "GpuProfile",
    "decode_cost",
    "decode_step_s",
    "default_tp",
    "kv_capacity_tokens",
    "prefill_s",
    "weight_read_bytes",
]

Dtype = Literal["fp16", "fp8"]
Kind = Literal["decoder", "embedding"]
Provisioning = Literal["tokens_band", "model_units"]

TP_EFFICIENCY: Final[dict[int, float]] = {1: 1.0, 2: 0.95, 4: 0.7, 8: 0.6, 16: 0.5}
GPU_MEMORY_UTILIZATION: Final[float] = 0.9
NCCL_EFFICIENCY: Final[float] = 0.5
# default_tp picks the smallest TP whose weights take at most this share of the usable memory, leaving the rest to KV.
_MAX_WEIGHT_SHARE: Final[float] = 0.75


@dataclass(frozen=True, slots=True)
class GpuProfile:
    """One accelerator: bandwidth in B/s, dense fp16 FLOP/s, memory in bytes, achievable MBU and MFU, and the
    per-direction NVLink bandwidth in B/s used by tensor-parallel all-reduces."""

    name: str
    mem_bw_bytes_s: float
    peak_flops_fp16: float
    mem_bytes: float
    mbu: float
    mfu: float
    fp8_tensor_cores: bool = False
    nvlink_bytes_s: float = 300e9


GPUS: Final[dict[str, GpuProfile]] = {
    "a100": GpuProfile(
        "A100-80GB", 2.039e12, 312e12, 80e9, 0.75, 0.65, fp8_tensor_cores=False, nvlink_bytes_s=300e9
    ),
    "h100": GpuProfile(
        "H100-80GB", 3.35e12, 989e12, 80e9, 0.80, 0.65, fp8_tensor_cores=True, nvlink_bytes_s=450e9
    ),
}


@dataclass(frozen=True, slots=True)
class Architecture:
    """The shape of one model. ``kv_bytes_per_token`` is at 16 bits; MoE fields are zero for dense models.

    ``moe_expert_params`` counts one routed expert in one MoE layer; ``moe_layers`` is how many layers are MoE.
    """

    key: str
    name: str
    params_total: float
    params_active: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    context: int
    kv_bytes_per_token: int
    kind: Kind = "decoder"
    provisioning: Provisioning = "tokens_band"
    moe_experts: int = 0
    moe_top_k: int = 0
    moe_expert_params: float = 0.0
    moe_layers: int = 0
    native_dtype: Dtype = "fp16"

    @property
    def is_moe(self) -> bool:
        return self.moe_experts > 0

    @property
    def attn_dim(self) -> int:
        """``d_a = heads·head_dim``."""
        return self.heads * self.head_dim

    @property
    def routed_expert_params(self) -> float:
        """``L_moe·E·P_expert``: all routed expert weights."""
        return self.moe_layers * self.moe_experts * self.moe_expert_params

    @property
    def dense_params(self) -> float:
        """Parameters every token touches: ``P_tot − L_moe·E·P_expert``."""
        return self.params_total - self.routed_expert_params


def _gqa_kv(layers: int, kv_heads: int, head_dim: int) -> int:
    """``2·L·n_kv·head_dim·2`` bytes: K and V at 16 bits."""
    return 2 * layers * kv_heads * head_dim * 2


def _dense(
    key: str, name: str, params: float, shape: tuple[int, int, int, int, int], vocab: int, context: int
) -> Architecture:
    layers, hidden, heads, kv_heads, head_dim = shape
    kv = _gqa_kv(layers, kv_heads, head_dim)
    return Architecture(
        key, name, params, params, layers, hidden, heads, kv_heads, head_dim, vocab, context, kv
    )


def _embedding(key: str, name: str, params: float, context: int) -> Architecture:
    return Architecture(key, name, params, params, 24, 1024, 16, 16, 64, 30522, context, 0, kind="embedding")


_L31, _L2 = 131072, 4096
# fmt: off
_CATALOG: Final[tuple[Architecture, ...]] = (
    _dense("llama-3.2-1b", "Llama 3.2 1B", 1.24e9, (16, 2048, 32, 8, 64), 128256, _L31),
    _dense("llama-3.2-3b", "Llama 3.2 3B", 3.21e9, (28, 3072, 24, 8, 128), 128256, _L31),
    _dense("llama-3.1-8b", "Llama 3.1 8B", 8.03e9, (32, 4096, 32, 8, 128), 128256, _L31),
    _dense("llama-3.1-70b", "Llama 3.1 70B", 70.6e9, (80, 8192, 64, 8, 128), 128256, _L31),
    _dense("llama-3.3-70b", "Llama 3.3 70B", 70.6e9, (80, 8192, 64, 8, 128), 128256, _L31),
    _dense("llama-3.1-405b", "Llama 3.1 405B", 405.9e9, (126, 16384, 128, 8, 128), 128256, _L31),
    # Llama 3 and Llama 2: HF configs (not in capacity.md's table).
    _dense("llama-3-8b", "Llama 3 8B", 8.03e9, (32, 4096, 32, 8, 128), 128256, 8192),
    _dense("llama-3-70b", "Llama 3 70B", 70.6e9, (80, 8192, 64, 8, 128), 128256, 8192),
    _dense("llama-2-7b", "Llama 2 7B", 6.74e9, (32, 4096, 32, 32, 128), 32000, _L2),
    _dense("llama-2-13b", "Llama 2 13B", 13.0e9, (40, 5120, 40, 40, 128), 32000, _L2),
    _dense("llama-2-70b", "Llama 2 70B", 69.0e9, (80, 8192, 64, 8, 128), 32000, _L2),
    _dense("mistral-7b", "Mistral 7B", 7.24e9, (32, 4096, 32, 8, 128), 32000, 32768),
    Architecture(
        "mixtral-8x7b", "Mixtral 8x7B", 46.7e9, 12.9e9, 32, 4096, 32, 8, 128, 32000, 32768, _gqa_kv(32, 8, 128),
        moe_experts=8, moe_top_k=2, moe_expert_params=3 * 4096 * 14336, moe_layers=32,
    ),
    Architecture(
        "dbrx", "DBRX", 131.6e9, 36.5e9, 40, 6144, 48, 8, 128, 100352, 32768, _gqa_kv(40, 8, 128),
        moe_experts=16, moe_top_k=4, moe_expert_params=3 * 6144 * 10752, moe_layers=40,
    ),
    _dense("mpt-7b", "MPT 7B", 6.7e9, (32, 4096, 32, 32, 128), 50432, 2048),
    _dense("mpt-30b", "MPT 30B", 30.0e9, (48, 7168, 64, 64, 112), 50432, 8192),
    # MLA: one latent of kv_lora 512 + rope 64 per layer; kv_heads=1 stands for that latent; head_dim is the q/k dim.
    Architecture(
        "deepseek-r1", "DeepSeek R1", 671e9, 37e9, 61, 7168, 128, 1, 192, 129280, 163840, 61 * (512 + 64) * 2,
        moe_experts=256, moe_top_k=8, moe_expert_params=3 * 7168 * 2048, moe_layers=58, native_dtype="fp8",
    ),
    # Llama 4 Maverick (HF config; sized in model units, not tokens/s bands): 128 routed experts every other layer.
    Architecture(
        "llama-4-maverick", "Llama 4 Maverick", 400e9, 17e9, 48, 5120, 40, 8, 128, 202048, 1048576,
        _gqa_kv(48, 8, 128), provisioning="model_units",
        moe_experts=128, moe_top_k=1, moe_expert_params=3 * 5120 * 8192, moe_layers=24,
    ),
    _embedding("gte-large", "GTE-large-en-v1.5", 434e6, 8192),
    _embedding("bge-large", "BGE-large-en-v1.5", 335e6, 512),
)
# fmt: on
ARCHITECTURES: Final[dict[str, Architecture]] = {a.key: a for a in _CATALOG}


def _bytes_per_value(dtype: Dtype) -> int:
    return 1 if dtype == "fp8" else 2


def default_tp(arch: Architecture, gpu: GpuProfile, dtype: Dtype = "fp16") -> int:
    """Smallest TP in 1, 2, 4, 8, 16 whose weights fill at most 75 % of ``TP·mem·0.9`` (the rest holds KV)."""
    weights = arch.params_total * _bytes_per_value(dtype)
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
        arch = ARCHITECTURES[architecture] if isinstance(architecture, str) else architecture
        prof = GPUS[gpu] if isinstance(gpu, str) else gpu
        return cls(arch, prof, tp, dtype or arch.native_dtype, c0_s, c1_s)

    @property
    def name(self) -> str:
        """Readable identity, e.g. ``llama-3.1-8b@h100x1-fp16``."""
        gpu_key = self.gpu.name.split("-")[0].lower()
        return f"{self.architecture.key}@{gpu_key}x{self.tp}-{self.dtype}"

    @property
    def bytes_per_value(self) -> int:
        return _bytes_per_value(self.dtype)

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


def prefill_s(dep: Deployment, n_tokens: int) -> float:
    """Seconds to prefill one sequence of ``n`` tokens: ``(2·P_act·n + 2·L·d_a·n²) / (TP·η·peak·MFU)``.

    For several sequences, sum this per sequence (the quadratic term is per sequence).
    """
    if n_tokens < 0:
        raise ValueError("n_tokens must be >= 0")
    arch = dep.architecture
    n = float(n_tokens)
    return (2.0 * arch.params_active * n + 2.0 * arch.layers * arch.attn_dim * n * n) / dep.effective_flops


def kv_capacity_tokens(dep: Deployment) -> int | None:
    """Tokens the paged KV cache holds: ``⌊(TP·mem·0.9 − P_tot·b) / KV_tok⌋`` (0 when the weights do not fit).

    ``None`` for embedding models, which keep no KV cache.
    """
    if dep.kv_bytes_per_token <= 0:
        return None
    free = dep.tp * dep.gpu.mem_bytes * GPU_MEMORY_UTILIZATION - dep.weight_bytes
    return max(0, int(free // dep.kv_bytes_per_token))
