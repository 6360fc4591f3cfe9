"""A Databricks endpoint with OAuth M2M: tokens expire during the run and the engine refreshes them in time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import load_run
from loadtest.sim import SimConfig, SimServer
from tests.helpers import only_run_dir, run_cli

pytestmark = pytest.mark.slow

CLIENT_ID, SECRET = "lt-client-0001", "s3cret-do-not-leak"


@pytest.mark.parametrize("processes", [1, 2])
def test_oauth_tokens_are_refreshed_mid_run_and_never_written(tmp_path: Path, processes: int) -> None:
    """Through the Databricks SDK's chain; with 2 processes each engine resolves and refreshes its own token."""
    config = SimConfig(
        architecture="llama-3.1-8b",
        gpu="h100",
        oauth_client_id=CLIENT_ID,
        oauth_client_secret=SECRET,
        oauth_token_ttl_s=4,
    )
    with SimServer(config) as sim:
        scenario = tmp_path / "dbx.toml"
        scenario.write_text(
            f'name = "dbx"\n[endpoint]\nhost = "{sim.url}"\nendpoint = "sim-llama"\nauth = "oauth-m2m"\n'
            '[[classes]]\nprompt_tokens = 64\noutput_tokens = 32\nslo = {ttft_p95 = "1s"}\n'
            '[load]\nduration = "14s"\nconcurrency = [2]\n'
        )
        env = {
            "DATABRICKS_CLIENT_ID": CLIENT_ID,
            "DATABRICKS_CLIENT_SECRET": SECRET,
            "DATABRICKS_TOKEN": "",
            "DATABRICKS_CONFIG_PROFILE": "",
            "DATABRICKS_HOST": "",
            "HOME": str(tmp_path),
        }
        args = ("--processes", str(processes)) if processes > 1 else ()
        proc = run_cli("run", str(scenario), "--out", str(tmp_path / "runs"), *args, env=env, timeout=120)
        stats = sim.stats()
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    data = load_run(run_dir)
    df = data.records
    # every request authenticated although each token lived only 4 s of a 14 s stage
    assert len(df) > 20 and df["ok"].all(), df.loc[~df["ok"], "error_detail"].tolist()[:3]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    refreshed = [e for e in events if e["event"] == "auth_refreshed"]
    assert len(refreshed) >= 2 * processes
    assert len({e["by"] for e in refreshed}) == processes  # every engine process refreshed its own
    assert data.manifest.spec.endpoint.auth_type == "oauth-m2m"  # which auth type, never the secret
    assert stats["oauth_tokens_issued"] >= 2 + 2 * processes  # the CLI's, each engine's first, the refreshes
    calibration = data.manifest.spec.prompts
    assert calibration is not None
    probes = sum(f.sent for f in calibration.fits)  # the prompt calibration's requests, before the run
    assert probes == 3  # two probes and the check
    assert stats["by_path"]["/serving-endpoints/chat/completions"] == len(df) + 1 + probes  # + the preflight
    for path in run_dir.iterdir():
        assert SECRET not in path.read_text(errors="replace"), path.name
    assert SECRET not in proc.stdout + proc.stderr
