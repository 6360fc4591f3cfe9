"""Credentials for requests, resolved the way the Databricks SDK and CLI resolve them.

Precedence, highest first, field by field (a lower source only fills what a higher one left empty):

1. **explicit** values in :class:`AuthOptions` (``host``, ``token``, ``client_id``, ``client_secret``, ``profile``,
   ``config_file``, ``auth_type``), then the variable named by ``api_key_env`` (a plain bearer token, for generic
   OpenAI-compatible endpoints);
2. **environment**: ``DATABRICKS_HOST``, ``DATABRICKS_TOKEN``, ``DATABRICKS_CLIENT_ID``, ``DATABRICKS_CLIENT_SECRET``,
   ``DATABRICKS_CONFIG_PROFILE``, ``DATABRICKS_CONFIG_FILE`` (default ``~/.databrickscfg``), ``DATABRICKS_AUTH_TYPE``;
3. **a profile of the config file** (INI): the profile named explicitly or by ``DATABRICKS_CONFIG_PROFILE``, else
   ``[__settings__] default_profile``, else ``[DEFAULT]``. As in the SDK (``Config._known_file_config_loader``),
   the file is not read at all when no profile is named and a host or any credential is already known from 1–2;
   a profile that is named but missing is a :class:`~loadtest.errors.ConfigError`. ``[DEFAULT]`` is not merged
   into other profiles (the SDK reads sections raw too).

Empty values count as unset. Auth kinds: ``pat`` (static ``Authorization: Bearer <token>``), ``oauth-m2m``
(client credentials at ``{host}/oidc/v1/token``, scope ``all-apis``, refreshed before expiry) and ``none``. When
both a token and client credentials are present, ``auth_type`` (explicit, ``DATABRICKS_AUTH_TYPE`` or the
profile's ``auth_type``) decides; without it the token wins.

Secrets never appear in messages, ``repr()`` or :meth:`AuthProvider.describe`. They may travel to a child process
in its environment (:func:`serialize_for_child`), never in files.
"""

from __future__ import annotations

import configparser
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

import httpx

from loadtest.client.scrub import public_url, redact
from loadtest.errors import ConfigError, EndpointError

__all__ = [
    "AUTH_KINDS",
    "AuthOptions",
    "AuthProvider",
    "NoAuth",
    "OAuthM2MAuth",
    "PatAuth",
    "resolve_auth",
    "serialize_for_child",
]

