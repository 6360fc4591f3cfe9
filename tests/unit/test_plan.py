"""Provisioning recommendations: chunk arithmetic, SLO capacity, quotas, costs and break-even."""

from __future__ import annotations

import math
import re
from pathlib import Path

import orjson
import pytest

from analysis import load_run
from analysis.forecast import Forecast
from analysis.measured import Measured, measured_from_run
from analysis.plan import PlanSlos, plan, slo_capacity
from analysis.prices import PriceBook, PriceEntry, load_prices
from loadtest.errors import ConfigError
from loadtest.model.predict import (
    bounding_resource,
    chunk_of,
    feasible_batch,
    predict_closed_loop,
    reference_tokens_per_s,
)
from loadtest.model.roofline import Deployment, decode_cost, kv_capacity_tokens
from loadtest.model.serving import ServingConfig
from loadtest.sim.config import SimConfig
from loadtest.spec.profile import read_profile, shape
from reports.plan_table import basis_line
from tests.helpers import ROOT, refused, run_cli, two_stage_run

FORECAST = Forecast(peak_tokens_per_min=1_800_000, prompt_tokens=3000, output_tokens=250)
SLO = PlanSlos(ttft_s=1.0, tpot_s=0.05)
BOOK = PriceBook(
    label="test",
    usd_per_dbu=1.0,
    dbu_per_gpu_hour=10.0,
    entries={
        "default": PriceEntry(
            ppt_input_per_million=0.5,
            ppt_output_per_million=1.5,
            itpm=200_000,
            otpm=20_000,
            qph=2400,
        ),
        "llama-3.1-8b": PriceEntry(throughput_chunk_size=1000, dbu_per_chunk_hour=2.0),
        "llama-3.3-70b": PriceEntry(throughput_chunk_size=1000, dbu_per_chunk_hour=2.0),
    },
)


def test_slo_capacity_is_the_largest_concurrency_meeting_the_slo() -> None:
    config = ServingConfig(Deployment.of("llama-3.1-8b", "h100"))
    tokens, conc, binding = slo_capacity(config, 3000, 250, SLO)
    assert binding == "tpot"
    at = predict_closed_loop(config, conc, 3000, 250, start="spread")
    beyond = predict_closed_loop(config, conc + 1, 3000, 250, start="spread")
    assert at.tpot_s is not None and beyond.tpot_s is not None
    assert at.tpot_s <= 0.05 < beyond.tpot_s
    assert tokens == pytest.approx(at.requests_per_s * 3250)
    looser, _, _ = slo_capacity(config, 3000, 250, PlanSlos(ttft_s=1.0, tpot_s=0.08))
    assert looser > tokens


def test_an_impossible_slo_gives_no_capacity_and_says_why() -> None:
    (p,) = plan(FORECAST, PlanSlos(ttft_s=0.001), ["llama-3.3-70b"], prices=BOOK)
    assert p.replica_slo_tokens_per_s == 0 and p.breached_slo == "ttft" and p.chunks is None and p.notes


def test_chunks_follow_the_formula() -> None:
    (p,) = plan(FORECAST, SLO, ["llama-3.1-8b"], headroom=0.25, prices=BOOK)
    demand = 1_800_000 / 60 * 1.25
    assert p.chunks == math.ceil(demand / (p.mix_ratio * 1000))
    assert p.band_tokens_per_s == p.chunks * 1000
    assert p.pt_cost_per_month == pytest.approx(p.chunks * 2.0 * 730)
    assert p.pt_rate.tokens_basis == p.pt_rate.dbu_basis == "price table" and not p.pt_rate.estimated
    assert (
        0 < p.mix_ratio < 1
    )  # a 3,000/250 mix gets fewer tokens/s than the 2,048/256 reference under this SLO


def test_a_measured_ratio_replaces_the_estimate() -> None:
    measured = {
        "llama-3.1-8b": Measured(slo_tokens_per_s=600, band_tokens_per_s=1000, relative_ci=0.04, run="r1")
    }
    (p,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=BOOK, measured=measured)
    assert p.mix_ratio == pytest.approx(0.6)
    assert p.chunks == math.ceil(30_000 * 1.2 / (0.6 * 1000))
    assert p.source == "measured (r1)" and "±4%" in p.confidence


def test_pay_per_token_quota_fit_and_costs() -> None:
    small = Forecast(peak_tokens_per_min=20_000, prompt_tokens=500, output_tokens=100)  # 0.56 req/s
    (fits,) = plan(small, SLO, ["llama-3.1-8b"], prices=BOOK)
    assert fits.ppt_fits is True and fits.ppt_rate_limited_share == 0.0 and fits.ppt_refused_share == 0.0
    (over,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=BOOK)
    assert over.ppt_fits is False
    # 9.23 req/s offered; QPH 2400 admits 0.667 req/s, ITPM 200k/3000 admits 1.11 req/s: QPH binds
    assert over.ppt_quota == "queries_per_hour"
    assert over.ppt_rate_limited_share == pytest.approx(1 - (2400 / 3600) / FORECAST.peak_requests_per_s)
    per_token = (3000 * 0.5 + 250 * 1.5) / 3250 / 1e6
    assert over.ppt_usd_per_token == pytest.approx(per_token)
    # no profile: the month's volume at its average rate, 0.35 × 9.23 = 3.23 req/s, of which QPH admits 0.667:
    # priced for what is served, not for what is refused
    average = FORECAST.tokens_per_month / (730 * 3600) / 3250
    served = FORECAST.tokens_per_month * (2400 / 3600) / average
    assert over.ppt_served_tokens_per_month == pytest.approx(served)
    assert over.ppt_refused_share == pytest.approx(1 - (2400 / 3600) / average)
    assert over.ppt_cost_per_month == pytest.approx(served * per_token)
    # the most the quotas admit: 0.667 req/s × 3,250 tokens all month = 5.69B; PT at 39 chunks × $2 × 730 =
    # $56,940 costs what 98.7B tokens do on pay-per-token: beyond the ceiling, so no break-even, said why
    assert over.ppt_ceiling_tokens_per_month == pytest.approx(2400 / 3600 * 3250 * 3600 * 730)
    assert over.pt_cost_per_month == pytest.approx(39 * 2.0 * 730)
    assert over.break_even_tokens_per_month is None
    assert (
        over.break_even_note is not None
        and "the quotas admit at most 5.7B tokens/month" in over.break_even_note
    )


