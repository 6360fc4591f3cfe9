from __future__ import annotations

from types import ModuleType

import pytest

from loadtest.model import architectures, hardware, roofline
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.hardware import GPUS
from loadtest.model.roofline import (
    Deployment,
    decode_cost,
    decode_step_s,
    default_tp,
    kv_capacity_tokens,
    prefill_s,
    weight_read_bytes,
)

KIB = 1024


@pytest.mark.parametrize("module", [hardware, architectures, roofline])
def test_public_surface(module: ModuleType) -> None:
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    }
    assert defined <= set(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.parametrize(
    ("key", "kv_bytes"),
    [
        ("llama-3.2-1b", 32 * KIB),
        ("llama-3.2-3b", 112 * KIB),
        ("llama-3.1-8b", 128 * KIB),
        ("llama-3.3-70b", 320 * KIB),
        ("llama-3.1-405b", 504 * KIB),
        ("mistral-7b", 128 * KIB),
        ("mixtral-8x7b", 128 * KIB),
        ("dbrx", 160 * KIB),
        ("mpt-7b", 512 * KIB),
        ("mpt-30b", int(1.3125 * KIB * KIB)),
        ("gte-large", 0),
        ("bge-large", 0),
    ],
)
def test_kv_bytes_per_token_match_capacity_table(key: str, kv_bytes: int) -> None:
    assert ARCHITECTURES[key].kv_bytes_per_token == kv_bytes


def test_deepseek_mla_kv_is_68_6_kib() -> None:
    assert ARCHITECTURES["deepseek-r1"].kv_bytes_per_token / KIB == pytest.approx(68.6, abs=0.05)


@pytest.mark.parametrize("key", [k for k, a in ARCHITECTURES.items() if a.is_moe])
def test_moe_active_params_follow_from_expert_shapes(key: str) -> None:
    arch = ARCHITECTURES[key]
    active = arch.dense_params + arch.moe_layers * arch.moe_top_k * arch.moe_expert_params
    assert active == pytest.approx(arch.params_active, rel=0.04)
    assert 0 < arch.dense_params < arch.params_active


def test_a100_decode_reads_at_its_published_bandwidth() -> None:
    # A100-80GB SXM: 2.039 TB/s (NVIDIA datasheet), 75 % of it achieved; batch one is memory-bound, so a step is
    # the 16.06 GB of fp16 weights plus one context's KV read at that rate, plus the per-step overhead
    dep = Deployment.of("llama-3.1-8b", "a100")
    mem = (8.03e9 * 2 + 1000 * 128 * KIB) / (2.039e12 * 0.75)
    assert decode_cost(dep, 1, 1000).bound == "memory"
    assert decode_step_s(dep, 1, 1000) == pytest.approx(mem + 0.002 + 1e-5, rel=1e-12)
    # the same step on an H100 (3.35 TB/s at 80 %) is faster by the ratio of achieved bandwidths, ~1.75×
    h100 = decode_cost(Deployment.of("llama-3.1-8b", "h100"), 1, 1000)
    assert mem / h100.memory_s == pytest.approx((3.35e12 * 0.80) / (2.039e12 * 0.75), rel=1e-12)


@pytest.mark.parametrize(
    ("key", "gpu", "tp"),
    [("llama-3.1-8b", "h100", 1), ("llama-3.1-8b", "a100", 1), ("llama-3.3-70b", "h100", 4),
     ("llama-3.3-70b", "a100", 4), ("mixtral-8x7b", "h100", 2), ("dbrx", "a100", 8), ("mpt-30b", "h100", 2)],
)  # fmt: skip
def test_default_tp_fits_weights(key: str, gpu: str, tp: int) -> None:
    dep = Deployment.of(key, gpu)
    assert dep.tp == tp == default_tp(ARCHITECTURES[key], GPUS[gpu])
    assert (kv_capacity_tokens(dep) or 0) > 0


def test_deployment_rejects_bad_tp_and_models_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="tensor-parallel"):
        Deployment.of("llama-3.1-8b", "h100", tp=3)
    with pytest.raises(ValueError, match="does not fit"):
        Deployment.of("deepseek-r1", "h100", dtype="fp16")
    assert Deployment.of("deepseek-r1", "h100").dtype == "fp8"  # native dtype


def test_kv_capacity_formula() -> None:
    dep = Deployment.of("llama-3.1-8b", "h100")
    expected = (1 * 80e9 * 0.9 - 8.03e9 * 2) // (128 * KIB)
    assert kv_capacity_tokens(dep) == int(expected)
    assert kv_capacity_tokens(Deployment.of("bge-large", "h100")) is None
    assert kv_capacity_tokens(Deployment.of("llama-3.3-70b", "h100", tp=2)) == int(
        (160e9 * 0.9 - 141.2e9) // (320 * KIB)
    )
    assert kv_capacity_tokens(Deployment.of("llama-3.1-405b", "h100", tp=8)) == 0  # the weights do not fit


