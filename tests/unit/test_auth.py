"""Credential resolution (explicit > env > profile) and the PAT / OAuth M2M providers, over MockTransport."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from loadtest.client.auth import (
    AuthOptions,
    NoAuth,
    OAuthM2MAuth,
    PatAuth,
    resolve_auth,
    serialize_for_child,
)
from loadtest.client.clock import FakeClock
from loadtest.errors import ConfigError, EndpointError

SECRET = "dose0123456789SECRETvalue"
PAT = "dapi0123456789abcdefPAT"
CLIENT_ID = "abcd1234-ef56-client"

Handler = Callable[[httpx.Request], httpx.Response]


def write_cfg(tmp_path: Path, text: str) -> str:
    path = tmp_path / "databrickscfg"
    path.write_text(text, encoding="utf-8")
    return str(path)


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose default config file is an empty, isolated one unless a test writes it."""
    return {"HOME": str(tmp_path), **extra}


class TokenServer:
    """A token endpoint that counts requests and hands out tok-1, tok-2, …"""

    def __init__(self, expires_in: object = 3600, status: int = 200, body: bytes | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.expires_in = expires_in
        self.status = status
        self.body = body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.body is not None or self.status != 200:
            return httpx.Response(self.status, content=self.body or b"")
        answer = {
            "access_token": f"tok-{len(self.requests)}",
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        return httpx.Response(200, content=orjson.dumps(answer), headers={"content-type": "application/json"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


@pytest.fixture
def server() -> TokenServer:
    return TokenServer()


def oauth_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path,
        DATABRICKS_HOST="ws.example.com",
        DATABRICKS_CLIENT_ID=CLIENT_ID,
        DATABRICKS_CLIENT_SECRET=SECRET,
        **extra,
    )


# --- precedence --------------------------------------------------------------------------------------------------


def test_explicit_beats_env_beats_profile(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "[p]\nhost = profile.example.com\ntoken = dapiPROFILE000000\n")
    env = base_env(tmp_path, DATABRICKS_TOKEN="dapiENV0000000000", DATABRICKS_CONFIG_FILE=cfg)

    provider = resolve_auth(AuthOptions(profile="p", token="dapiEXPLICIT00000"), env)
    assert provider.headers() == {"Authorization": "Bearer dapiEXPLICIT00000"}
    assert provider.host == "https://profile.example.com"
    assert provider.describe()["sources"] == {
        "host": "profile:p",
        "token": "explicit",
        "auth_type": "inferred",
    }

    provider = resolve_auth(AuthOptions(profile="p"), env)
    assert provider.headers() == {"Authorization": "Bearer dapiENV0000000000"}
    assert provider.describe()["sources"] == {"host": "profile:p", "token": "env", "auth_type": "inferred"}
    assert provider.describe()["profile"] == "p"

    provider = resolve_auth(AuthOptions(profile="p"), base_env(tmp_path, DATABRICKS_CONFIG_FILE=cfg))
    assert provider.headers() == {"Authorization": "Bearer dapiPROFILE000000"}


def test_explicit_host_beats_env_host_and_is_normalised(tmp_path: Path) -> None:
    env = base_env(tmp_path, DATABRICKS_HOST="https://env.example.com", DATABRICKS_TOKEN=PAT)
    provider = resolve_auth(AuthOptions(host="explicit.example.com/"), env)
    assert provider.host == "https://explicit.example.com"
    assert provider.describe()["sources"] == {"host": "explicit", "token": "env", "auth_type": "inferred"}
    assert resolve_auth(AuthOptions(), env).host == "https://env.example.com"


def test_profile_named_by_env(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "[DEFAULT]\ntoken = dapiDEFAULT000000\n[staging]\ntoken = dapiSTAGING000000\n")
    env = base_env(tmp_path, DATABRICKS_CONFIG_FILE=cfg, DATABRICKS_CONFIG_PROFILE="staging")
    assert resolve_auth(AuthOptions(), env).headers()["Authorization"] == "Bearer dapiSTAGING000000"
    # An explicit profile beats the env one.
    assert (
        resolve_auth(AuthOptions(profile="DEFAULT"), env).headers()["Authorization"]
        == "Bearer dapiDEFAULT000000"
    )


def test_default_profile_setting_beats_default_section(tmp_path: Path) -> None:
    cfg = write_cfg(
        tmp_path,
        "[__settings__]\ndefault_profile = prod\n"
        "[DEFAULT]\nhost = default.example.com\ntoken = dapiDEFAULT000000\n"
        "[prod]\nhost = prod.example.com\ntoken = dapiPROD000000000\n",
    )
    provider = resolve_auth(AuthOptions(config_file=cfg), base_env(tmp_path))
    assert provider.host == "https://prod.example.com"
    assert provider.headers()["Authorization"] == "Bearer dapiPROD000000000"
    assert provider.describe()["profile"] == "prod"


def test_default_section_when_nothing_named(tmp_path: Path) -> None:
    cfg = write_cfg(
        tmp_path, "[DEFAULT]\nhost = default.example.com\ntoken = dapiDEFAULT000000\n[other]\nx = 1\n"
    )
    provider = resolve_auth(AuthOptions(), base_env(tmp_path, DATABRICKS_CONFIG_FILE=cfg))
    assert provider.host == "https://default.example.com"
    assert provider.describe()["sources"] == {
        "host": "profile:DEFAULT",
        "token": "profile:DEFAULT",
        "auth_type": "inferred",
    }


def test_default_config_file_is_under_home(tmp_path: Path) -> None:
    (tmp_path / ".databrickscfg").write_text("[DEFAULT]\ntoken = dapiHOME00000000\n", encoding="utf-8")
    provider = resolve_auth(AuthOptions(), base_env(tmp_path))
    assert provider.headers()["Authorization"] == "Bearer dapiHOME00000000"


def test_default_section_is_not_merged_into_named_profile(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "[DEFAULT]\ntoken = dapiDEFAULT000000\n[hostonly]\nhost = h.example.com\n")
    with pytest.raises(ConfigError, match="no credentials"):
        resolve_auth(AuthOptions(profile="hostonly", config_file=cfg), base_env(tmp_path))


def test_missing_named_profile_is_a_config_error(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "[DEFAULT]\ntoken = dapiDEFAULT000000\n[a]\ntoken = dapiAAAA000000000\n")
    with pytest.raises(ConfigError, match="'nope' not found") as info:
        resolve_auth(AuthOptions(profile="nope", config_file=cfg), base_env(tmp_path))
    assert "dapi" not in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_auth(AuthOptions(profile="a", config_file=str(tmp_path / "absent")), base_env(tmp_path))


def test_missing_default_profile_target_is_a_config_error(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "[__settings__]\ndefault_profile = gone\n[a]\ntoken = dapiAAAA000000000\n")
    with pytest.raises(ConfigError, match="'gone' not found"):
        resolve_auth(AuthOptions(config_file=cfg), base_env(tmp_path))


def test_file_is_skipped_when_env_is_complete(tmp_path: Path) -> None:
    # A file that would fail to parse proves it is never opened.
    cfg = write_cfg(tmp_path, "this is [not an ini file\n")
    env = base_env(
        tmp_path, DATABRICKS_HOST="ws.example.com", DATABRICKS_TOKEN=PAT, DATABRICKS_CONFIG_FILE=cfg
    )
    provider = resolve_auth(AuthOptions(), env)
    assert provider.headers() == {"Authorization": f"Bearer {PAT}"}
    assert provider.describe()["profile"] is None
    # …and read (and rejected, without echoing the line) once it matters.
    with pytest.raises(ConfigError, match="not valid INI") as info:
        resolve_auth(AuthOptions(), base_env(tmp_path, DATABRICKS_CONFIG_FILE=cfg))
    assert "not an ini" not in str(info.value)


def test_file_is_skipped_when_a_host_is_given_without_a_profile(tmp_path: Path) -> None:
    # The SDK skips the file when a host or any credential is known and no profile is named.
    cfg = write_cfg(tmp_path, "[DEFAULT]\ntoken = dapiDEFAULT000000\n")
    env = base_env(tmp_path, DATABRICKS_HOST="ws.example.com", DATABRICKS_CONFIG_FILE=cfg)
    with pytest.raises(ConfigError, match="no credentials") as info:
        resolve_auth(AuthOptions(), env)
    assert "dapi" not in str(info.value)


def test_nothing_configured_is_no_auth(tmp_path: Path) -> None:
    provider = resolve_auth(AuthOptions(), base_env(tmp_path))
    assert isinstance(provider, NoAuth)
    assert provider.headers() == {}
    assert provider.describe()["kind"] == "none"


def test_api_key_env_is_a_plain_bearer_token(tmp_path: Path) -> None:
    env = base_env(tmp_path, OPENAI_API_KEY="sk-openai-key-123", DATABRICKS_TOKEN=PAT)
    provider = resolve_auth(AuthOptions(api_key_env="OPENAI_API_KEY"), env)
    assert provider.headers() == {"Authorization": "Bearer sk-openai-key-123"}
    assert provider.host is None
    assert provider.describe()["sources"] == {"token": "env:OPENAI_API_KEY", "auth_type": "inferred"}
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        resolve_auth(AuthOptions(api_key_env="OPENAI_API_KEY"), base_env(tmp_path))


# --- kinds ----------------------------------------------------------------------------------------------------


def test_pat_headers_and_schedule(tmp_path: Path) -> None:
    provider = resolve_auth(AuthOptions(host="ws.example.com", token=PAT), base_env(tmp_path))
    assert isinstance(provider, PatAuth)
    assert provider.headers() == {"Authorization": f"Bearer {PAT}"}
    provider.headers()["Authorization"] = "tampered"
    assert provider.headers() == {"Authorization": f"Bearer {PAT}"}
    assert provider.expires_at is None
    assert provider.refresh_due(1e12) is False
    provider.refresh()
    assert provider.headers() == {"Authorization": f"Bearer {PAT}"}


def test_token_and_client_credentials_pat_wins_unless_auth_type_says(
    tmp_path: Path, server: TokenServer
) -> None:
    env = oauth_env(tmp_path, DATABRICKS_TOKEN=PAT)
    with server.client() as http:
        assert isinstance(resolve_auth(AuthOptions(), env, http=http), PatAuth)
        assert server.requests == []
        chosen = resolve_auth(AuthOptions(), {**env, "DATABRICKS_AUTH_TYPE": "oauth-m2m"}, http=http)
        assert isinstance(chosen, OAuthM2MAuth)
        assert chosen.describe()["sources"] == {
            "host": "env",
            "client_id": "env",
            "client_secret": "env",
            "auth_type": "env",
        }
        explicit = resolve_auth(AuthOptions(auth_type="pat"), {**env, "DATABRICKS_AUTH_TYPE": "oauth-m2m"})
        assert isinstance(explicit, PatAuth)


def test_unsupported_or_incomplete_auth_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'databricks-cli' .* not supported"):
        resolve_auth(AuthOptions(auth_type="databricks-cli", token=PAT), base_env(tmp_path))
    with pytest.raises(ConfigError, match="missing: client_secret") as info:
        resolve_auth(AuthOptions(host="h.example.com", client_id=CLIENT_ID), base_env(tmp_path))
    assert CLIENT_ID not in str(info.value)
    with pytest.raises(ConfigError, match="needs a token"):
        resolve_auth(AuthOptions(auth_type="pat", host="h.example.com"), base_env(tmp_path))


# --- OAuth M2M ------------------------------------------------------------------------------------------------


def test_oauth_request_shape(tmp_path: Path, server: TokenServer) -> None:
    with server.client() as http:
        provider = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=FakeClock(1000.0))
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://ws.example.com/oidc/v1/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qs(request.content.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["all-apis"]}
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{CLIENT_ID}:{SECRET}"
    assert provider.headers() == {"Authorization": "Bearer tok-1"}
    assert provider.expires_at == 1000.0 + 3600


def test_oauth_token_is_cached(tmp_path: Path, server: TokenServer) -> None:
    with server.client() as http:
        provider = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=FakeClock())
        for _ in range(5):
            assert provider.headers() == {"Authorization": "Bearer tok-1"}
    assert len(server.requests) == 1


def test_oauth_refresh_due_and_refresh(tmp_path: Path, server: TokenServer) -> None:
    clock = FakeClock(1000.0)
    with server.client() as http:
        provider = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=clock)
        # 3600 s lifetime: refresh when less than max(60, 720) s remain, i.e. from t = 1000 + 2880.
        assert provider.refresh_due(1000.0) is False
        assert provider.refresh_due(1000.0 + 2879.0) is False
        assert provider.refresh_due(1000.0 + 2881.0) is True
        clock.advance(2900.0)
        provider.refresh()
        assert provider.headers() == {"Authorization": "Bearer tok-2"}
        assert provider.expires_at == 3900.0 + 3600
        assert provider.refresh_due(clock.now) is False
    assert len(server.requests) == 2