def _unlimited(dbu_per_chunk_hour: float) -> PriceBook:
    return PriceBook(
        label="t",
        usd_per_dbu=1.0,
        entries={
            "default": PriceEntry(ppt_input_per_million=0.5, ppt_output_per_million=1.5),
            "llama-3.1-8b": PriceEntry(throughput_chunk_size=1000, dbu_per_chunk_hour=dbu_per_chunk_hour),
        },
    )


def test_break_even_only_within_the_reachable_range() -> None:
    per_token = (3000 * 0.5 + 250 * 1.5) / 3250 / 1e6
    (p,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=_unlimited(0.5))
    assert p.chunks == 39 and p.pt_cost_per_month == pytest.approx(39 * 0.5 * 730)
    # $14,235 buys 24.7B tokens on pay-per-token, below the 78.8B the peak reaches all month: a break-even
    assert p.break_even_tokens_per_month == pytest.approx(39 * 0.5 * 730 / per_token)
    assert p.break_even_note is None
    # at $2 a chunk-hour, 98.7B: above what the peak reaches all month, so none, and why
    (q,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=_unlimited(2.0))
    assert q.break_even_tokens_per_month is None
    assert q.break_even_note == (
        "no break-even: even the peak all month (78.8B tokens) costs less on pay-per-token ($45,485) than PT "
        "($56,940)"
    )


def test_model_units_for_a_model_unit_architecture() -> None:
    (p,) = plan(FORECAST, SLO, ["llama-4-maverick"], prices=BOOK)
    assert p.provisioning == "model_units" and p.model_units is not None and p.chunks is None
    # no table figure for Maverick here: its unit is the published 65 tokens/s (the anchor), estimated
    assert p.pt_rate.tokens_per_s == pytest.approx(65.0) and p.pt_rate.tokens_basis == "estimated"
    assert p.model_units == math.ceil(30_000 * 1.2 / (p.mix_ratio * 65.0))
    assert p.pt_cost_per_month == pytest.approx(p.model_units * p.pt_rate.gpus * 10.0 * 730)


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="unknown architecture"):
        plan(FORECAST, SLO, ["gpt-9"])
    with pytest.raises(ConfigError, match="embedding"):
        plan(FORECAST, SLO, ["gte-large"])


def test_shipped_price_table_is_labelled_as_examples() -> None:
    book = load_prices(ROOT / "scenarios" / "prices" / "example.toml")
    assert "EXAMPLE" in book.label
    assert book.get("llama-3.3-70b").ppt_input_per_million is not None