AUTH_KINDS = ("pat", "oauth-m2m", "none")

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
_TOKEN_PATH = "/oidc/v1/token"
_SCOPE = "all-apis"
_DEFAULT_EXPIRES_IN = 3600.0
_MIN_REFRESH_MARGIN = 60.0
_REFRESH_FRACTION = 0.2
_TOKEN_TIMEOUT = httpx.Timeout(10.0)
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
                shown.append(f"client_id={_mask(str(value))!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"AuthOptions({', '.join(shown)})"


class AuthProvider(Protocol):
    """Headers for every request, and the refresh schedule of the credential behind them."""

    @property
    def host(self) -> str | None:
        """The normalised workspace host (``https://…``, no trailing slash), if one is known."""
        ...

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds at which the current credential expires; None for credentials that do not expire."""
        ...

    def headers(self) -> dict[str, str]:
        """The current auth headers (a copy of the cached dict; no I/O)."""
        ...

    def refresh_due(self, now: float) -> bool:
        """Whether :meth:`refresh` should be called before the next request sent at ``now``."""
        ...

    def refresh(self) -> None:
        """Fetch a new credential if the kind has one; raises EndpointError and keeps the old one on failure."""
        ...

    def describe(self) -> dict[str, object]:
        """Kind, host, profile, masked client id and where each value came from; never a secret."""
        ...


def _mask(client_id: str | None) -> str | None:
    return None if client_id is None else client_id[:4] + "…"


def _normalize_host(host: str | None) -> str | None:
    if host is None:
        return None
    host = host.strip().rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = "https://" + host
    return host


class _StaticAuth:
    """Credentials that never change: a fixed set of headers (possibly none)."""

    __slots__ = ("_headers", "_host", "_profile", "_sources")
    _kind = "static"

    def __init__(
        self,
        headers: Mapping[str, str],
        host: str | None,
        profile: str | None,
        sources: Mapping[str, str] | None,
    ) -> None:
        self._headers = dict(headers)
        self._host = _normalize_host(host)
        self._profile = profile
        self._sources = dict(sources or {})

    @property
    def host(self) -> str | None:
        return self._host

    @property
    def expires_at(self) -> float | None:
        return None

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def refresh_due(self, now: float) -> bool:
        return False

    def refresh(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {
            "kind": self._kind,
            "host": None if self._host is None else public_url(self._host),
            "profile": self._profile,
            "client_id": None,
            "sources": dict(self._sources),
        }


class PatAuth(_StaticAuth):
    """A static bearer token (a Databricks PAT or any OpenAI-compatible API key)."""

    __slots__ = ("_token",)
    _kind = "pat"

    def __init__(
        self,
        token: str,
        host: str | None = None,
        *,
        profile: str | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        if not token:
            raise ConfigError("pat auth needs a non-empty token")
        super().__init__({"Authorization": f"Bearer {token}"}, host, profile, sources)
        self._token = token

    def __repr__(self) -> str:
        return f"PatAuth(host={self._host and public_url(self._host)!r}, token='***')"


class NoAuth(_StaticAuth):
    """No credentials: requests carry no ``Authorization`` header (local simulators and servers)."""

    __slots__ = ()
    _kind = "none"

    def __init__(
        self, host: str | None = None, *, profile: str | None = None, sources: Mapping[str, str] | None = None
    ) -> None:
        super().__init__({}, host, profile, sources)

    def __repr__(self) -> str:
        return f"NoAuth(host={self._host and public_url(self._host)!r})"


class OAuthM2MAuth:
    """OAuth machine-to-machine (client credentials) against the workspace's ``/oidc/v1/token``.

    The constructor does not fetch; :func:`resolve_auth` calls :meth:`refresh` once so a bad secret fails early.
    A failed :meth:`refresh` raises :class:`~loadtest.errors.EndpointError` and leaves the previous token in place,
    so a caller that refreshes ahead of expiry can keep sending and try again.
    """

    __slots__ = (
        "_client_id",
        "_client_secret",
        "_clock",
        "_expires_at",
        "_headers",
        "_host",
        "_http",
        "_lifetime",
        "_profile",
        "_sources",
        "_token",
    )

    def __init__(
        self,
        host: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        profile: str | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        normalized = _normalize_host(host)
        if normalized is None or not client_id or not client_secret:
            raise ConfigError("oauth-m2m auth needs a host, a client id and a client secret")
        self._host = normalized
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = http
        self._clock = clock
        self._profile = profile
        self._sources = dict(sources or {})
        self._token: str | None = None
        self._headers: dict[str, str] = {}
        self._expires_at: float | None = None
        self._lifetime = 0.0

    @property
    def host(self) -> str:
        return self._host

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    @property
    def token_url(self) -> str:
        return self._host + _TOKEN_PATH

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def refresh_due(self, now: float) -> bool:
        if self._expires_at is None:
            return True
        margin = max(_MIN_REFRESH_MARGIN, _REFRESH_FRACTION * self._lifetime)
        return self._expires_at - now < margin

    def refresh(self) -> None:
        requested_at = self._clock()
        url = self.token_url
        shown = public_url(url)
        try:
            response = self._post(url)
        except httpx.HTTPError as exc:
            detail = redact(f"{type(exc).__name__}: {exc}", (self._client_secret, self._token))
            raise EndpointError(f"OAuth token request to {shown} failed: {detail}") from None
        if not response.is_success:
            detail = redact(response.text, (self._client_secret, self._token))
            raise EndpointError(
                f"OAuth token request to {shown} failed: HTTP {response.status_code} {detail}".rstrip()
            )
        try:
            body = response.json()
        except ValueError:
            raise EndpointError(f"OAuth token response from {shown} is not JSON") from None
        if not isinstance(body, dict):
            raise EndpointError(f"OAuth token response from {shown} is not a JSON object")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise EndpointError(f"OAuth token response from {shown} has no access_token")
        token_type = body.get("token_type")
        if not isinstance(token_type, str) or not token_type or token_type.lower() == "bearer":
            token_type = "Bearer"
        lifetime = _parse_expires_in(body.get("expires_in"))
        if lifetime is None:
            raise EndpointError(f"OAuth token response from {shown} has an unusable expires_in")
        # Commit only once everything is valid, and swap the header dict in one assignment.
        self._token = token
        self._lifetime = lifetime
        self._expires_at = requested_at + lifetime
        self._headers = {"Authorization": f"{token_type} {token}"}

    def _post(self, url: str) -> httpx.Response:
        data = {"grant_type": "client_credentials", "scope": _SCOPE}
        auth = (self._client_id, self._client_secret)
        headers = {"Accept": "application/json"}
        if self._http is not None:
            return self._http.post(url, data=data, auth=auth, headers=headers)
        with httpx.Client(timeout=_TOKEN_TIMEOUT) as client:
            return client.post(url, data=data, auth=auth, headers=headers)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "oauth-m2m",
            "host": public_url(self._host),
            "profile": self._profile,
            "client_id": _mask(self._client_id),
            "sources": dict(self._sources),
            "expires_at": self._expires_at,
        }

    def __repr__(self) -> str:
        return (
            f"OAuthM2MAuth(host={public_url(self._host)!r}, client_id={_mask(self._client_id)!r}, "
            f"client_secret='***', expires_at={self._expires_at!r})"
        )


def _parse_expires_in(value: object) -> float | None:
    if value is None:
        return _DEFAULT_EXPIRES_IN
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


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

    host = _normalize_host(get("host"))
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
