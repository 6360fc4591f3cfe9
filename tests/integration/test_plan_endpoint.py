"""``loadtest plan --endpoint`` and ``--registered-model`` against the simulator's workspace APIs, with Databricks
auth through the SDK: the chunk size and DBUs come from the optimization-info API, the configured band (an
endpoint's) is shown beside the recommended one, and every failure (missing endpoint or model version, refused
credentials, not provisioned throughput, not optimizable, unknown model, workspace down) is one line with its exit
code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.client.auth import databricks_auth
from loadtest.client.workspace import read_endpoint, read_registered_model
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
    assert body["schema_version"] == 4 and body["endpoint"] == "llama-pt"
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


MODEL = "system.ai.meta_llama_v3_3_70b_instruct"  # the workspace fixture's served entity, at versions 1 to 3


def use_workspace(
    monkeypatch: pytest.MonkeyPatch, sim: SimServer, tmp_path: Path, token: str = TOKEN
) -> None:
    for name, value in env_for(sim, tmp_path, token).items():
        monkeypatch.setenv(name, value) if value else monkeypatch.delenv(name, raising=False)


def test_a_registered_model_is_planned_with_its_chunk_and_no_configured_band(
    workspace: SimServer, tmp_path: Path
) -> None:
    """No endpoint yet: the optimization info alone gives the chunk and DBUs; the plan is restricted to the model's
    architecture (no other candidate is computed) and shows no configured band."""
    env = env_for(workspace, tmp_path)
    args = ("plan", "--registered-model", MODEL, "--model-version", "2", *FORECAST)
    proc = run_cli(*args, "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["schema_version"] == 4
    assert (body["endpoint"], body["registered_model"]) == (None, {"name": MODEL, "version": "2"})
    [row] = body["plans"]
    assert row["architecture"] == "llama-3.3-70b"
    rate = row["pt_rate"]
    assert (rate["tokens_per_s"], rate["tokens_basis"], rate["dbu_per_hour"], rate["dbu_basis"]) == (
        970.0,
        "workspace API",
        24.0,
        "workspace API",
    )
    assert rate["source"].startswith(f"workspace API, model {MODEL} version 2, 20")
    assert row["chunk_size"] == 970.0 and row["band_tokens_per_s"] == row["chunks"] * 970.0
    assert row["workspace"] == {
        "endpoint": None,
        "source": rate["source"],
        "entity_name": MODEL,
        "entity_version": "2",
        "min_provisioned_throughput": None,
        "max_provisioned_throughput": None,
        "provisioned_model_units": None,
        "scale_to_zero_enabled": None,
        "throughput_chunk_size": 970,
        "dbu_per_chunk_hour": 24.0,
    }
    assert proc.stderr.startswith(f"registered model {MODEL} version 2 at {workspace.url} (pat auth): ")
    assert (
        "llama-3.3-70b, throughput_chunk_size 970, 24 DBUs per chunk-hour; no endpoint, so no configured band"
        in (proc.stderr)
    )
    table = run_cli(*args, env=env)
    assert table.returncode == 0, table.stderr
    band = f"{row['chunks']} × 970 = {row['band_tokens_per_s']:,.0f} tok/s"
    assert band in table.stdout and "configured" not in table.stdout
    assert f"note: llama-3.3-70b: chunk of 970 tokens/s, 24 DBU/h from the {rate['source']}\n" in table.stdout
    assert TOKEN not in proc.stdout + proc.stderr + table.stdout + table.stderr


def test_registered_model_failures_are_one_line_with_their_exit_code(
    workspace: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_workspace(monkeypatch, workspace, tmp_path)
    with pytest.raises(ConfigError) as missing:  # exit 2
        read_registered_model("system.ai.meta_llama_v3_1_8b_instruct", 1)
    assert str(missing.value).startswith(
        "registered model 'system.ai.meta_llama_v3_1_8b_instruct' version 1 not found in the workspace "
        f"{workspace.url} (HTTP 404)"
    )
    with pytest.raises(
        ConfigError, match=rf"^registered model '{MODEL}' version 4 not found .*its latest is 3"
    ):
        read_registered_model(MODEL, 4)
    with pytest.raises(
        ConfigError, match=r"^registered model 'main\.team\.ft' is not a model the architecture"
    ):
        read_registered_model("main.team.ft", 1)  # refused before any request: it cannot be planned
    use_workspace(monkeypatch, workspace, tmp_path, "dapi-wrong-01234567")
    with pytest.raises(ConfigError) as wrong:
        read_registered_model(MODEL, 1)
    assert f"the pat credentials may not read registered model '{MODEL}' version 1" in str(wrong.value)
    assert "HTTP 401" in str(wrong.value) and "dapi-wrong" not in str(wrong.value)
    use_workspace(monkeypatch, workspace, tmp_path, "")
    with pytest.raises(ConfigError, match="no Databricks credentials: the Databricks SDK tried pat, basic"):
        read_registered_model(MODEL, 1)
    use_workspace(monkeypatch, workspace, tmp_path)
    monkeypatch.setattr("loadtest.client.auth.databricks._RETRY_TIMEOUT_S", 1)
    auth = databricks_auth()
    monkeypatch.setattr(auth, "_host", "http://127.0.0.1:9")
    auth.config.host = "http://127.0.0.1:9"  # the discard port: nothing answers
    with pytest.raises(EndpointError, match=r"^the workspace API at http://127\.0\.0\.1:9 did not answer"):
        read_registered_model(MODEL, 1, auth=auth)  # exit 3


def test_a_model_that_is_not_optimizable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with SimServer(SimConfig(api_token=TOKEN, optimizable=False)) as sim:
        use_workspace(monkeypatch, sim, tmp_path)
        with pytest.raises(ConfigError) as caught:
            read_registered_model("system.ai.meta_llama_v3_1_8b_instruct", 1)
    assert str(caught.value) == (
        "system.ai.meta_llama_v3_1_8b_instruct version 1 is not optimizable (the workspace's optimization info says "
        "optimizable: false): provisioned throughput cannot serve it, so there is no chunk to plan with"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--registered-model", MODEL), "give its version with --model-version N"),
        (("--model-version", "2"), "--model-version is the version of a --registered-model: give one"),
        (("--registered-model", MODEL, "--model-version", "2", "--endpoint", "llama-pt"), "not both"),
    ],
)
def test_registered_model_options_go_together(args: tuple[str, ...], message: str) -> None:
    from loadtest.cli.group import cli

    with pytest.raises(ConfigError, match=message):  # before any request: no workspace needed
        cli.main(["plan", *args, *FORECAST], standalone_mode=False)
