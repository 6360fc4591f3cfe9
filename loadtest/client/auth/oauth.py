"""OAuth machine-to-machine credentials: a client id and secret exchanged for a bearer token that expires.

The token comes from ``{host}/oidc/v1/token`` (client credentials, scope ``all-apis``, HTTP basic auth), is fetched
once before the run starts and refreshed ahead of expiry (a fifth of its lifetime, at least 60 s); a failed refresh
raises :class:`~loadtest.errors.EndpointError` and keeps the old token. What the token endpoint says is shown only
through :func:`~loadtest.client.scrub.redact`, with the client secret and the token as known secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from loadtest.client.auth.providers import mask_client_id, normalize_host
from loadtest.client.scrub import public_url, redact
from loadtest.errors import ConfigError, EndpointError

__all__ = ["OAuthM2MAuth"]

_TOKEN_PATH = "/oidc/v1/token"
_SCOPE = "all-apis"
_DEFAULT_EXPIRES_IN = 3600.0
_MIN_REFRESH_MARGIN = 60.0
_REFRESH_FRACTION = 0.2
_TOKEN_TIMEOUT = httpx.Timeout(10.0)


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
        normalized = normalize_host(host)
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
            "client_id": mask_client_id(self._client_id),
            "sources": dict(self._sources),
            "expires_at": self._expires_at,
        }

    def __repr__(self) -> str:
        return (
            f"OAuthM2MAuth(host={public_url(self._host)!r}, client_id={mask_client_id(self._client_id)!r}, "
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