def test_price_table_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("[models.default]\nprice = 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_prices(bad)


def test_plan_command_table_and_errors() -> None:
    proc = run_cli(
        "plan",
        "--peak-tpm",
        "1800000",
        "--prompt-tokens",
        "3000",
        "--output-tokens",
        "250",
        "--ttft",
        "1s",
        "--tpot",
        "50ms",
        "--arch",
        "llama-3.1-8b",
        "--arch",
        "llama-3.3-70b",
    )
    assert proc.returncode == 0, proc.stderr
    assert "llama-3.3-70b" in proc.stdout and "EXAMPLE" in proc.stdout and "estimated" in proc.stdout
    refused(run_cli("plan", "--peak-tpm", "1000"), 2, "--prompt-tokens")


def test_measured_from_a_simulator_run_uses_its_band(tmp_path: Path) -> None:
    run = two_stage_run(tmp_path, {"architecture": "llama-3.1-8b", "gpu": "h100", "chunks": 2})
    arch, measured = measured_from_run(load_run(run))
    chunk = SimConfig(architecture="llama-3.1-8b").throughput_chunk_size
    assert arch == "llama-3.1-8b" and measured.band_tokens_per_s == 2 * chunk
    # p95 0.2 → 0.6 s around 0.4 s: halfway between 10 and 20 req/s, at 1,100 tokens a request
    assert measured.slo_tokens_per_s == pytest.approx(15.0 * 1100)
    assert (
        measured.limit_detail is not None and "ttft_p95" in measured.limit_detail and not measured.lower_bound
    )
    at_run_mix = Forecast(peak_tokens_per_min=1_800_000, prompt_tokens=1000, output_tokens=100)
    (p,) = plan(at_run_mix, SLO, [arch], prices=BOOK, measured={arch: measured})
    assert p.mix_ratio == pytest.approx(15.0 * 1100 / (2 * chunk)) and p.source == "measured (run)"


def test_measured_from_a_run_says_what_it_lacks(tmp_path: Path) -> None:
    endpoint = load_run(two_stage_run(tmp_path, None))
    with pytest.raises(ConfigError, match="--run-arch"):
        measured_from_run(endpoint)
    with pytest.raises(ConfigError, match="--run-band"):
        measured_from_run(endpoint, "llama-3.1-8b")
    _, measured = measured_from_run(endpoint, "llama-3.1-8b", 5000.0)
    assert measured.band_tokens_per_s == 5000.0
    ppt = load_run(two_stage_run(tmp_path / "p", {"mode": "ppt", "qps": 5}))
    with pytest.raises(ConfigError, match="pay-per-token"):
        measured_from_run(ppt)


def test_plan_from_a_run_on_the_command_line(tmp_path: Path) -> None:
    run = two_stage_run(tmp_path, {"architecture": "llama-3.1-8b", "chunks": 1})
    proc = run_cli(
        "plan", "--run", str(run), "--peak-tpm", "3000000", "--arch", "llama-3.3-70b", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    by_arch = {p["architecture"]: p for p in out["plans"]}
    assert by_arch["llama-3.1-8b"]["source"] == "measured (run)"
    assert by_arch["llama-3.3-70b"]["source"].startswith("estimated")
    assert (out["forecast"]["prompt_tokens"], out["forecast"]["output_tokens"]) == (
        1000,
        100,
    )  # the run's mix
    bad = run_cli("plan", "--run", str(two_stage_run(tmp_path / "e", None)), "--peak-tpm", "1000")
    refused(bad, 2, "--run-arch")


def test_embedding_models_are_sized_on_what_they_read() -> None:
    reads = Forecast(peak_tokens_per_min=60_000_000, prompt_tokens=1000, output_tokens=0)  # 1 M tokens/s
    (bge,) = plan(reads, PlanSlos(ttft_s=0.5), ["bge-large"], prices=BOOK)
    assert any("512-token context" in n for n in bge.notes)  # BGE reads 512 tokens at most: clipped
    assert bge.mix_ratio == pytest.approx(1.0, rel=1e-6)  # clipped input = the embedding reference (512, 0)
    assert bge.chunk_size is not None and bge.pt_rate.tokens_basis == "estimated"  # no chunk in the table
    # the same 1,000 req/s, each truncated to 512 tokens: 512,000 tokens/s to provision and to bill
    assert bge.chunks == math.ceil(512_000 * 1.2 / (bge.mix_ratio * bge.chunk_size))
    served = bge.ppt_served_tokens_per_month
    assert served is not None and served < reads.tokens_per_month * 512 / 1000  # the quotas refuse most of it
    assert bge.ppt_cost_per_month == pytest.approx(served * 0.5 / 1e6)  # input price only, what is served
    (gte,) = plan(reads, PlanSlos(ttft_s=0.5), ["gte-large"], prices=BOOK)
    assert not gte.notes and gte.replica_slo_tokens_per_s > 0 and "no published" in gte.confidence
    tight, _, binding = slo_capacity(
        ServingConfig(Deployment.of("gte-large", "h100")), 1000, 0, PlanSlos(0.01)
    )
    assert binding == "ttft" and tight < gte.replica_slo_tokens_per_s
    with pytest.raises(ConfigError, match="generates text"):
        plan(reads, SLO, ["llama-3.1-8b"])


def test_a_run_at_another_mix_is_scaled_by_the_model(tmp_path: Path) -> None:
    _, measured = measured_from_run(
        load_run(two_stage_run(tmp_path, {"architecture": "llama-3.1-8b", "chunks": 1}))
    )
    assert measured.mix == (1000, 100)
    same = Forecast(peak_tokens_per_min=3_000_000, prompt_tokens=1050, output_tokens=95)  # within 10 %
    (p,) = plan(same, SLO, ["llama-3.1-8b"], prices=BOOK, measured={"llama-3.1-8b": measured})
    assert p.mix_ratio == pytest.approx(measured.slo_tokens_per_s / measured.band_tokens_per_s)
    assert p.notes[0] == "measured against the run's SLOs (chat: ttft_p95 ≤ 0.4 s)"
    longer = Forecast(peak_tokens_per_min=3_000_000, prompt_tokens=4000, output_tokens=400)
    (q,) = plan(longer, SLO, ["llama-3.1-8b"], prices=BOOK, measured={"llama-3.1-8b": measured})
    config = ServingConfig(Deployment.of("llama-3.1-8b", "h100"))
    factor = slo_capacity(config, 4000, 400, SLO)[0] / slo_capacity(config, 1000, 100, SLO)[0]
    assert q.mix_ratio == pytest.approx(p.mix_ratio * factor) and "scaled to this mix" in q.notes[0]


def test_peak_in_requests_per_second_and_run_options(tmp_path: Path) -> None:
    common = (
        "--prompt-tokens",
        "900",
        "--output-tokens",
        "100",
        "--arch",
        "llama-3.1-8b",
        "--format",
        "json",
    )
    by_rps = orjson.loads(run_cli("plan", "--peak-rps", "20", *common).stdout)
    by_tpm = orjson.loads(run_cli("plan", "--peak-tpm", str(20 * 1000 * 60), *common).stdout)
    assert by_rps["plans"] == by_tpm["plans"] and by_rps["forecast"]["peak_tokens_per_min"] == 1_200_000
    both = run_cli("plan", "--peak-rps", "20", "--peak-tpm", "5", *common)
    refused(both, 2, "give the forecast peak once")
    run = str(two_stage_run(tmp_path, {"architecture": "llama-3.1-8b"}))
    two = run_cli("plan", "--peak-rps", "20", "--run", run, "--run", run, "--run-arch", "mpt-7b", *common)
    refused(two, 2, "single --run")
    twice = run_cli("plan", "--peak-rps", "20", "--run", run, "--run", run, *common)
    refused(twice, 2, "one run per architecture")


def test_estimated_rows_take_the_measured_runs_slos_unless_given(tmp_path: Path) -> None:
    run = str(two_stage_run(tmp_path, {"architecture": "llama-3.1-8b", "chunks": 1}))
    args = ("plan", "--run", run, "--peak-rps", "20", "--arch", "llama-3.3-70b", "--format", "json")
    taken = run_cli(*args)
    assert taken.returncode == 0, taken.stderr
    out = orjson.loads(taken.stdout)
    assert out["slo"] == {"ttft_s": 0.4, "tpot_s": None} and "SLOs from run" in taken.stderr
    estimated = next(p for p in out["plans"] if p["architecture"] == "llama-3.3-70b")
    # the run's TTFT ≤ 0.4 s at its 1000 in / 100 out: a 70B H100 TP4 replica holds 208 users before the next one
    # breaks TTFT (below saturation); 208 sequences fit its KV cache (256 would), and a decode step of 208 × 1,050
    # tokens reads 141 GB of weights + 72 GB of KV: memory-bound (28 ms of reads against 17 ms of compute)
    config = ServingConfig(Deployment.of("llama-3.3-70b", "h100"))
    _, concurrency, binding = slo_capacity(config, 1000, 100, PlanSlos(ttft_s=0.4))
    assert (concurrency, binding) == (208, "ttft")
    assert decode_cost(config.deployment, 208, 1050).bound == "memory"
    assert (estimated["slo_concurrency"], estimated["binding"], estimated["resource"]) == (
        208,
        "ttft",
        "memory",
    )
    given = orjson.loads(run_cli(*args, "--ttft", "2s").stdout)
    assert given["slo"]["ttft_s"] == 2.0


def test_the_bounding_resource_is_named_from_the_model() -> None:
    # KV: MPT-7B has no GQA (512 KiB a token); on one A100 (80 GB × 0.9 − 13.4 GB of weights) its cache holds
    # 111,770 tokens, ⌊111,770 / 2,200⌋ = 50 requests of 2000 + 200: fewer than max_batch 256, so at saturation
    # (concurrency 0) the cache caps the batch
    mpt = ServingConfig(Deployment.of("mpt-7b", "a100"))
    assert kv_capacity_tokens(mpt.deployment) == int((80e9 * 0.9 - 6.7e9 * 2) // (512 * 1024)) == 111_770
    assert feasible_batch(mpt, 2000, 200) == 50
    assert bounding_resource(mpt, 2000, 200, 0) == bounding_resource(mpt, 2000, 200, 64) == "kv"
    # ... but 16 users are not capped: then the decode step's larger roofline term names the resource
    assert bounding_resource(mpt, 2000, 200, 16) == "memory"
    # memory: 16 users of Llama 3.1 8B on an H100 read (16.06 GB + 16 × 1,050 × 128 KiB) / (3.35 TB/s × 0.80) =
    # 6.8 ms a step against (2 × 8.03e9 × 16 + 4 × 32 × 4096 × 16 × 1,050) / (989 TFLOP/s × 0.65) = 0.41 ms
    h100 = ServingConfig(Deployment.of("llama-3.1-8b", "h100"))
    cost = decode_cost(h100.deployment, 16, 1050)
    assert (cost.memory_s, cost.compute_s) == (
        pytest.approx(6.81e-3, rel=1e-3),
        pytest.approx(4.13e-4, rel=1e-2),
    )
    assert bounding_resource(h100, 1000, 100, 16) == "memory"
    # compute: at saturation 256 sequences of Llama 3.3 70B on 4 A100s (128 + 128: mean context 192) compute
    # (2 × 70.6e9 × 256 + 4 × 80 × 8192 × 256 × 192) / (4 × 0.7 × 312 TFLOP/s × 0.65) = 63.9 ms a step but read
    # only (141.2 GB + 256 × 192 × 320 KiB) / (4 × 0.7 × 2.039 TB/s × 0.75) = 36.74 ms
    a100 = ServingConfig(Deployment.of("llama-3.3-70b", "a100"))
    assert feasible_batch(a100, 128, 128) == a100.max_batch == 256
    cost = decode_cost(a100.deployment, 256, 192)
    assert (cost.memory_s, cost.compute_s) == (
        pytest.approx(36.74e-3, rel=1e-3),
        pytest.approx(63.9e-3, rel=1e-3),
    )
    assert bounding_resource(a100, 128, 128, 0) == "compute"
    assert bounding_resource(a100, 128, 128, 1) == "memory"  # one user: the weights dominate
    # an embedding model only prefills: compute
    assert bounding_resource(ServingConfig(Deployment.of("bge-large", "a100")), 512, 0, 0) == "compute"


PLAN_JSON_KEYS = {
    "schema_version",
    "forecast",
    "slo",
    "headroom",
    "gpu",
    "dtype",
    "tp",
    "max_refused",
    "prices",
    "price_table",
    "cost_basis",
    "measured_runs",
    "endpoint",
    "registered_model",
    "warnings",
    "plans",
}
PLAN_ROW_KEYS = {
    "architecture",
    "workspace",
    "deployment",
    "provisioning",
    "gpu_name",
    "tensor_parallel",
    "dtype",
    "source",
    "confidence",
    "replica_slo_tokens_per_s",
    "replica_reference_tokens_per_s",
    "reference_mix",
    "mix_ratio",
    "slo_concurrency",
    "binding",
    "resource",
    "pt_rate",
    "pt_estimated",
    "gpu_hour_basis",
    "price_source",
    "chunk_size",
    "chunks",
    "min_chunks",
    "band_tokens_per_s",
    "model_units",
    "replicas",
    "gpus",
    "pt_autoscaled",
    "pt_chunks_by_hour",
    "pt_cost_per_month",
    "ppt_fits",
    "ppt_rate_limited_share",
    "ppt_binding_limit",
    "ppt_refused_share",
    "ppt_admitted_share_by_hour",
    "ppt_served_tokens_per_month",
    "ppt_usd_per_token",
    "ppt_cost_per_month",
    "ppt_ceiling_tokens_per_month",
    "break_even_tokens_per_month",
    "break_even_note",
    "notes",
    "feasible",
}
PT_RATE_KEYS = {
    "unit",
    "tokens_per_s",
    "tokens_basis",
    "gpus",
    "dbu_per_hour",
    "dbu_basis",
    "usd_per_hour",
    "usd_per_gpu_hour",
    "source",
}


def test_the_json_schema_is_versioned_and_its_keys_pinned() -> None:
    # docs/plan.md documents each of these keys: a change here is a new schema_version and a docs change
    proc = run_cli(
        "plan", "--peak-rps", "300", "--prompt-tokens", "1000", "--output-tokens", "100", "--max-tokens", "200",
        "--arch", "llama-3.1-8b", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    body = orjson.loads(proc.stdout)
    assert set(body) == PLAN_JSON_KEYS and body["schema_version"] == 4 and body["gpu"] == "h100"
    assert body["forecast"] == {
        "peak_tokens_per_min": 300 * 1100 * 60.0,
        "peak_requests_per_s": 300.0,
        "prompt_tokens": 1000,
        "output_tokens": 100,
        "max_tokens": 200,
        "load_factor": 0.35,
        "tokens_per_month": pytest.approx(300 * 1100 * 60.0 * 60 * 730 * 0.35),
        "profile": None,
    }
    assert [set(row) for row in body["plans"]] == [PLAN_ROW_KEYS]
    assert set(body["plans"][0]["pt_rate"]) == PT_RATE_KEYS
    assert set(body["cost_basis"]) == {
        "usd_per_dbu",
        "usd_per_dbu_source",
        "dbu_per_gpu_hour",
        "how",
    }
    # 300 req/s is above a workspace's 200 QPS for provisioned throughput: a warning, in the JSON and on stderr
    assert len(body["warnings"]) == 1 and "above the 200 queries per second" in body["warnings"][0]
    assert proc.stderr.startswith("warning: a peak of 300 req/s is above the 200 queries per second")
    docs = (ROOT / "docs" / "plan.md").read_text()
    section = docs[docs.index("## JSON: `--format json`") :]
    section = section[: section.index("\n## ", 1)]  # the keys must be in the JSON section's own tables
    assert [k for k in PLAN_ROW_KEYS | PLAN_JSON_KEYS | PT_RATE_KEYS if f"`{k}`" not in section] == []


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--peak-tpm", "nan", "'nan' is not a finite number"),
        ("--peak-tpm", "inf", "'inf' is not a finite number"),
        ("--peak-tpm", "1e30", "1e30 is outside (0, 1e+10]"),
        ("--peak-rps", "-1", "-1 is outside (0, 1e+06]"),
        ("--headroom", "inf", "'inf' is not a finite number"),
        ("--monthly-tokens", "nan", "'nan' is not a finite number"),
        ("--load-factor", "0", "0 is outside (0, 1]"),
    ],
)
def test_non_finite_and_absurd_numbers_are_one_line(flag: str, value: str, message: str) -> None:
    args = ["plan", "--prompt-tokens", "100", "--output-tokens", "10", "--arch", "llama-3.1-8b"]
    if flag not in ("--peak-tpm", "--peak-rps"):
        args += ["--peak-rps", "1"]
    refused(run_cli(*args, flag, value), 2, f"Invalid value for '{flag}': {message}")


def test_a_forecast_no_candidate_can_meet_is_infeasible_with_exit_4() -> None:
    args = (
        "plan",
        "--peak-tpm",
        "1000000",
        "--prompt-tokens",
        "1000",
        "--output-tokens",
        "100",
        "--ttft",
        "1ms",
    )
    proc = run_cli(*args, "--arch", "llama-3.1-8b", "--arch", "llama-3.3-70b", "--format", "json")
    refused(
        proc, 4, "infeasible: no candidate can meet the SLOs at this mix (llama-3.1-8b: ttft too slow even"
    )
    body = orjson.loads(proc.stdout)  # the answer is still printed
    assert [(p["architecture"], p["feasible"], p["replicas"]) for p in body["plans"]] == [
        ("llama-3.1-8b", False, 0),
        ("llama-3.3-70b", False, 0),
    ]
    table = run_cli(*args, "--arch", "llama-3.1-8b")
    assert table.returncode == 4 and "infeasible (ttft)" in table.stdout
    # one feasible candidate is an answer: exit 0
    assert run_cli(*args[:-1], "300ms", "--arch", "llama-3.1-8b").returncode == 0


# issue 11: one cost basis, hourly profiles, every assumption visible


def _book(tmp_path: Path, text: str) -> PriceBook:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return load_prices(path)


ANCHORED = """
usd_per_dbu = 0.5
gpu_hour_from = "llama-2-7b"
[models."llama-2-7b"]
throughput_chunk_size = 970
dbu_per_chunk_hour = 24
[models."llama-3.3-70b"]
throughput_chunk_size = 5000
dbu_per_chunk_hour = 100
"""


def test_estimated_rates_share_one_gpu_hour_basis_derived_from_the_published_chunk(tmp_path: Path) -> None:
    book = _book(tmp_path, ANCHORED)
    archs = ["llama-2-7b", "llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "llama-3.3-70b", "gpt-oss-120b"]
    rows = {p.architecture: p for p in plan(FORECAST, SLO, archs, prices=book)}
    # the anchor: Llama 2 7B on one H100 delivers k tokens/s at 2,048 / 256, so its 970-token/s chunk is 970 / k
    # of a GPU, and 24 DBU/h for that slice is 24 / (970 / k) DBU per GPU-hour
    seven = ServingConfig(Deployment.of("llama-2-7b", "h100"))
    per_gpu = reference_tokens_per_s(seven)
    dbu_per_gpu_hour = 24 / (970 / per_gpu)
    assert rows["llama-2-7b"].gpu_hour_basis.dbu_per_gpu_hour == pytest.approx(dbu_per_gpu_hour)
    assert "llama-2-7b's published chunk (24 DBU/h for 970 tokens/s)" in rows["llama-2-7b"].gpu_hour_basis.how
    # every row the model prices costs the same per GPU-hour: the basis × $/DBU; the anchor too, by construction
    for key in ("llama-2-7b", "llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "gpt-oss-120b"):
        assert rows[key].pt_rate.usd_per_gpu_hour == pytest.approx(dbu_per_gpu_hour * 0.5), key
    assert not rows["llama-2-7b"].pt_rate.estimated and rows["llama-3.1-8b"].pt_rate.estimated
    # ... unless the table says otherwise: 100 DBU/h for a 5,000-token/s chunk of a 4-GPU 70B replica
    seventy = rows["llama-3.3-70b"]
    slice_ = 5000 / (seventy.replica_reference_tokens_per_s / 4)
    assert seventy.pt_rate.gpus == pytest.approx(slice_)
    assert seventy.pt_rate.usd_per_gpu_hour == pytest.approx(100 * 0.5 / slice_)
    # an estimated chunk is one replica's reference tokens/s (the simulator's chunk): cost follows its GPUs
    eight, seventy_one = rows["llama-3.1-8b"], rows["llama-3.1-70b"]
    assert eight.chunk_size == chunk_of(eight.replica_reference_tokens_per_s)
    assert seventy_one.chunk_size == chunk_of(seventy_one.replica_reference_tokens_per_s)
    assert seventy_one.tensor_parallel == 4 and seventy_one.pt_rate.gpus == pytest.approx(4, rel=2e-3)
    # so a row costs what its GPUs do: an estimated chunk is one replica, TP GPUs (its chunk size rounded down to
    # 10 tokens/s makes it a hair less), whatever the architecture — 405B's chunk costs 16 × an 8B's
    gpu_hour_usd = dbu_per_gpu_hour * 0.5
    for key, tp in (("llama-3.1-8b", 1), ("llama-3.1-70b", 4), ("mixtral-8x7b", 2)):
        row = rows[key]
        assert row.tensor_parallel == tp and row.chunks is not None
        assert row.pt_cost_per_month == pytest.approx(row.chunks * tp * gpu_hour_usd * 730, rel=2e-3), key
    assert seventy_one.gpus == seventy_one.replicas * 4


def test_a_price_table_without_a_gpu_hour_basis_prices_only_what_it_gives(tmp_path: Path) -> None:
    book = _book(
        tmp_path,
        'usd_per_dbu = 0.5\n[models."llama-2-7b"]\nthroughput_chunk_size = 970\ndbu_per_chunk_hour = 24\n',
    )
    seven, eight = plan(FORECAST, SLO, ["llama-2-7b", "llama-3.1-8b"], prices=book)
    assert seven.pt_cost_per_month == pytest.approx(seven.chunks * 24 * 0.5 * 730)  # type: ignore[operator]
    assert eight.pt_cost_per_month is None and eight.pt_rate.dbu_per_hour is None


def test_a_partial_entry_falls_back_field_by_field_and_none_stops_it(tmp_path: Path) -> None:
    book = _book(
        tmp_path,
        "[models.default]\nitpm = 100000\notpm = 20000\nppt_input_per_million = 1.0\n"
        '[models."llama-3.1-8b"]\nqph = 5000\notpm = "none"\n',
    )
    resolved = book.resolve("llama-3.1-8b")
    assert (resolved.entry.itpm, resolved.entry.otpm, resolved.entry.qph) == (100_000, None, 5000)
    assert resolved.from_default == ("ppt_input_per_million", "itpm")
    (p,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=book)
    assert p.notes[0] == (
        'ppt_input_per_million, itpm from [models.default] ([models."llama-3.1-8b"] leaves them out)'
    )
    assert (
        book.resolve("llama-3.3-70b").entry.otpm == 20_000 and book.resolve("llama-3.3-70b").note("x") is None
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.default]\nthroughput_chunk_size = 970\n", "describes one architecture's hardware"),
        (
            "[models.default]\npt_per_chunk_hour = 1.68\n",
            "pt_per_chunk_hour is gone: give dbu_per_chunk_hour",
        ),
        ('gpu_hour_from = "llama-2-7b"\n', 'needs [models."llama-2-7b"] with throughput_chunk_size'),
        ("usd_per_dbu = 0\n", "usd_per_dbu must be a number > 0"),
        ('[models.default]\nqph = "never"\n', 'qph must be a positive integer (or "none")'),
    ],
)
def test_price_table_cost_basis_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _book(tmp_path, text)


def test_an_hourly_profile_autoscales_the_band_and_bills_hour_by_hour() -> None:
    week = shape("business-hours")  # 40 hours at 1, 128 at 0.05
    f = Forecast(peak_tokens_per_min=1_800_000, prompt_tokens=3000, output_tokens=250, profile=week)
    assert f.tokens_per_month == pytest.approx(1_800_000 * 43_800 * (40 + 128 * 0.05) / 168)
    (p,) = plan(f, SLO, ["llama-3.1-8b"], prices=BOOK)
    per_chunk = p.mix_ratio * 1000
    busy, quiet = math.ceil(36_000 / per_chunk), math.ceil(0.05 * 36_000 / per_chunk)
    assert (p.chunks, p.min_chunks, p.pt_autoscaled) == (busy, quiet, True)
    assert p.pt_cost_per_month == pytest.approx((40 * busy + 128 * quiet) / 168 * 730 * 2.0)
    # pay-per-token hour by hour: QPH admits 0.667 req/s; busy hours offer 9.23 (refused beyond), quiet ones 0.46
    # (all admitted)
    quiet_rps = 0.05 * f.peak_requests_per_s
    served = (40 * 2400 / 3600 + 128 * quiet_rps) / 168 * 3250 * 3600 * 730
    assert p.ppt_served_tokens_per_month == pytest.approx(served)
    assert p.ppt_refused_share == pytest.approx(1 - served / f.tokens_per_month)
    # hour by hour: Monday 09:00 is busy, 08:00 quiet; the band and the admitted share follow
    assert p.pt_chunks_by_hour is not None and p.ppt_admitted_share_by_hour is not None
    assert (p.pt_chunks_by_hour[8], p.pt_chunks_by_hour[9]) == (quiet, busy)
    assert p.ppt_admitted_share_by_hour[8] == 1.0
    assert p.ppt_admitted_share_by_hour[9] == pytest.approx(2400 / 3600 / f.peak_requests_per_s)
    # without a profile the band holds the peak all month
    (flat,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=BOOK)
    assert (
        flat.min_chunks == flat.chunks == busy and not flat.pt_autoscaled and flat.pt_chunks_by_hour is None
    )
    # model units do not autoscale: the peak's units every hour, said so
    (mu,) = plan(f, SLO, ["gpt-oss-20b"], prices=BOOK)
    assert not mu.pt_autoscaled and any("do not autoscale" in n for n in mu.notes)


def test_a_profile_with_idle_hours_scales_to_zero_with_its_caveat(tmp_path: Path) -> None:
    csv = tmp_path / "day.csv"
    csv.write_text("hour,requests\n" + "".join(f"{h},{3600 if 9 <= h < 17 else 0}\n" for h in range(24)))
    prof = read_profile(csv)
    assert prof.peak == 3600 and prof.unit == "requests" and prof.shares.count(0.0) == 16
    f = Forecast(
        peak_tokens_per_min=3250 * 60, prompt_tokens=3000, output_tokens=250, profile=prof
    )  # 1 req/s
    (p,) = plan(f, SLO, ["llama-3.1-8b"], prices=BOOK)
    assert p.min_chunks == 0 and p.scales_to_zero
    assert any("scales to zero in 16 of the profile's 24 hours" in n and "cold start" in n for n in p.notes)
    assert p.pt_cost_per_month == pytest.approx(8 * p.chunks / 24 * 730 * 2.0)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hour,tokens\n0,5\n1,-1\n", ":3: tokens must be a finite number ≥ 0, got '-1'"),
        ("hour,tokens\n0,nan\n", ":2: tokens must be a finite number ≥ 0, got 'nan'"),
        ("hour,tokens,requests\n0,5,1\n", "give a header with a 'tokens' or a 'requests' column"),
        ("hour,load\n0,5\n", "give a header with a 'tokens' or a 'requests' column"),
        ("hour,tokens\n0,0\n1,0\n", "every hour is 0"),
        ("tokens\n" + "1\n" * 745, "745 hours; a profile has 1 to 744"),
    ],
)
def test_profile_csv_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "profile.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_profile(path)