def test_oauth_short_lifetime_uses_the_60_s_floor(tmp_path: Path) -> None:
    server = TokenServer(expires_in="100")  # a string, as some servers send it
    with server.client() as http:
        provider = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=FakeClock(0.0))
    assert provider.expires_at == 100.0
    assert provider.refresh_due(39.0) is False
    assert provider.refresh_due(41.0) is True


def test_oauth_401_fails_early_without_secrets(tmp_path: Path) -> None:
    body = orjson.dumps({"error": "invalid_client", "error_description": f"bad secret {SECRET}"})
    server = TokenServer(status=401, body=body)
    with server.client() as http, pytest.raises(EndpointError) as info:
        resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http)
    message = str(info.value)
    assert message.startswith("OAuth token request to https://ws.example.com/oidc/v1/token failed: HTTP 401")
    assert "invalid_client" in message
    assert SECRET not in message
    assert base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode() not in message


def test_oauth_refresh_failure_keeps_the_old_token_and_hides_it(tmp_path: Path) -> None:
    state = {"fail": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["fail"]:
            return httpx.Response(500, content=b'{"message": "echo tok-live and ' + SECRET.encode() + b'"}')
        return httpx.Response(
            200, json={"access_token": "tok-live", "token_type": "bearer", "expires_in": 3600}
        )

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        provider = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=FakeClock())
        expires = provider.expires_at
        state["fail"] = True
        with pytest.raises(EndpointError, match="HTTP 500") as info:
            provider.refresh()
    assert "tok-live" not in str(info.value)
    assert SECRET not in str(info.value)
    assert provider.headers() == {"Authorization": "Bearer tok-live"}
    assert provider.expires_at == expires


