"""Which credentials a run gets: explicit options, the environment and ``~/.databrickscfg`` profiles, resolved the
way the Databricks SDK and CLI resolve them (the precedence is in :mod:`loadtest.client.auth`), and the environment
that carries them to the engine's child process (:func:`serialize_for_child` reads the providers' own fields: one
package).
"""

from __future__ import annotations

import configparser
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import httpx

from loadtest.client.auth.oauth import OAuthM2MAuth
from loadtest.client.auth.providers import (
    AUTH_KINDS,
    AuthProvider,
    NoAuth,
    PatAuth,
    mask_client_id,
    normalize_host,
)
from loadtest.client.scrub import public_url
from loadtest.errors import ConfigError

__all__ = ["AuthOptions", "resolve_auth", "serialize_for_child"]

_ENV_VARS = {
    "host": "DATABRICKS_HOST",
    "token": "DATABRICKS_TOKEN",
    "client_id": "DATABRICKS_CLIENT_ID",
    "client_secret": "DATABRICKS_CLIENT_SECRET",
    "profile": "DATABRICKS_CONFIG_PROFILE",
    "config_file": "DATABRICKS_CONFIG_FILE",
    "auth_type": "DATABRICKS_AUTH_TYPE",
}
_PROFILE_KEYS = ("host", "token", "client_id", "client_secret", "auth_type")
_CREDENTIAL_KEYS = ("token", "client_id", "client_secret")
_SECRET_KEYS = frozenset({"token", "client_secret"})
_DEFAULT_CONFIG_FILE = "~/.databrickscfg"
# A section name no real file uses, so that ``[DEFAULT]`` parses as an ordinary, unmerged section.
_NO_DEFAULT_SECTION = "\x00loadtest-no-default\x00"


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """What the caller states explicitly; every field is optional and empty strings count as unset."""

    host: str | None = None
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    profile: str | None = None
    config_file: str | os.PathLike[str] | None = None
    auth_type: str | None = None
    api_key_env: str | None = None

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in _SECRET_KEYS:
                shown.append(f"{f.name}='***'")
            elif f.name == "client_id":
                shown.append(f"client_id={mask_client_id(str(value))!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"AuthOptions({', '.join(shown)})"


def _expand_home(path: str, env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    if home and (path == "~" or path.startswith("~/")):
        return Path(home + path[1:])
    return Path(path).expanduser()


def _read_profile(
    config_file: str, named_profile: str | None, env: Mapping[str, str]
) -> tuple[str, dict[str, str]] | None:
    """The profile to use and its raw keys, or None when there is nothing to load (as in the SDK)."""
    path = _expand_home(config_file, env)
    if not path.is_file():
        if named_profile is not None:
            raise ConfigError(f"profile {named_profile!r} is named but the config file {path} does not exist")
        return None
    parser = configparser.ConfigParser(default_section=_NO_DEFAULT_SECTION, interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {type(exc).__name__}") from None
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        where = f" near line {line}" if line else ""
        raise ConfigError(f"the config file {path} is not valid INI{where} ({type(exc).__name__})") from None
    profiles = {name: dict(parser.items(name)) for name in parser.sections() if name != "__settings__"}
    settings = dict(parser.items("__settings__")) if parser.has_section("__settings__") else {}
    if named_profile is not None:
        name = named_profile
    elif settings.get("default_profile", "").strip():
        name = settings["default_profile"].strip()
    elif profiles.get("DEFAULT"):
        name = "DEFAULT"
    else:
        return None
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"profile {name!r} not found in {path} (profiles: {known})")
    return name, profiles[name]


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    text = text.strip()
    return text or None


def resolve_auth(
    options: AuthOptions,
    env: Mapping[str, str] = os.environ,
    *,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
) -> AuthProvider:
    """Resolve credentials (see the module docstring for the precedence) and return a ready provider.

    For ``oauth-m2m`` the first token is fetched here, through ``http`` if given (else a short-lived client), so a
    bad secret fails before the run starts. Raises ConfigError for incomplete or contradictory configuration and
    EndpointError when the token endpoint refuses.
    """
    values: dict[str, tuple[str, str]] = {}

    def put(key: str, raw: object, source: str) -> None:
        value = _clean(raw)
        if value is not None and key not in values:
            values[key] = (value, source)

    for key in _ENV_VARS:
        put(key, getattr(options, key), "explicit")
    if options.api_key_env and "token" not in values:
        key_value = _clean(env.get(options.api_key_env))
        if key_value is None:
            raise ConfigError(f"environment variable {options.api_key_env} is not set")
        put("token", key_value, f"env:{options.api_key_env}")
    for key, var in _ENV_VARS.items():
        put(key, env.get(var), "env")

    profile_used: str | None = None
    named_profile = values["profile"][0] if "profile" in values else None
    declared_none = "auth_type" in values and values["auth_type"][0].lower() == "none"
    known = "host" in values or any(k in values for k in _CREDENTIAL_KEYS) or declared_none
    if named_profile is not None or not known:
        config_file = values["config_file"][0] if "config_file" in values else _DEFAULT_CONFIG_FILE
        loaded = _read_profile(config_file, named_profile, env)
        if loaded is not None:
            profile_used, raw = loaded
            for key in _PROFILE_KEYS:
                put(key, raw.get(key), f"profile:{profile_used}")

    def get(key: str) -> str | None:
        return values[key][0] if key in values else None

    host = normalize_host(get("host"))
    token, client_id, client_secret = get("token"), get("client_id"), get("client_secret")
    auth_type = get("auth_type")
    sources = {k: src for k, (_, src) in values.items() if k not in ("profile", "config_file")}
    if auth_type is not None:
        kind = auth_type.lower()
        if kind not in AUTH_KINDS:
            raise ConfigError(
                f"auth type {auth_type!r} (from {values['auth_type'][1]}) is not supported; "
                f"use one of: {', '.join(AUTH_KINDS)}"
            )
    elif token is not None:
        kind = "pat"
    elif client_id is not None or client_secret is not None:
        kind = "oauth-m2m"
    elif host is not None:
        raise ConfigError(
            f"a Databricks host ({public_url(host)}, from {values['host'][1]}) is set but no credentials: set "
            "DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET, or name a profile "
            "(the config file is not read when a host is given without a profile), or DATABRICKS_AUTH_TYPE=none"
        )
    else:
        kind = "none"
    if auth_type is None:
        sources["auth_type"] = "inferred"

    def pick(*keys: str) -> dict[str, str]:
        return {k: v for k, v in sources.items() if k in keys}

    if kind == "pat":
        if token is None:
            raise ConfigError(
                "auth type pat needs a token (DATABRICKS_TOKEN, an explicit token or a profile)"
            )
        return PatAuth(token, host, profile=profile_used, sources=pick("host", "token", "auth_type"))
    if kind == "oauth-m2m":
        missing = [
            name
            for name, value in (("host", host), ("client_id", client_id), ("client_secret", client_secret))
            if value is None
        ]
        if missing or host is None or client_id is None or client_secret is None:
            raise ConfigError(f"auth type oauth-m2m is missing: {', '.join(missing)}")
        provider = OAuthM2MAuth(
            host,
            client_id,
            client_secret,
            http=http,
            clock=clock,
            profile=profile_used,
            sources=pick("host", "client_id", "client_secret", "auth_type"),
        )
        provider.refresh()
        return provider
    return NoAuth(host, profile=profile_used, sources=pick("host", "auth_type"))


def serialize_for_child(provider: AuthProvider) -> dict[str, str]:
    """Environment variables from which ``resolve_auth(AuthOptions(), env=...)`` rebuilds an equivalent provider.

    Every variable :func:`resolve_auth` reads is present, the unused ones as empty strings (which count as unset),
    so the result can be laid over an inherited environment (``{**os.environ, **result}``) without a stray
    ``DATABRICKS_*`` variable or profile changing the outcome. The values include secrets: pass them only in the
    child's environment, never write them to a file. An OAuth child fetches its own token.
    """
    out = dict.fromkeys(_ENV_VARS.values(), "")
    if isinstance(provider, PatAuth):
        out["DATABRICKS_TOKEN"] = provider._token
        out["DATABRICKS_AUTH_TYPE"] = "pat"
    elif isinstance(provider, OAuthM2MAuth):
        out["DATABRICKS_CLIENT_ID"] = provider._client_id
        out["DATABRICKS_CLIENT_SECRET"] = provider._client_secret
        out["DATABRICKS_AUTH_TYPE"] = "oauth-m2m"
    elif isinstance(provider, NoAuth):
        out["DATABRICKS_AUTH_TYPE"] = "none"
    else:
        raise TypeError(f"cannot serialize {type(provider).__name__}: not a provider made by resolve_auth")
    out["DATABRICKS_HOST"] = provider.host or ""
    return out
