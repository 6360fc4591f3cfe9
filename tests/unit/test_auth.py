"""Credentials through the Databricks SDK's own chain, against the simulator's workspace (host metadata, OIDC
discovery, ``/oidc/v1/token``): PAT, OAuth M2M, profiles, the SDK's precedence, one-line failures without secrets,
the header cache and its refresh schedule (a fake clock drives both the SDK's token expiry and ours)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.client.auth import (
    AuthOptions,
    DatabricksAuth,
    NoAuth,
    PatAuth,
    child_environment,
    resolve_auth,
    sdk_auth_types,
)
from loadtest.client.auth.databricks import MIN_MARGIN_S, RECHECK_S
from loadtest.client.clock import FakeClock
from loadtest.errors import ConfigError, EndpointError
from loadtest.sim import SimConfig, SimServer
from tests.helpers import sdk_time

SECRET = "dose0123456789SECRETvalue"
PAT = "dapi0123456789abcdefPAT"
CLIENT_ID = "abcd1234-ef56-client"
CHAT = {"model": "sim-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DATABRICKS_* / ARM_* / GOOGLE_* variable from the machine, and a HOME without ~/.databrickscfg."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "GOOGLE_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")  # no databricks / az CLI to fall back on
    return monkeypatch


@pytest.fixture(scope="module")
def sim_clock() -> FakeClock:
    return FakeClock(start=0.0)


@pytest.fixture(scope="module")
def sim(sim_clock: FakeClock) -> Iterator[SimServer]:
    config = SimConfig(oauth_client_id=CLIENT_ID, oauth_client_secret=SECRET, api_token=PAT)
    with SimServer(config, clock=sim_clock) as server:
        yield server


def accepted(sim: SimServer, headers: dict[str, str]) -> bool:
    return httpx.post(f"{sim.url}/serving-endpoints/chat/completions", json=CHAT, headers=headers).is_success


def issued(sim: SimServer) -> int:
    return int(sim.stats()["oauth_tokens_issued"])


def test_pat_from_the_environment(clean_env: pytest.MonkeyPatch, sim: SimServer) -> None:
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_TOKEN", PAT)
    auth = resolve_auth(AuthOptions())
    assert isinstance(auth, DatabricksAuth)
    assert auth.auth_type == "pat" and auth.expires_at is None
    assert auth.headers() == {"Authorization": f"Bearer {PAT}"}
    assert accepted(sim, auth.headers())
    described = auth.describe()
    assert described["auth_type"] == "pat" and described["env"] == ["DATABRICKS_HOST", "DATABRICKS_TOKEN"]
    assert PAT not in repr(auth) + str(described)


def test_oauth_m2m_against_the_token_endpoint(clean_env: pytest.MonkeyPatch, sim: SimServer) -> None:
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    before = issued(sim)
    auth = resolve_auth(AuthOptions())
    assert isinstance(auth, DatabricksAuth) and auth.auth_type == "oauth-m2m"
    assert issued(sim) == before + 1  # fetched once, before any request
    assert auth.headers()["Authorization"].startswith("Bearer ") and accepted(sim, auth.headers())
    assert auth.headers() != {"Authorization": f"Bearer {PAT}"}
    assert auth.expires_at is not None
    described = auth.describe()
    assert described["client_id"] == "abcd…"
    assert SECRET not in repr(auth) + str(described) and CLIENT_ID not in str(described)


def write_cfg(tmp_path: Path, host: str) -> Path:
    path = tmp_path / "databrickscfg"
    path.write_text(
        f"[DEFAULT]\nhost = {host}\ntoken = {PAT}\n\n"
        f"[prod]\nhost = {host}\nclient_id = {CLIENT_ID}\nclient_secret = {SECRET}\n",
        encoding="utf-8",
    )
    return path


def test_profiles_of_a_config_file(clean_env: pytest.MonkeyPatch, sim: SimServer, tmp_path: Path) -> None:
    clean_env.setenv("DATABRICKS_CONFIG_FILE", str(write_cfg(tmp_path, sim.url)))
    default = resolve_auth(AuthOptions())
    assert isinstance(default, DatabricksAuth) and default.auth_type == "pat"  # [DEFAULT]
    named = resolve_auth(AuthOptions(profile="prod"))
    assert isinstance(named, DatabricksAuth) and named.auth_type == "oauth-m2m"
    assert named.describe()["profile"] == "prod" and accepted(sim, named.headers())
    clean_env.setenv("DATABRICKS_CONFIG_PROFILE", "prod")
    by_env = resolve_auth(AuthOptions())
    assert isinstance(by_env, DatabricksAuth) and by_env.auth_type == "oauth-m2m"
    with pytest.raises(ConfigError, match="has no nope profile"):
        resolve_auth(AuthOptions(profile="nope"))


def test_a_host_given_without_a_profile_skips_the_file(
    clean_env: pytest.MonkeyPatch, sim: SimServer, tmp_path: Path
) -> None:
    """The SDK's rule: the config file is not read when a host or credential is given and no profile named."""
    clean_env.setenv("DATABRICKS_CONFIG_FILE", str(write_cfg(tmp_path, sim.url)))
    with pytest.raises(ConfigError, match="no Databricks credentials") as failure:
        resolve_auth(AuthOptions(host=sim.url))
    assert PAT not in str(failure.value) and "\n" not in str(failure.value)