def test_oauth_transport_error_and_bad_answers_are_endpoint_errors(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def not_json(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>login</html>")

    def no_token(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3600})

    for handler, pattern in ((refuse, "ConnectError"), (not_json, "not JSON"), (no_token, "no access_token")):
        with (
            httpx.Client(transport=httpx.MockTransport(handler)) as http,
            pytest.raises(EndpointError) as info,
        ):
            resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http)
        assert pattern in str(info.value)
        assert SECRET not in str(info.value)


def test_describe_and_repr_hold_no_secret(tmp_path: Path, server: TokenServer) -> None:
    with server.client() as http:
        oauth = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=FakeClock())
    pat = resolve_auth(AuthOptions(host="ws.example.com", token=PAT), base_env(tmp_path))
    options = AuthOptions(token=PAT, client_secret=SECRET, client_id=CLIENT_ID)
    for text in (repr(oauth), str(oauth.describe()), repr(pat), str(pat.describe()), repr(options)):
        assert SECRET not in text
        assert PAT not in text
        assert "tok-1" not in text
        assert CLIENT_ID not in text
    description = oauth.describe()
    assert description["kind"] == "oauth-m2m"
    assert description["host"] == "https://ws.example.com"
    assert description["client_id"] == "abcd…"
    assert description["profile"] is None
    assert pat.describe()["kind"] == "pat"


