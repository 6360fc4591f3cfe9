"""``loadtest plan --endpoint`` against the simulator's workspace APIs, with Databricks auth through the SDK: the
chunk size and DBUs come from the optimization-info API, the configured band is shown beside the recommended one,
and every failure (missing endpoint, refused credentials, not provisioned throughput, unknown model, workspace
down) is one line with its exit code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.client.auth import databricks_auth
from loadtest.client.workspace import read_endpoint
from loadtest.errors import ConfigError, EndpointError
from loadtest.sim import SimConfig, SimServer
from tests.helpers import refused, run_cli

TOKEN = "dapi-plan-0123456789abcdef"
FORECAST = ("--peak-tpm", "100000", "--prompt-tokens", "2048", "--output-tokens", "256")


@pytest.fixture(scope="module")
def workspace() -> Iterator[SimServer]:
    config = SimConfig(
        architecture="llama-3.3-70b",
        api_token=TOKEN,
        endpoint_name="llama-pt",
        entity_version="3",
        chunk_size=970,
        min_provisioned_throughput=0,
        max_provisioned_throughput=1_940,
        dbus_per_chunk=24,
        scale_to_zero=True,  # after the default 30 min without requests: never during these tests
    )
    with SimServer(config) as sim:
        yield sim


def env_for(sim: SimServer, tmp_path: Path, token: str = TOKEN) -> dict[str, str]:
    return {
        "DATABRICKS_HOST": sim.url,
        "DATABRICKS_TOKEN": token,
        "DATABRICKS_CONFIG_PROFILE": "",
        "DATABRICKS_CLIENT_ID": "",
        "DATABRICKS_CLIENT_SECRET": "",
        "DATABRICKS_AUTH_TYPE": "",
        "HOME": str(tmp_path),
    }


def test_the_plan_uses_the_workspaces_chunk_and_shows_the_configured_band(
    workspace: SimServer, tmp_path: Path
) -> None:
    proc = run_cli(
        "plan", "--endpoint", "llama-pt", *FORECAST, "--format", "json", env=env_for(workspace, tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["schema_version"] == 3 and body["endpoint"] == "llama-pt"
    [row] = body["plans"]  # the endpoint's architecture only, mapped from its system.ai entity
    assert row["architecture"] == "llama-3.3-70b"
    rate = row["pt_rate"]
    assert (rate["tokens_per_s"], rate["tokens_basis"], rate["dbu_per_hour"], rate["dbu_basis"]) == (
        970.0,
        "workspace API",
        24.0,
        "workspace API",
    )
    assert rate["source"].startswith("workspace API, endpoint llama-pt, 20")
    assert row["chunk_size"] == 970.0 and row["band_tokens_per_s"] == row["chunks"] * 970.0
    assert row["workspace"] == {
        "endpoint": "llama-pt",
        "source": rate["source"],
        "entity_name": "system.ai.meta_llama_v3_3_70b_instruct",
        "entity_version": "3",
        "min_provisioned_throughput": 0,
        "max_provisioned_throughput": 1_940,
        "provisioned_model_units": None,
        "scale_to_zero_enabled": True,
        "throughput_chunk_size": 970,
        "dbu_per_chunk_hour": 24.0,
    }
    assert (
        "(pat auth): serves system.ai.meta_llama_v3_3_70b_instruct version 3 (llama-3.3-70b)" in proc.stderr
    )
    stats = workspace.stats()["by_path"]
    assert stats["/api/2.0/serving-endpoints/get-model-optimization-info/{model}/{version}"] >= 1
    table = run_cli("plan", "--endpoint", "llama-pt", *FORECAST, env=env_for(workspace, tmp_path))
    assert table.returncode == 0, table.stderr
    band = row["band_tokens_per_s"]
    assert (
        f"endpoint llama-pt: configured 0–1,940 tok/s; recommended {band:,.0f} tok/s at peak" in table.stdout
    )
    assert f"{row['chunks']} × 970 = {band:,.0f} tok/s; configured 0–1,940 tok/s" in table.stdout
    assert TOKEN not in proc.stdout + proc.stderr + table.stdout + table.stderr


def test_a_missing_endpoint_and_refused_credentials_are_one_line(
    workspace: SimServer, tmp_path: Path
) -> None:
    missing = run_cli("plan", "--endpoint", "nope", *FORECAST, env=env_for(workspace, tmp_path))
    refused(missing, 2)
    assert (
        "serving endpoint 'nope' not found in the workspace" in missing.stderr and "'nope'" in missing.stderr
    )
    wrong = run_cli(
        "plan", "--endpoint", "llama-pt", *FORECAST, env=env_for(workspace, tmp_path, "dapi-wrong-01234567")
    )
    refused(wrong, 2)
    assert "the pat credentials may not read serving endpoint 'llama-pt'" in wrong.stderr
    assert "HTTP 401" in wrong.stderr and "dapi-wrong" not in wrong.stderr
    nothing = run_cli(
        "plan",
        "--endpoint",
        "llama-pt",
        *FORECAST,
        env={**env_for(workspace, tmp_path), "DATABRICKS_TOKEN": ""},
    )
    refused(nothing, 2, "no Databricks credentials: the Databricks SDK tried pat, basic")


def test_an_endpoint_that_is_not_provisioned_throughput(tmp_path: Path) -> None:
    with SimServer(SimConfig(mode="ppt", api_token=TOKEN)) as sim:
        proc = run_cli("plan", "--endpoint", "databricks-llama", *FORECAST, env=env_for(sim, tmp_path))
    refused(proc, 2)
    assert "serving endpoint 'databricks-llama' is not a provisioned-throughput endpoint" in proc.stderr


def test_a_served_model_the_catalog_does_not_know(tmp_path: Path) -> None:
    with SimServer(SimConfig(api_token=TOKEN, entity_name="main.team.my_finetune")) as sim:
        proc = run_cli("plan", "--endpoint", "custom", *FORECAST, env=env_for(sim, tmp_path))
    refused(proc, 2)
    assert (
        "serves 'main.team.my_finetune', which is not a model the architecture catalog knows" in proc.stderr
    )


def test_a_workspace_that_does_not_answer_is_exit_3(
    workspace: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in env_for(workspace, tmp_path).items():
        monkeypatch.setenv(name, value) if value else monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("loadtest.client.auth.databricks._RETRY_TIMEOUT_S", 1)
    auth = databricks_auth()
    workspace_url = workspace.url
    monkeypatch.setattr(auth, "_host", "http://127.0.0.1:9")  # shown in the message
    auth.config.host = "http://127.0.0.1:9"  # the discard port: nothing answers
    with pytest.raises(EndpointError, match=r"the workspace API at http://127\.0\.0\.1:9 did not answer"):
        read_endpoint("llama-pt", auth=auth)
    assert workspace_url.startswith("http://127.0.0.1:")
    with pytest.raises(ConfigError, match="not found"):
        read_endpoint("other", auth=databricks_auth())