def test_max_tokens_is_reserved_against_otpm_for_the_requests_duration() -> None:
    limits = PriceBook(label="t", entries={"default": PriceEntry(otpm=20_000)})
    asked = Forecast(peak_tokens_per_min=1100 * 60, prompt_tokens=1000, output_tokens=100)  # 1 req/s
    (fits,) = plan(asked, SLO, ["llama-3.1-8b"], prices=limits)
    assert fits.ppt_fits is True  # 100 output tokens × 60 = 6,000 a minute under 20,000
    reserving = Forecast(
        peak_tokens_per_min=1100 * 60, prompt_tokens=1000, output_tokens=100, max_tokens=4000
    )
    (p,) = plan(reserving, SLO, ["llama-3.1-8b"], prices=limits)
    config = ServingConfig(Deployment.of("llama-3.1-8b", "h100"))
    hold = predict_closed_loop(config, p.slo_concurrency or 1, 1000, 100).e2e_s
    cap = 20_000 / (60 * 100 + hold * 3900)  # each request holds 4,000 − 100 more for its duration
    assert p.ppt_quota == "output_tokens_per_minute" and p.ppt_fits is False
    assert p.ppt_rate_limited_share == pytest.approx(1 - cap)
    assert any("max_tokens 4,000 is reserved against OTPM" in n for n in p.notes)


