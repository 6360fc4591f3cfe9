"""Which credentials a run gets, and the environment that lets the engine's child processes resolve the same ones.

- ``api_key_env`` (generic OpenAI-compatible endpoints): ``Authorization: Bearer`` with that variable's value
  (:class:`~loadtest.client.auth.providers.PatAuth`).
- ``auth_type`` ``none`` (explicit, or ``DATABRICKS_AUTH_TYPE=none``): no header
  (:class:`~loadtest.client.auth.providers.NoAuth`; a local simulator or server).
- anything else: Databricks credentials through the Databricks SDK's chain
  (:func:`~loadtest.client.auth.databricks.databricks_auth`), ``host`` / ``profile`` / ``auth_type`` as explicit
  values above the environment and ``~/.databrickscfg``.

The engine's processes resolve their credentials themselves, from the environment they inherit plus
:func:`child_environment` (the explicit values only, none of them a secret): every process then holds its own
token and refreshes it, and every auth type works there as it does in the CLI (a U2M login's token cache, an
Azure identity). No secret travels to a child or into a file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loadtest.client.auth.databricks import databricks_auth
from loadtest.client.auth.providers import AuthProvider, NoAuth, PatAuth
from loadtest.errors import ConfigError

__all__ = ["AuthOptions", "child_environment", "resolve_auth"]

_CHILD_VARS = {
    "host": "DATABRICKS_HOST",
    "profile": "DATABRICKS_CONFIG_PROFILE",
    "auth_type": "DATABRICKS_AUTH_TYPE",
}


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """What the caller states explicitly (a scenario's ``[endpoint]``); empty strings count as unset. None of these
    is a secret: tokens and client secrets come from the environment or a profile."""

    host: str | None = None
    profile: str | None = None
    auth_type: str | None = None
    api_key_env: str | None = None


def _clean(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def resolve_auth(
    options: AuthOptions, env: Mapping[str, str] = os.environ, *, clock: Callable[[], float] = time.time
) -> AuthProvider:
    """The provider for ``options`` (see the module docstring), its first headers fetched. Raises ConfigError
    for missing or refused credentials and EndpointError when a server the SDK needs cannot be reached."""
    host, profile, auth_type = _clean(options.host), _clean(options.profile), _clean(options.auth_type)
    if options.api_key_env:
        token = _clean(env.get(options.api_key_env))
        if token is None:
            raise ConfigError(f"environment variable {options.api_key_env} is not set")
        return PatAuth(token, host, sources={"token": f"env:{options.api_key_env}"})
    if (auth_type or _clean(env.get("DATABRICKS_AUTH_TYPE")) or "").lower() == "none":
        return NoAuth(host or _clean(env.get("DATABRICKS_HOST")), sources={"auth_type": "none"})
    return databricks_auth(host, profile, auth_type, clock=clock)


def child_environment(options: AuthOptions) -> dict[str, str]:
    """The variables under which a child process's ``resolve_auth(AuthOptions())`` resolves what
    ``resolve_auth(options)`` did here: the explicit values as the SDK's variables, which explicit values
    outrank anyway. Never a secret; the rest (tokens, profiles, a CLI login) the child finds where this process
    found it."""
    out: dict[str, str] = {}
    for key, var in _CHILD_VARS.items():
        value = _clean(getattr(options, key))
        if value is not None:
            out[var] = value
    return out
