"""The roofline model held against every published calibration point (their sources: ``docs/sources.md``).

Budget (issue 4): median |error| ≤ 15 %, none > 35 %, over the points kept. Points the model cannot express honestly
are listed in ``EXCLUDED`` with the reason, and a test checks the list is complete.

Max-throughput points (TensorRT-LLM v0.14 [P1]) are predicted with ``saturation(ServingConfig(dep, max_batch=2048))``:
``trtllm-bench`` of that era built engines with ``max_batch_size`` 2048 for Llama-3-8B / Mixtral TP2 (its
``benchmark_config.yml``; 4096–8192 for the TP 4/8 builds) and then runs as many requests as the KV cache holds, so the
batch is ``min(2048, KV capacity / (ISL + OSL))``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal, cast

from loadtest.model.hardware import Dtype
from loadtest.model.predict import saturation
from loadtest.model.roofline import Deployment, decode_step_s, prefill_s
from loadtest.model.serving import ServingConfig

TRT_MAX_BATCH = 2048
Kind = Literal["max_throughput", "itl", "ttft"]


@dataclass(frozen=True)
class Point:
    """One published figure. ``value``: output tok/s (max_throughput), seconds (itl, ttft)."""

    source: str
    label: str
    kind: Kind
    arch: str
    gpu: str
    tp: int
    dtype: Dtype
    value: float
    prompt: int = 0
    output: int = 0


def _trt(
    arch: str, mix: tuple[int, int], tp: int, h100_fp8: float, h100_fp16: float, a100: float
) -> list[Point]:
    p, o = mix
    short = {"llama-3.1-8b": "8B", "llama-3.1-70b": "70B", "mixtral-8x7b": "Mixtral"}[arch]
    return [
        Point(
            "P1",
            f"TRT {short} {p}/{o} TP{tp} {gpu.upper()} {dt.upper()}",
            "max_throughput",
            arch,
            gpu,
            tp,
            dt,
            v,
            p,
            o,
        )
        for gpu, dt, v in cast(
            "tuple[tuple[str, Dtype, float], ...]",
            (("h100", "fp8", h100_fp8), ("h100", "fp16", h100_fp16), ("a100", "fp16", a100)),
        )
    ]


POINTS: list[Point] = [
    *_trt("llama-3.1-8b", (1000, 1000), 1, 14108, 7055, 3634),
    *_trt("llama-3.1-8b", (128, 128), 1, 26933, 15572, 6702),
    *_trt("llama-3.1-8b", (2048, 128), 1, 3460, 1904, 795),
    *_trt("llama-3.1-70b", (1000, 1000), 4, 6933, 3775, 1763),
    *_trt("llama-3.1-70b", (1000, 1000), 8, 10730, 5978, 3190),
    *_trt("mixtral-8x7b", (1000, 1000), 2, 15932, 6053, 3277),
    *_trt("mixtral-8x7b", (1000, 1000), 4, 28015, 15509, 7357),
    # Baseten [P4]: Mixtral INT8 on 1xA100, 512 input tokens, batch 1: 81 tok/s. INT8 weight-only = the model's
    # fp8 on A100 (1 byte per weight, fp16 arithmetic). Context ≈ 512 + half of a short answer.
    Point(
        "P4",
        "Baseten Mixtral INT8 A100 batch-1 ITL",
        "itl",
        "mixtral-8x7b",
        "a100",
        1,
        "fp8",
        1 / 81,
        512,
        100,
    ),
    # Derived TTFT floors (Vidur linear ops at 1024 tokens, TP 1; docs/sources.md): prefill of 1024 tokens.
    Point("V-derived", "8B A100 prefill 1024 floor", "ttft", "llama-3.1-8b", "a100", 1, "fp16", 0.075, 1024),
    Point(
        "V-derived", "7B-class H100 prefill 1024 floor", "ttft", "llama-2-7b", "h100", 1, "fp16", 0.021, 1024
    ),
]

EXCLUDED: dict[str, str] = {
    "P2 vLLM 0.5.4 8B-FP8 1xH100 3,400 tok/s @ 19.8 ms": (
        "vLLM 0.5.4 was CPU-bound: the same report says v0.6.0 more than doubled throughput by cutting CPU overhead "
        "and GPU power draw was ~60 %; the ISL/OSL mix is not given (fixed 320 prompts). Little's law gives a mean "
        "batch of tok/s x TPOT = 67, at which the GPU roofline predicts a 6-9 ms step (200-2,000 tokens of "
        "context), not 19.8 ms: the gap is host overhead the model does not represent."
    ),
    "P2 vLLM 0.5.4 8B-FP8 1xA100 1,518 tok/s @ 42.9 ms": "same as the 1xH100 vLLM 0.5.4 point.",
    "P2 vLLM 0.5.4 70B-FP8 4xH100 2,243 tok/s @ 38.3 ms": "same as the 1xH100 vLLM 0.5.4 point.",
    "P2 vLLM 0.5.4 Mixtral 2xH100 1,430 tok/s @ 38.1 ms": "same as the 1xH100 vLLM 0.5.4 point.",
    "P3 vLLM blog Llama-3-8B H100 1 token / 13 ms (light load)": (
        "the blog gives it for vLLM <= 0.5.3 while profiling that only 38 % of the time was GPU execution (API "
        "server 33 %, scheduling 29 %), i.e. ~5 ms on the GPU. The model's batch-1 step (checked below to lie "
        "between that GPU share and 13 ms) is a GPU step plus c0, not that engine's host overhead."
    ),
    "P4 Baseten Mixtral INT8 A100 batch-1 TTFT 127 ms @ 512 in": (
        "a client-side TTFT of a hosted endpoint (network round trip, HTTP, tokenisation) with INT8 weight-only "
        "GEMMs dequantising at M = 512; the model's prefill is the compute floor (~67 ms) and has no term for either."
    ),
    "V-derived 70B H100 TP4 62 ms / TP8 33 ms prefill floors": (
        "linear-op compute only, without the all-reduces that eta_TP stands for, so they are lower bounds at TP > 1 "
        "(the model predicts above them, checked below), not end-to-end times."
    ),
}


def predict(point: Point) -> float:
    dep = Deployment.of(point.arch, point.gpu, tp=point.tp, dtype=point.dtype)
    if point.kind == "max_throughput":
        config = ServingConfig(dep, max_batch=TRT_MAX_BATCH)
        return saturation(config, point.prompt, point.output).output_tokens_per_s
    if point.kind == "itl":
        return decode_step_s(dep, 1, point.prompt + point.output / 2)
    return prefill_s(dep, point.prompt)


def calibration_table() -> tuple[list[tuple[Point, float, float]], float, float]:
    rows = [(p, predict(p), predict(p) / p.value - 1.0) for p in POINTS]
    errors = [abs(e) for _, _, e in rows]
    return rows, statistics.median(errors), max(errors)


def format_table(rows: list[tuple[Point, float, float]]) -> str:
    lines = [f"{'point':48s} {'source':9s} {'published':>11s} {'predicted':>11s} {'error':>7s}"]
    for p, pred, err in rows:
        scale = 1000.0 if p.kind != "max_throughput" else 1.0
        unit = " ms" if p.kind != "max_throughput" else ""
        lines.append(
            f"{p.label:48s} {p.source:9s} {p.value * scale:11,.1f}{unit} {pred * scale:11,.1f}{unit} {err:+7.1%}"
        )
    return "\n".join(lines)


def test_model_meets_the_calibration_budget() -> None:
    rows, median, worst = calibration_table()
    table = format_table(rows)
    summary = f"n={len(rows)} median |error| {median:.1%}, max {worst:.1%}, excluded {len(EXCLUDED)}"
    assert median <= 0.15 and worst <= 0.35, f"{summary}\n{table}"


def test_every_section_2_point_is_kept_or_excluded_with_a_reason() -> None:
    assert sum(p.source == "P1" for p in POINTS) == 21  # 9 (8B) + 6 (70B) + 6 (Mixtral)
    kept_or_excluded = {p.source for p in POINTS} | {k.split()[0] for k in EXCLUDED}
    assert kept_or_excluded == {"P1", "P2", "P3", "P4", "V-derived"}
    assert sum(k.startswith("P2") for k in EXCLUDED) == 4
    assert all(len(reason) > 20 for reason in EXCLUDED.values())


def test_excluded_points_are_consistent_where_the_model_can_say_something() -> None:
    step = decode_step_s(Deployment.of("llama-3-8b", "h100"), 1, 1000)
    assert 0.38 * 0.013 < step < 0.013  # between the GPU share of vLLM's 13 ms and the 13 ms
    for tp, floor in ((4, 0.062), (8, 0.033)):
        assert prefill_s(Deployment.of("llama-3.1-70b", "h100", tp=tp), 1024) > floor


if __name__ == "__main__":  # print the table for docs/capacity-model.md
    rows, median, worst = calibration_table()
    print(format_table(rows))
    print(f"n={len(rows)} median |error| {median:.1%}, max {worst:.1%}")