def test_dtype_and_tp_change_the_hardware_every_row_names() -> None:
    (default,) = plan(FORECAST, SLO, ["llama-3.3-70b"], prices=BOOK)
    assert (default.gpu_name, default.tensor_parallel, default.dtype) == ("H100-80GB", 4, "fp16")
    (fp8,) = plan(FORECAST, SLO, ["llama-3.3-70b"], prices=BOOK, dtype="fp8", tp=8)
    assert (fp8.tensor_parallel, fp8.dtype, fp8.deployment) == (8, "fp8", "llama-3.3-70b@h100x8-fp8")
    assert (
        fp8.gpus == fp8.replicas * 8
        and fp8.replica_reference_tokens_per_s > default.replica_reference_tokens_per_s
    )
    with pytest.raises(ValueError, match="leave no room for a KV cache on 1 × H100-80GB: give a larger --tp"):
        plan(FORECAST, SLO, ["llama-3.3-70b"], prices=BOOK, tp=1)
    proc = run_cli(*("plan", "--peak-tpm", "1e6", "--prompt-tokens", "1000", "--output-tokens", "100"),
                   "--arch", "llama-3.3-70b", "--tp", "1")  # fmt: skip
    refused(proc, 2, "llama-3.3-70b on h100 at TP 1: its weights (141 GB in fp16) leave no room")
    table = run_cli(*("plan", "--peak-tpm", "1e6", "--prompt-tokens", "1000", "--output-tokens", "100"),
                    "--arch", "llama-3.3-70b", "--dtype", "fp8")  # fmt: skip
    assert table.returncode == 0 and "H100-80GB × 2 fp8" in table.stdout