# --- child processes ----------------------------------------------------------------------------------------


def test_serialize_pat_round_trips(tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "[p]\nhost = ws.example.com\ntoken = dapiPROFILE000000\n")
    parent = resolve_auth(AuthOptions(profile="p", config_file=cfg), base_env(tmp_path))
    child_env = serialize_for_child(parent)
    assert child_env["DATABRICKS_AUTH_TYPE"] == "pat"
    # Laid over an environment with stray credentials and a profile, the child still gets the same provider.
    noisy = oauth_env(tmp_path, DATABRICKS_CONFIG_PROFILE="missing", DATABRICKS_TOKEN="dapiSTRAY00000000")
    for env in (child_env, {**noisy, **child_env}):
        child = resolve_auth(AuthOptions(), env)
        assert isinstance(child, PatAuth)
        assert child.headers() == parent.headers()
        assert child.host == parent.host


def test_serialize_oauth_round_trips(tmp_path: Path, server: TokenServer) -> None:
    with server.client() as http:
        parent = resolve_auth(AuthOptions(), oauth_env(tmp_path), http=http, clock=FakeClock())
        child_env = serialize_for_child(parent)
        assert child_env["DATABRICKS_AUTH_TYPE"] == "oauth-m2m"
        assert child_env["DATABRICKS_CLIENT_SECRET"] == SECRET
        child = resolve_auth(
            AuthOptions(), {**base_env(tmp_path, DATABRICKS_TOKEN=PAT), **child_env}, http=http
        )
    assert isinstance(child, OAuthM2MAuth)
    assert child.host == parent.host
    assert child.client_id == CLIENT_ID
    assert child.headers() == {"Authorization": "Bearer tok-2"}
    assert {k: v for k, v in child.describe().items() if k not in ("sources", "expires_at")} == {
        k: v for k, v in parent.describe().items() if k not in ("sources", "expires_at")
    }
    assert server.requests[1].headers["authorization"] == server.requests[0].headers["authorization"]


def test_serialize_no_auth_round_trips(tmp_path: Path) -> None:
    (tmp_path / ".databrickscfg").write_text("[DEFAULT]\ntoken = dapiHOME00000000\n", encoding="utf-8")
    parent = resolve_auth(AuthOptions(auth_type="none"), base_env(tmp_path))
    assert isinstance(parent, NoAuth)
    child = resolve_auth(AuthOptions(), {**base_env(tmp_path), **serialize_for_child(parent)})
    assert isinstance(child, NoAuth)
    assert child.host is None