def test_explicit_auth_type_chooses_between_two_configured_kinds(
    clean_env: pytest.MonkeyPatch, sim: SimServer
) -> None:
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_TOKEN", PAT)
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    with pytest.raises(ConfigError, match="more than one authorization method configured: oauth and pat"):
        resolve_auth(AuthOptions())
    chosen = resolve_auth(AuthOptions(auth_type="oauth-m2m"))
    assert isinstance(chosen, DatabricksAuth) and chosen.auth_type == "oauth-m2m"
    clean_env.setenv("DATABRICKS_AUTH_TYPE", "pat")
    by_env = resolve_auth(AuthOptions())
    assert isinstance(by_env, DatabricksAuth) and by_env.auth_type == "pat"


def test_nothing_configured_names_what_the_sdk_tried(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as failure:
        resolve_auth(AuthOptions())
    text = str(failure.value)
    assert text.startswith("no Databricks credentials: the Databricks SDK tried pat, basic, ")
    for kind in ("oauth-m2m", "azure-cli", "databricks-cli", "azure-client-secret", "google-id"):
        assert kind in text
    assert "\n" not in text
    assert sdk_auth_types()[:4] == ("pat", "basic", "metadata-service", "oauth-m2m")


def test_refusals_are_one_line_without_the_secret(clean_env: pytest.MonkeyPatch, sim: SimServer) -> None:
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", "wrong-" + SECRET)
    with pytest.raises(ConfigError, match="invalid_client") as failure:
        resolve_auth(AuthOptions())
    assert SECRET not in str(failure.value) and "\n" not in str(failure.value)
    with pytest.raises(
        ConfigError, match="auth type 'magic' is not one the Databricks SDK knows; use one of: pat"
    ):
        resolve_auth(AuthOptions(auth_type="magic"))


def test_an_unreachable_host_is_an_endpoint_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")  # the discard port: refused
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    clean_env.setattr("loadtest.client.auth.databricks._RETRY_TIMEOUT_S", 1)
    with pytest.raises(EndpointError, match="databricks-config") as failure:
        resolve_auth(AuthOptions())
    assert SECRET not in str(failure.value)


def test_a_one_hour_token_stays_valid_through_a_two_hour_run(
    clean_env: pytest.MonkeyPatch, sim: SimServer, sim_clock: FakeClock
) -> None:
    """Ten-second steps of a fake clock shared by the simulator's token expiry, the SDK's and the provider's
    schedule: the engine's rule (refresh when due) keeps every request authenticated, with a new token about every
    40 minutes (the SDK refreshes a token once 2/3 of its life has passed) and no token fetched in between."""
    clock = FakeClock(start=1_800_000_000.0)
    sdk_time(clean_env, clock)  # async refresh off: the SDK refreshes in this thread, at once
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    sim_clock.now = clock.now
    first = issued(sim)
    auth = resolve_auth(AuthOptions(), clock=clock)
    assert isinstance(auth, DatabricksAuth) and auth.expires_at == pytest.approx(clock.now + 3_600)
    tokens = {auth.headers()["Authorization"]}
    with httpx.Client(base_url=sim.url) as http:
        for _ in range(720):
            clock.advance(10.0)
            sim_clock.now = clock.now
            if auth.refresh_due(clock.now):
                auth.refresh()
            tokens.add(auth.headers()["Authorization"])
            # an authenticated path that generates nothing: 401 once the simulator's clock has passed the token
            answer = http.get("/api/2.0/serving-endpoints/sim-llama", headers=auth.headers())
            assert answer.status_code == 200, clock.now
    # sync refresh (async off): the SDK fetches when less than 40 s remain, so 1 + one per hour of the run
    assert issued(sim) - first == len(tokens) == 3


def test_the_header_cache_and_its_schedule(clean_env: pytest.MonkeyPatch, sim: SimServer) -> None:
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_TOKEN", PAT)
    clock = FakeClock(start=100.0)
    pat = resolve_auth(AuthOptions(), clock=clock)
    assert not pat.refresh_due(100.0 + RECHECK_S - 1) and pat.refresh_due(100.0 + RECHECK_S)
    clean_env.delenv("DATABRICKS_TOKEN")
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    oauth = resolve_auth(AuthOptions())
    assert oauth.expires_at is not None
    # a 3,600 s token: due at half its life, never later than 60 s before expiry
    assert not oauth.refresh_due(oauth.expires_at - 1_801) and oauth.refresh_due(oauth.expires_at - 1_799)
    assert MIN_MARGIN_S == 60.0
    before = issued(sim)
    for _ in range(1_000):
        oauth.headers()  # a request: no call to the SDK, no token fetched
    oauth.refresh()  # a fresh token: the SDK keeps it
    assert issued(sim) == before


def test_a_failed_refresh_keeps_the_headers_and_hides_the_secret(
    clean_env: pytest.MonkeyPatch, sim: SimServer
) -> None:
    clean_env.setenv("DATABRICKS_HOST", sim.url)
    clean_env.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    clean_env.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
    auth = resolve_auth(AuthOptions())
    assert isinstance(auth, DatabricksAuth)
    kept = auth.headers()

    def refuse() -> dict[str, str]:
        raise ValueError(f"token endpoint said: bad secret {SECRET}\n for client")

    clean_env.setattr(auth.config, "_header_factory", refuse)
    with pytest.raises(ConfigError) as failure:
        auth.refresh()
    assert (
        str(failure.value)
        == "Databricks oauth-m2m credentials failed: token endpoint said: bad secret *** for client"
    )
    assert auth.headers() == kept


def test_api_key_env_and_none(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MY_KEY", "sk-0123456789abcdefXYZ")
    key = resolve_auth(AuthOptions(api_key_env="MY_KEY"))
    assert isinstance(key, PatAuth) and key.headers() == {"Authorization": "Bearer sk-0123456789abcdefXYZ"}
    with pytest.raises(ConfigError, match="environment variable UNSET_KEY is not set"):
        resolve_auth(AuthOptions(api_key_env="UNSET_KEY"))
    none = resolve_auth(AuthOptions(auth_type="none", host="http://127.0.0.1:1"))
    assert isinstance(none, NoAuth) and none.headers() == {} and not none.refresh_due(1e12)
    clean_env.setenv("DATABRICKS_AUTH_TYPE", "none")
    assert isinstance(resolve_auth(AuthOptions()), NoAuth)  # what an engine child sees for auth = "none"


def test_a_child_gets_the_explicit_values_and_no_secret() -> None:
    options = AuthOptions(host=" https://adb-1.net ", profile="prod", auth_type="oauth-m2m")
    assert child_environment(options) == {
        "DATABRICKS_HOST": "https://adb-1.net",
        "DATABRICKS_CONFIG_PROFILE": "prod",
        "DATABRICKS_AUTH_TYPE": "oauth-m2m",
    }
    assert child_environment(AuthOptions(host="")) == {}


def test_without_the_sdk_a_databricks_target_names_the_pip_command(clean_env: pytest.MonkeyPatch) -> None:
    import sys

    clean_env.setitem(sys.modules, "databricks.sdk.core", None)  # as if not installed: the import fails
    with pytest.raises(ConfigError) as failure:
        resolve_auth(AuthOptions(host="https://adb-1.net"))
    assert str(failure.value) == (
        "a Databricks target needs the Databricks SDK, which is not installed: pip install 'databricks-sdk==0.162.0'"
    )
    assert isinstance(resolve_auth(AuthOptions(auth_type="none")), NoAuth)  # a local target needs no SDK


def test_the_pin_is_the_one_pyproject_installs() -> None:
    from importlib.metadata import version

    from loadtest.client.auth.databricks import SDK_PIN

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'"{SDK_PIN}"' in pyproject and f"databricks-sdk=={version('databricks-sdk')}" == SDK_PIN