def test_the_reference_mix_is_explained_where_it_moves_the_count_by_more_than_20_percent() -> None:
    eight, seventy = plan(FORECAST, SLO, ["llama-3.1-8b", "llama-3.3-70b"], prices=BOOK)
    assert 0.8 <= eight.mix_ratio <= 1.2 and not any("mix / reference" in n for n in eight.notes)
    assert seventy.mix_ratio < 0.8 and seventy.reference_mix == (2048, 256)
    note = next(n for n in seventy.notes if n.startswith("mix / reference"))
    assert "quoted at 2,048 in / 256 out" in note and f"{1 / seventy.mix_ratio:.2f}× the chunks" in note


def test_the_model_unit_architectures_of_the_reference_are_in_the_catalog() -> None:
    rows = plan(FORECAST, SLO, ["gpt-oss-120b", "gpt-oss-20b", "gemma-3-12b"], prices=BOOK)
    assert [(r.provisioning, r.model_units is not None, r.feasible) for r in rows] == [
        ("model_units", True, True)
    ] * 3
    # the same GPU slice per unit as the published Maverick unit
    assert rows[0].pt_rate.gpus == pytest.approx(rows[2].pt_rate.gpus)


def test_the_command_takes_a_profile_and_prints_its_hours(tmp_path: Path) -> None:
    csv = tmp_path / "day.csv"
    csv.write_text(
        "hour,tokens\n" + "".join(f"{h},{(600_000_000 if h == 12 else 60_000_000)}\n" for h in range(24))
    )
    args = (
        "plan",
        "--prompt-tokens",
        "1000",
        "--output-tokens",
        "100",
        "--arch",
        "llama-3.1-8b",
        "--profile",
        str(csv),
    )
    body = orjson.loads(run_cli(*args, "--format", "json").stdout)
    # the CSV's busiest hour is the peak: 600M tokens in an hour = 10M tokens/min
    assert body["forecast"]["peak_tokens_per_min"] == 10_000_000
    assert body["forecast"]["profile"]["hours"] == 24 and body["forecast"]["profile"]["shares"][0] == 0.1
    row = body["plans"][0]
    assert row["pt_autoscaled"] and len(row["pt_chunks_by_hour"]) == 24
    assert row["min_chunks"] == min(row["pt_chunks_by_hour"]) < row["chunks"] == row["pt_chunks_by_hour"][12]
    table = run_cli(*args, "--hourly")
    assert table.returncode == 0, table.stderr
    hours = table.stdout.split("\n\n")[-1].splitlines()
    assert hours[0].split()[:3] == ["hour", "load", "tokens/min"] and len(hours) == 2 + 24
    assert hours[2 + 12].split()[:3] == ["12", "100%", "10,000,000"]
    refused(run_cli("plan", "--prompt-tokens", "1", "--output-tokens", "1", "--peak-rps", "1", "--hourly"), 2,
            "--hourly shows the hours of a --profile")  # fmt: skip
    refused(run_cli(*args[:-2], "--profile", "diurnal"), 2, "give the forecast peak")