def test_decode_step_is_the_roofline_formula() -> None:
    dep = Deployment.of("llama-3.1-8b", "h100")
    arch = dep.architecture
    batch, ctx = 8, 1000.0
    mem = (8.03e9 * 2 + batch * ctx * 128 * KIB) / (3.35e12 * 0.80)
    flops = (2 * 8.03e9 * batch + 4 * arch.layers * arch.attn_dim * batch * ctx) / (989e12 * 0.65)
    assert decode_step_s(dep, batch, ctx) == pytest.approx(max(mem, flops) + 0.002 + 1e-5 * batch, rel=1e-12)
    tp4 = Deployment.of("llama-3.1-70b", "h100", tp=4)
    comm = 2 * 80 * batch * 8192 * 2 * 2 * 3 / 4 / (0.5 * 450e9)  # two fp16 ring all-reduces per layer
    assert decode_cost(tp4, batch, ctx).comm_s == pytest.approx(comm, rel=1e-12)
    assert decode_cost(dep, batch, ctx).comm_s == 0.0


def test_prefill_is_the_formula_and_quadratic_in_length() -> None:
    dep = Deployment.of("llama-3.3-70b", "a100", tp=4)
    n = 2000
    expected = (2 * 70.6e9 * n + 2 * 80 * 8192 * n * n) / (4 * 0.7 * 312e12 * 0.65)
    assert prefill_s(dep, n) == pytest.approx(expected, rel=1e-12)
    assert prefill_s(dep, 2 * n) > 2 * prefill_s(dep, n)
    assert prefill_s(dep, 0) == 0.0


def test_decode_is_monotonic_in_batch_and_context() -> None:
    for key in ("llama-3.1-8b", "mixtral-8x7b", "llama-3.3-70b"):
        dep = Deployment.of(key, "h100")
        times = [decode_step_s(dep, b, 1000) for b in (1, 2, 4, 16, 64, 256, 1024)]
        assert times == sorted(times) and times[0] < times[-1]
        assert decode_step_s(dep, 32, 100) < decode_step_s(dep, 32, 4000)


def test_batch_one_is_memory_bound_and_huge_batches_are_compute_bound() -> None:
    dep = Deployment.of("llama-3.1-8b", "h100")
    assert decode_cost(dep, 1, 500).bound == "memory"
    assert decode_cost(dep, 4096, 10).bound == "compute"


def test_batch_one_itl_matches_published_light_load_figures() -> None:
    # vLLM blog: Llama-3-8B on H100 "1 token every 13 ms under light load"; llm-d's table: 10-15 ms.
    assert 0.006 < decode_step_s(Deployment.of("llama-3.1-8b", "h100"), 1, 1000) < 0.015


def test_fp8_is_faster_and_only_h100_gains_compute() -> None:
    h16, h8 = Deployment.of("llama-3.1-8b", "h100"), Deployment.of("llama-3.1-8b", "h100", dtype="fp8")
    assert decode_step_s(h8, 1, 1000) < decode_step_s(h16, 1, 1000)
    assert prefill_s(h8, 1000) == pytest.approx(prefill_s(h16, 1000) / 2)
    assert h8.kv_bytes_per_token == h16.kv_bytes_per_token / 2
    assert (kv_capacity_tokens(h8) or 0) > 2 * (kv_capacity_tokens(h16) or 0)
    a16, a8 = Deployment.of("llama-3.1-8b", "a100"), Deployment.of("llama-3.1-8b", "a100", dtype="fp8")
    assert decode_step_s(a8, 1, 1000) < decode_step_s(a16, 1, 1000)
    assert prefill_s(a8, 1000) == prefill_s(a16, 1000)  # A100: weight-only fp8, fp16 arithmetic


def test_moe_expert_touch() -> None:
    dep = Deployment.of("mixtral-8x7b", "h100")
    arch = dep.architecture
    assert weight_read_bytes(dep, 1) == pytest.approx(arch.params_active * 2, rel=0.01)
    assert weight_read_bytes(dep, 16) / (arch.params_total * 2) > 0.99  # B >= 16 touches ~99 % of experts
    assert weight_read_bytes(dep, 256) == pytest.approx(arch.params_total * 2, rel=1e-6)
    reads = [weight_read_bytes(dep, b) for b in range(1, 40)]
    assert reads == sorted(reads)
    dense = Deployment.of("llama-3.1-8b", "h100")
    assert weight_read_bytes(dense, 1) == weight_read_bytes(dense, 256) == dense.weight_bytes


def test_tensor_parallel_efficiency() -> None:
    by_tp = {tp: Deployment.of("llama-3.3-70b", "h100", tp=tp) for tp in (4, 8)}
    mem = {tp: decode_cost(dep, 1, 100).memory_s for tp, dep in by_tp.items()}
    assert mem[4] / mem[8] == pytest.approx((8 * 0.6) / (4 * 0.7))
    one = Deployment.of("llama-3.1-8b", "a100", tp=1)
    two = Deployment.of("llama-3.1-8b", "a100", tp=2)
    assert prefill_s(one, 512) / prefill_s(two, 512) == pytest.approx(2 * 0.95)


def test_embedding_models_prefill_only() -> None:
    dep = Deployment.of("bge-large", "a100")
    assert dep.architecture.kind == "embedding"
    assert 0 < prefill_s(dep, 512) < 0.05
    with pytest.raises(ValueError, match="embedding"):
        decode_step_s(dep, 1, 100)


def test_names_are_readable() -> None:
    assert Deployment.of("llama-3.3-70b", "a100").name == "llama-3.3-70b@a100x4-fp16"
