"""The architecture catalog: the shape of every model the simulator and the planner know (``ARCHITECTURES``).

Symbols (``docs/capacity-model.md``): ``P_tot``/``P_act`` total/active parameters, ``L`` layers,
``d_a = heads·head_dim``; KV bytes per token (at 16 bits) ``2·L·n_kv·head_dim·2`` (MLA: ``L·(kv_lora + rope)·2``).

Architecture shapes come from the models' HF configs (``docs/sources.md``, "Architecture shapes"); Llama 2/3 and
Llama 4 Maverick are marked where they were not cross-checked. Names are checked in :mod:`loadtest.model.catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from loadtest.model.hardware import Dtype

__all__ = ["ARCHITECTURES", "Architecture", "Kind", "Provisioning"]

Kind = Literal["decoder", "embedding"]
Provisioning = Literal["tokens_band", "model_units"]


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
    # Llama 3 and Llama 2: HF configs (not cross-checked; docs/sources.md).
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
    # GPT OSS (HF configs, docs/sources.md): MoE every layer, 4 of E experts per token, head_dim 64; half the layers
    # use a 128-token sliding window, counted here as full attention (an upper bound on the KV cache). The MoE
    # weights ship in MXFP4; fp8 (the catalog's smallest dtype) overstates their bytes. Active parameters follow from
    # the shapes (5.7B / 4.2B): the published 5.1B / 3.6B leave out the 0.58B input-embedding table. Model units.
    Architecture(
        "gpt-oss-120b", "GPT OSS 120B", 116.8e9, 5.7e9, 36, 2880, 64, 8, 64, 201088, 131072,
        _gqa_kv(36, 8, 64), provisioning="model_units",
        moe_experts=128, moe_top_k=4, moe_expert_params=3 * 2880 * 2880, moe_layers=36, native_dtype="fp8",
    ),
    Architecture(
        "gpt-oss-20b", "GPT OSS 20B", 20.9e9, 4.2e9, 24, 2880, 64, 8, 64, 201088, 131072,
        _gqa_kv(24, 8, 64), provisioning="model_units",
        moe_experts=32, moe_top_k=4, moe_expert_params=3 * 2880 * 2880, moe_layers=24, native_dtype="fp8",
    ),
    # Gemma 3 12B (text weights; HF config): 5 of 6 layers use a 1,024-token sliding window, counted as full
    # attention (an upper bound on the KV cache). Sized in model units.
    Architecture(
        "gemma-3-12b", "Gemma 3 12B", 11.77e9, 11.77e9, 48, 3840, 16, 8, 256, 262144, 131072,
        _gqa_kv(48, 8, 256), provisioning="model_units",
    ),
    _embedding("gte-large", "GTE-large-en-v1.5", 434e6, 8192),
    _embedding("bge-large", "BGE-large-en-v1.5", 335e6, 512),
)
# fmt: on
ARCHITECTURES: Final[dict[str, Architecture]] = {a.key: a for a in _CATALOG}
