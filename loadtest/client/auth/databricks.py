"""Databricks credentials through the Databricks SDK's own chain (``databricks.sdk.core.Config``).

Which credentials, from where and in what order is the SDK's unified authentication, not a copy of it: explicit
values, then ``DATABRICKS_*`` (and ``ARM_*``, ``GOOGLE_*``) variables, then a profile of ``~/.databrickscfg``
(``DATABRICKS_CONFIG_FILE``, ``DATABRICKS_CONFIG_PROFILE``), then the first auth type of the SDK's chain that is
configured (:func:`sdk_auth_types`: ``pat``, ``basic``, ``metadata-service``, ``oauth-m2m``, the OIDC kinds,
the Azure kinds, ``external-browser``, ``databricks-cli`` (the CLI's U2M login), runtime, Google, model serving),
or the one ``DATABRICKS_AUTH_TYPE`` / ``auth_type`` names. docs/databricks-auth.md says it for users.

:class:`DatabricksAuth` is an :class:`~loadtest.client.auth.providers.AuthProvider`: the headers of every request
are a cached copy (``Config.authenticate()`` costs 2.4 µs per call for OAuth, and a call that finds the token
expired fetches a new one inside the request it was called for — benchmarks/auth_bench.py, docs/databricks-auth.md),
and :meth:`DatabricksAuth.refresh` asks the SDK again, off the request path: when half the token's lifetime has
passed (at least 60 s before expiry) for credentials whose expiry the SDK shows (OAuth), and every 30 s for the
others. The SDK decides whether that call fetches a new token (it refreshes OAuth tokens in the background once
stale, and at once when less than 40 s remain).

Secrets never appear in messages, ``repr()`` or :meth:`DatabricksAuth.describe`: SDK messages pass through
:func:`~loadtest.client.scrub.redact_content` with every sensitive value of the configuration as a known secret.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from loadtest.client.auth.providers import mask_client_id, normalize_host
from loadtest.client.scrub import public_url, redact_content
from loadtest.errors import ConfigError, EndpointError

if TYPE_CHECKING:
    from databricks.sdk.core import Config

__all__ = [
    "SDK_PIN",
    "DatabricksAuth",
    "databricks_auth",
    "import_sdk_config",
    "sdk_auth_types",
    "sdk_error",
]

SDK_PIN: Final = "databricks-sdk==0.162.0"  # pyproject.toml pins the same version
RECHECK_S: Final = 30.0  # credentials without a visible expiry are asked for again this often
MIN_MARGIN_S: Final = 60.0
# The SDK's own timeouts (300 s of retries by default) would hold a run's start for minutes on a dead host.
_RETRY_TIMEOUT_S: Final = 10
_HTTP_TIMEOUT_S: Final = 30
_NO_CREDENTIALS: Final = "cannot configure default credentials"

# The SDK logs (e.g. a host without metadata) through "databricks.sdk"; without this handler Python's last-resort
# handler would print them on stderr in every process. A user who configures logging still receives them.
_SDK_LOGGER: Final = logging.getLogger("databricks.sdk")
_SDK_LOGGER.addHandler(logging.NullHandler())


class _Warnings(logging.Handler):
    """The SDK's warnings while a Config is built (e.g. the host's metadata could not be read), to explain a
    failure that comes later and says less (an OAuth token URL of ``None``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def import_sdk_config() -> type[Config]:
    """``databricks.sdk.core.Config``, or one line naming the pip command when the SDK is not installed."""
    try:
        from databricks.sdk.core import Config
    except ImportError:
        raise ConfigError(
            f"a Databricks target needs the Databricks SDK, which is not installed: pip install '{SDK_PIN}'"
        ) from None
    return Config


def sdk_auth_types() -> tuple[str, ...]:
    """The SDK's auth types in the order its default chain tries them."""
    import_sdk_config()
    from databricks.sdk.credentials_provider import DefaultCredentials

    return tuple(p.auth_type() for p in DefaultCredentials()._auth_providers)


def _secrets(config: Config | None) -> list[str]:
    """Every sensitive value the configuration holds (token, client secret, password, Azure / Google secrets)."""
    if config is None:
        return []
    found = []
    for attr in type(config).attributes():
        if attr.sensitive:
            value = getattr(config, attr.name, None)
            if isinstance(value, str) and value:
                found.append(value)
    return found


def _env_secrets() -> list[str]:
    """Sensitive values in the environment the SDK reads, for messages raised before a Config exists."""
    import_sdk_config()
    from databricks.sdk.core import Config

    names = [a.env for a in Config.attributes() if a.sensitive and a.env]
    names += [alias for a in Config.attributes() if a.sensitive for alias in a.env_aliases]
    return [v for n in names if (v := os.environ.get(n))]


def _unreachable(exc: BaseException) -> bool:
    """Did the SDK fail to reach a server (rather than get a refusal)? Follows the exception's causes."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.ConnectionError | requests.Timeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def sdk_error(exc: BaseException, what: str, secrets: list[str]) -> str:
    """The SDK's message on one line, secrets removed, after ``what`` failed."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{what}: {redact_content(text, secrets)}"


class DatabricksAuth:
    """Headers from the SDK's chain, cached between refreshes (see the module docstring)."""

    __slots__ = ("_clock", "_config", "_expires_at", "_fetched_at", "_headers", "_host", "_lifetime")

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._host = normalize_host(config.host)
        self._headers: dict[str, str] = {}
        self._fetched_at = 0.0
        self._expires_at: float | None = None
        self._lifetime = 0.0
        self.refresh()

    @property
    def host(self) -> str | None:
        return self._host

    @property
    def auth_type(self) -> str:
        """The SDK's name for the auth type it chose (``pat``, ``oauth-m2m``, ``databricks-cli``, ...)."""
        return str(self._config.auth_type)

    @property
    def config(self) -> Config:
        """The SDK configuration, for workspace API calls with the same credentials (``WorkspaceClient``)."""
        return self._config

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def refresh_due(self, now: float) -> bool:
        if self._expires_at is None:
            return now - self._fetched_at >= RECHECK_S
        margin = max(MIN_MARGIN_S, self._lifetime / 2)
        return self._expires_at - now < margin

    def refresh(self) -> None:
        """Ask the SDK for the current headers (it fetches a new token when its own rules say so); a failure
        raises :class:`EndpointError` (or :class:`ConfigError` for a refusal) and keeps the old headers."""
        now = self._clock()
        try:
            # the expiry first: if the SDK fetches between the two calls, the headers' token outlives it
            expiry = self._oauth_expiry()
            headers = dict(self._config.authenticate())
        except Exception as exc:
            kind = EndpointError if _unreachable(exc) else ConfigError
            raise kind(
                sdk_error(exc, f"Databricks {self.auth_type} credentials failed", _secrets(self._config))
            ) from None
        if expiry is not None and expiry != self._expires_at:
            self._lifetime = max(0.0, expiry - now)
        self._expires_at = expiry
        self._fetched_at = now
        self._headers = headers  # one assignment: a request reads the old dict or the new, never half

    def _oauth_expiry(self) -> float | None:
        """Epoch seconds at which the SDK's OAuth token expires, for auth types that expose one."""
        from databricks.sdk.credentials_provider import OAuthCredentialsProvider

        if not isinstance(getattr(self._config, "_header_factory", None), OAuthCredentialsProvider):
            return None
        expiry = self._config.oauth_token().expiry
        if expiry is None:
            return None
        return float(expiry.timestamp())

    def describe(self) -> dict[str, object]:
        """Auth type, host, profile, masked client id, the variables the SDK read; never a secret."""
        cfg = self._config
        from databricks.sdk.core import Config

        env = sorted(a.env for a in Config.attributes() if a.env and os.environ.get(a.env))
        return {
            "kind": "databricks",
            "auth_type": self.auth_type,
            "host": None if self._host is None else public_url(self._host),
            "profile": cfg.profile,
            "config_file": cfg.config_file,
            "client_id": mask_client_id(cfg.client_id),
            "env": env,
            "expires_at": self._expires_at,
        }

    def __repr__(self) -> str:
        return f"DatabricksAuth(auth_type={self.auth_type!r}, host={self._host and public_url(self._host)!r})"


def databricks_auth(
    host: str | None = None,
    profile: str | None = None,
    auth_type: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> DatabricksAuth:
    """Credentials from the SDK's chain, explicit values first, with the first headers fetched (so a bad secret
    fails before a run starts). One line for every failure: :class:`ConfigError` when nothing is configured or
    the configuration is refused, :class:`EndpointError` when a server the SDK needs cannot be reached."""
    config_class = import_sdk_config()
    types = sdk_auth_types()
    if auth_type is not None and auth_type not in types:
        raise ConfigError(
            f"auth type {auth_type!r} is not one the Databricks SDK knows; use one of: {', '.join(types)}"
        )
    kwargs: dict[str, Any] = {
        "retry_timeout_seconds": _RETRY_TIMEOUT_S,
        "http_timeout_seconds": _HTTP_TIMEOUT_S,
    }
    for key, value in (("host", host), ("profile", profile), ("auth_type", auth_type)):
        if value:
            kwargs[key] = value
    warnings = _Warnings()
    _SDK_LOGGER.addHandler(warnings)
    try:
        config = config_class(**kwargs)
    except Exception as exc:
        secrets = _env_secrets()
        if warnings.messages:  # what went wrong first, e.g. the host could not be reached
            first = sdk_error(Exception(warnings.messages[0]), "first", secrets)
            unreachable = _unreachable(exc) or any(
                w in first.lower() for w in ("connection", "timed out", "max retries")
            )
            kind = EndpointError if unreachable else ConfigError
            raise kind(sdk_error(exc, f"Databricks credentials failed ({first})", secrets)) from None
        if _NO_CREDENTIALS in str(exc):
            raise ConfigError(
                "no Databricks credentials: the Databricks SDK tried "
                + ", ".join(types)
                + " and found none configured — set DATABRICKS_HOST with DATABRICKS_TOKEN, or "
                "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET, or a profile (~/.databrickscfg, "
                "DATABRICKS_CONFIG_PROFILE), or log in with 'databricks auth login' ("
                + sdk_error(exc, "the SDK says", secrets)
                + ")"
            ) from None
        kind = EndpointError if _unreachable(exc) else ConfigError
        raise kind(sdk_error(exc, "Databricks credentials failed", secrets)) from None
    finally:
        _SDK_LOGGER.removeHandler(warnings)
    return DatabricksAuth(config, clock=clock)
