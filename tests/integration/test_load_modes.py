"""Open-loop load against the simulator: the offered load matches the target, arrivals follow their process, and
a master with two workers records exactly one record per request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from analysis import check_load, load_run
from loadtest.sim import SimConfig, SimServer
from tests.helpers import only_run_dir, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(architecture="llama-3.1-8b", gpu="h100", seed=2)) as server:
        yield server


def run(sim: SimServer, out: Path, *args: str) -> Path:
    proc = run_cli(
        "run",
        "--endpoint",
        sim.url + "/v1",
        "--skip-preflight",
        "--prompt-tokens",
        "200",
        "--max-tokens",
        "20",
        "--out",
        str(out),
        *args,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(out)


def gaps_cv(scheduled: np.ndarray) -> float:
    gaps = np.diff(np.sort(scheduled))
    return float(gaps.std() / gaps.mean())


def test_constant_rate_is_met_within_5_percent(sim: SimServer, tmp_path: Path) -> None:
    data = load_run(run(sim, tmp_path, "--rate", "50", "--arrival", "constant", "--duration", "12s"))
    (load,) = check_load(data.records, data.manifest.stages or ())
    assert len(data.records) >= 500
    assert load.offered_rps == pytest.approx(50, rel=0.05)
    assert load.kept_up, load.reason
    assert gaps_cv(data.records["scheduled_at"].to_numpy()) < 0.05
    assert data.records["ok"].all()
    assert sim.stats()["by_path"]["/v1/chat/completions"] == len(data.records)


@pytest.mark.parametrize(("arrival", "burstiness", "cv"), [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0)])
def test_arrival_processes_have_the_configured_variability(
    sim: SimServer, tmp_path: Path, arrival: str, burstiness: float, cv: float
) -> None:
    data = load_run(
        run(
            sim,
            tmp_path,
            "--rate",
            "60",
            "--arrival",
            arrival,
            "--burstiness",
            str(burstiness),
            "--duration",
            "10s",
        )
    )
    scheduled = data.records["scheduled_at"].to_numpy()
    assert len(scheduled) >= 450
    # the sample CV of n gaps has a standard error of roughly cv/sqrt(n) (more for heavy tails): allow 15 %
    assert gaps_cv(scheduled) == pytest.approx(cv, rel=0.15)
    (load,) = check_load(data.records, data.manifest.stages or ())
    assert load.kept_up, load.reason


def test_token_rate_is_met_within_5_percent(sim: SimServer, tmp_path: Path) -> None:
    # 200 + 20 tokens per request: 660,000 tokens/min is 50 requests/s
    data = load_run(run(sim, tmp_path, "--tokens-per-min", "660000", "--duration", "12s"))
    (load,) = check_load(data.records, data.manifest.stages or ())
    assert len(data.records) >= 500
    assert load.offered_tokens_per_min["total"] == pytest.approx(660_000, rel=0.05)
    assert load.offered_rps == pytest.approx(50, rel=0.05)


def test_master_and_two_workers_record_each_request_once(sim: SimServer, tmp_path: Path) -> None:
    data = load_run(run(sim, tmp_path, "--processes", "2", "--rate", "40", "--duration", "6s"))
    df = data.records
    served = sim.stats()["by_path"]["/v1/chat/completions"]
    assert len(df) == served == sim.stats()["requests_completed"]
    assert df["seq"].is_unique
    workers = {w.split("-")[0] for w in df["worker"]}
    assert workers == {"worker0", "worker1"}
    assert df["ok"].all()
    assert data.manifest.distribution.processes == 2