def test_a_fixed_slots_run_is_not_planned_as_a_band() -> None:
    from analysis.measured import simulated_band
    from loadtest.spec.simulator import SimSettings

    with pytest.raises(ConfigError, match="fixed-slots simulator"):
        simulated_band(SimSettings(slots=8, prefill_ms=10.0, tpot_ms=2.0))


def test_a_table_without_a_gpu_hour_basis_says_so_in_one_clause(tmp_path: Path) -> None:
    book = _book(tmp_path, "usd_per_dbu = 0.5\n")
    rows = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=book)
    assert basis_line(rows, book) == (
        "cost basis: $0.5/DBU; the price table gives no GPU-hour basis: estimated PT rates are not priced"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[models."gpt-oss-20b"]\nthroughput_chunk_size = 970\n', "throughput_chunk_size does not apply: "
         "gpt-oss-20b is sized in model units"),
        ('[models."llama-3.1-8b"]\nmodel_unit_tokens_per_s = 65\n', "model_unit_tokens_per_s does not apply: "
         "llama-3.1-8b is sized in token bands"),
        ('[models."llama-3.1-8b"]\ndbu_per_chunk_hour = 24\n', "dbu_per_chunk_hour needs the throughput_chunk_size"),
        ('gpu_hour_from = "gpt-oss-20b"\n', "must name a generative model sized in token bands"),
        ('gpu_hour_from = "bge-large"\n', "must name a generative model sized in token bands"),
    ],
)  # fmt: skip
def test_price_figures_of_the_wrong_kind_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _book(tmp_path, text)


