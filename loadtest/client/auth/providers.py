"""The provider seam and the credentials that never change: :class:`AuthProvider`, :class:`PatAuth`, :class:`NoAuth`.

An :class:`AuthProvider` gives the headers for every request and says when its credential must be refreshed; the
static kinds here never need it (``pat``: ``Authorization: Bearer <token>`` from the variable ``api_key_env``
names; ``none``: no header). Databricks credentials are :mod:`loadtest.client.auth.databricks` (the SDK's chain);
which provider a run gets is decided in :mod:`loadtest.client.auth.resolve`.
Secrets never appear in ``repr()`` or :meth:`AuthProvider.describe`; hosts are shown through
:func:`~loadtest.client.scrub.public_url`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from loadtest.client.scrub import public_url
from loadtest.errors import ConfigError

__all__ = ["AuthProvider", "NoAuth", "PatAuth", "mask_client_id", "normalize_host"]


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
        """Kind, auth type, host, profile, masked client id; never a secret."""
        ...


def mask_client_id(client_id: str | None) -> str | None:
    """The first four characters of a client id and an ellipsis: enough to tell ids apart, never the whole."""
    return None if client_id is None else client_id[:4] + "…"


def normalize_host(host: str | None) -> str | None:
    """``https://`` added when no scheme is given, surrounding space and trailing slashes removed; None if empty."""
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
        self._host = normalize_host(host)
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
            "auth_type": self._kind,
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
