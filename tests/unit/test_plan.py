"""Provisioning recommendations: chunk arithmetic, SLO capacity, quotas, costs and break-even."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.plan import (
    Forecast,
    Measured,
    PriceBook,
    PriceEntry,
    SloTargets,
    load_prices,
    plan,
    slo_capacity,
)
from loadtest.errors import ConfigError
from loadtest.perfmodel import Deployment
from loadtest.sim.engine import EngineConfig
from loadtest.sim.predict import predict_closed_loop
from tests.conftest import ROOT, run_cli

FORECAST = Forecast(peak_tokens_per_min=1_800_000, prompt_tokens=3000, output_tokens=250)
SLO = SloTargets(ttft_s=1.0, tpot_s=0.05)
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
    config = EngineConfig(Deployment.of("llama-3.1-8b", "h100"))
    tokens, conc, binding = slo_capacity(config, 3000, 250, SLO)
    assert binding == "tpot"
    at = predict_closed_loop(config, conc, 3000, 250, start="spread")
    beyond = predict_closed_loop(config, conc + 1, 3000, 250, start="spread")
    assert at.tpot_s is not None and beyond.tpot_s is not None
    assert at.tpot_s <= 0.05 < beyond.tpot_s
    assert tokens == pytest.approx(at.requests_per_s * 3250)
    looser, _, _ = slo_capacity(config, 3000, 250, SloTargets(ttft_s=1.0, tpot_s=0.08))
    assert looser > tokens


def test_an_impossible_slo_gives_no_capacity_and_says_why() -> None:
    (p,) = plan(FORECAST, SloTargets(ttft_s=0.001), ["llama-3.3-70b"], prices=BOOK)
    assert p.replica_slo_tokens_per_s == 0 and p.binding == "ttft" and p.chunks is None and p.notes


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
    assert over.ppt_binding_limit == "queries_per_hour"
    assert over.ppt_rate_limited_share == pytest.approx(1 - (2400 / 3600) / FORECAST.peak_requests_per_s)
    per_token = (3000 * 0.5 + 250 * 1.5) / 3250 / 1e6
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
    missing = run_cli("plan", "--peak-tpm", "1000")
    assert (
        missing.returncode == 2 and "--prompt-tokens" in missing.stderr and "Traceback" not in missing.stderr
    )