def test_forced_hardware_leaves_out_default_candidates_that_cannot_hold_it() -> None:
    base = ("plan", "--peak-tpm", "1e6", "--prompt-tokens", "1000", "--output-tokens", "100")
    proc = run_cli(*base, "--tp", "1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    planned = {row["architecture"] for row in orjson.loads(proc.stdout)["plans"]}
    assert "llama-3.1-8b" in planned and "llama-3.3-70b" not in planned
    assert "note: left out, they do not fit h100 at TP 1: llama-3.1-70b, llama-3.3-70b" in proc.stderr
    # named, it is an error
    refused(run_cli(*base, "--tp", "1", "--arch", "llama-3.3-70b"), 2, "llama-3.3-70b on h100 at TP 1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--peak-rps", "1000000", "--prompt-tokens", "100000", "--output-tokens", "1"),
         "a peak of 6e+12 tokens/min is outside [1, 10,000,000,000]"),
        (("--peak-tpm", "1e6", "--prompt-tokens", "100", "--output-tokens", "10", "--monthly-tokens", "1e14"),
         "--monthly-tokens 1e+14 is more than the peak reaches running all month (4.38e+10 tokens)"),
        (("--peak-tpm", "1e6", "--prompt-tokens", "100", "--output-tokens", "10", "--monthly-tokens", "1e9",
          "--load-factor", "0.5"), "--monthly-tokens sets the monthly volume: drop --load-factor"),
        (("--peak-tpm", "1e6", "--prompt-tokens", "100", "--output-tokens", "10", "--profile", "flat", "--hourly",
          "--format", "json"), "--hourly is for the table"),
        (("--peak-tpm", "1e6", "--prompt-tokens", "100", "--output-tokens", "0", "--max-tokens", "10",
          "--arch", "bge-large"), "--max-tokens does not apply with 0 output tokens"),
    ],
)  # fmt: skip
def test_forecasts_that_cannot_be_are_one_line(args: tuple[str, ...], message: str) -> None:
    refused(run_cli("plan", "--arch", "llama-3.1-8b", *args) if "bge-large" not in args else run_cli("plan", *args),
            2, message)  # fmt: skip


def test_a_csv_peak_is_held_to_the_same_bounds(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csv"
    huge.write_text("hour,tokens\n0,1e30\n")
    args = ("plan", "--prompt-tokens", "100", "--output-tokens", "10", "--arch", "llama-3.1-8b", "--profile")
    refused(run_cli(*args, str(huge)), 2, "tokens/min is outside [1, 10,000,000,000]")


def test_profile_csvs_as_spreadsheets_write_them(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffTokens,Hour\r\n600,0\r\n\r\n1200,1\r\n".encode())  # BOM, capitals, a blank line
    prof = read_profile(path)
    assert (prof.peak, prof.unit, prof.shares) == (1200.0, "tokens", (0.5, 1.0))
    split = tmp_path / "split.csv"
    split.write_text("hour,tokens\n0,5\n\n1,1,000\n")  # an unquoted thousands separator, after a blank line
    with pytest.raises(ConfigError, match=re.escape("split.csv:4: 3 fields under a 2-column header")):
        read_profile(split)


def test_the_docs_examples_are_the_commands_real_output() -> None:
    docs = (ROOT / "docs" / "plan.md").read_text()
    blocks = docs.split("```")
    outputs = [b.lstrip("\n") for b in blocks if b.startswith("\narchitecture")]
    common = ("--peak-tpm", "1800000", "--prompt-tokens", "3000", "--output-tokens", "250", "--ttft", "1s")
    first = run_cli(
        "plan",
        *common,
        "--tpot",
        "50ms",
        "--arch",
        "llama-3.3-70b",
        "--arch",
        "llama-3.1-8b",
        "--arch",
        "mixtral-8x7b",
        "--arch",
        "llama-4-maverick",
        "--arch",
        "gpt-oss-120b",
        "--arch",
        "dbrx",
    )
    second = run_cli("plan", *common, "--tpot", "50ms", "--arch", "llama-3.3-70b", "--arch", "gpt-oss-120b",
                     "--profile", "business-hours")  # fmt: skip
    assert outputs == [first.stdout, second.stdout]
