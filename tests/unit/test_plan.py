"""Provisioning recommendations: chunk arithmetic, SLO capacity, quotas, costs and break-even."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from analysis import load_run
from analysis.measured import Measured, measured_from_run
from analysis.plan import Forecast, PlanSlos, plan, slo_capacity
from analysis.prices import PriceBook, PriceEntry, load_prices
from loadtest.errors import ConfigError
from loadtest.model.predict import bounding_resource, feasible_batch, predict_closed_loop
from loadtest.model.roofline import Deployment, decode_cost, kv_capacity_tokens
from loadtest.model.serving import ServingConfig
from loadtest.sim.config import SimConfig
from tests.helpers import ROOT, refused, run_cli, two_stage_run

FORECAST = Forecast(peak_tokens_per_min=1_800_000, prompt_tokens=3000, output_tokens=250)
SLO = PlanSlos(ttft_s=1.0, tpot_s=0.05)
BOOK = PriceBook(
    label="test",
    entries={
        "default": PriceEntry(
            ppt_input_per_million=0.5,
            ppt_output_per_million=1.5,
            pt_per_chunk_hour=2.0,
            throughput_chunk_size=1000,
            itpm=200_000,
            otpm=20_000,
            qph=2400,
        )
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
    assert fits.ppt_fits is True and fits.ppt_rate_limited_share == 0.0
    (over,) = plan(FORECAST, SLO, ["llama-3.1-8b"], prices=BOOK)
    assert over.ppt_fits is False
    # 9.23 req/s offered; QPH 2400 admits 0.667 req/s, ITPM 200k/3000 admits 1.11 req/s: QPH binds
    assert over.ppt_quota == "queries_per_hour"
    assert over.ppt_rate_limited_share == pytest.approx(1 - (2400 / 3600) / FORECAST.peak_requests_per_s)
    per_token = (3000 * 0.5 + 250 * 1.5) / 3250 / 1e6
    assert over.pt_cost_per_month is not None
    assert over.ppt_cost_per_month == pytest.approx(FORECAST.tokens_per_month * per_token)
    assert over.break_even_tokens_per_month == pytest.approx(over.pt_cost_per_month / per_token)


def test_model_units_for_a_model_unit_architecture() -> None:
    (p,) = plan(FORECAST, SLO, ["llama-4-maverick"], prices=BOOK)
    assert p.provisioning == "model_units" and p.model_units is not None and p.chunks is None
    assert p.model_units == math.ceil(30_000 * 1.2 / (p.mix_ratio * 65.0))


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
    bad.write_text("[models.x]\nprice = 3\n")
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
    assert bge.chunks == math.ceil(1_000_000 * 1.2 / (bge.mix_ratio * 1000))
    assert bge.ppt_cost_per_month == pytest.approx(reads.tokens_per_month * 0.5 / 1e6)  # input price only
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
    assert p.notes == ("measured against the run's SLOs (chat: ttft_p95 ≤ 0.4 s)",)
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
    refused(both, 2, "one of them")
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
    "prices",
    "measured_runs",
    "warnings",
    "plans",
}
PLAN_ROW_KEYS = {
    "architecture",
    "deployment",
    "provisioning",
    "source",
    "confidence",
    "replica_slo_tokens_per_s",
    "replica_reference_tokens_per_s",
    "mix_ratio",
    "slo_concurrency",
    "binding",
    "resource",
    "chunk_size",
    "chunks",
    "band_tokens_per_s",
    "model_units",
    "replicas",
    "pt_cost_per_month",
    "ppt_fits",
    "ppt_rate_limited_share",
    "ppt_binding_limit",
    "ppt_cost_per_month",
    "break_even_tokens_per_month",
    "notes",
    "feasible",
}


def test_the_json_schema_is_versioned_and_its_keys_pinned() -> None:
    # docs/plan.md documents each of these keys: a change here is a new schema_version and a docs change
    proc = run_cli(
        "plan", "--peak-rps", "300", "--prompt-tokens", "1000", "--output-tokens", "100", "--max-tokens", "200",
        "--arch", "llama-3.1-8b", "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    body = orjson.loads(proc.stdout)
    assert set(body) == PLAN_JSON_KEYS and body["schema_version"] == 1 and body["gpu"] == "h100"
    assert body["forecast"] == {
        "peak_tokens_per_min": 300 * 1100 * 60.0,
        "peak_requests_per_s": 300.0,
        "prompt_tokens": 1000,
        "output_tokens": 100,
        "max_tokens": 200,
        "load_factor": 0.35,
        "tokens_per_month": pytest.approx(300 * 1100 * 60.0 * 60 * 730 * 0.35),
    }
    assert [set(row) for row in body["plans"]] == [PLAN_ROW_KEYS]
    # 300 req/s is above a workspace's 200 QPS for provisioned throughput: a warning, in the JSON and on stderr
    assert len(body["warnings"]) == 1 and "above the 200 queries per second" in body["warnings"][0]
    assert proc.stderr.startswith("warning: a peak of 300 req/s is above the 200 queries per second")
    docs = (ROOT / "docs" / "plan.md").read_text()
    assert all(f"`{key}`" in docs for key in PLAN_ROW_KEYS)


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
