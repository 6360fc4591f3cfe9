"""OAuth machine-to-machine tokens as Databricks issues them at ``POST /oidc/v1/token``.

Rules:

- The request is form-encoded, ``grant_type=client_credentials`` (else 400 ``unsupported_grant_type``), with an
  optional ``scope`` that must include ``all-apis`` (else 400 ``invalid_scope``). The client authenticates with
  HTTP Basic ``client_id:client_secret`` (or ``client_id`` and ``client_secret`` form fields); anything else is
  401 ``{"error": "invalid_client"}``.
- Each call issues a fresh random token, valid for ``ttl_s`` seconds from issue on the injected clock:
  ``{"access_token", "token_type": "Bearer", "expires_in": ttl_s, "scope": "all-apis"}``.
- :meth:`OAuthIssuer.valid` is true only for a token issued here and not yet expired. Secrets and tokens never
  appear in an error or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

__all__ = ["OAuthIssuer"]


class OAuthIssuer:
    """Issues and checks client-credentials tokens (see the module docstring)."""

    def __init__(self, client_id: str, client_secret: str, ttl_s: int, clock: Callable[[], float]) -> None:
        if ttl_s < 1:
            raise ValueError("the token ttl must be >= 1 s")
        self._client_id, self._secret = client_id.encode(), client_secret.encode()
        self.ttl_s, self.clock = ttl_s, clock
        self._tokens: dict[str, float] = {}  # token -> expiry on the clock
        self.issued = 0

    def __repr__(self) -> str:
        return f"OAuthIssuer(ttl_s={self.ttl_s}, issued={self.issued})"

    def _client(self, authorization: str, form: dict[str, list[str]]) -> tuple[str, str] | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            if not sep:
                return None
            return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
        ids, keys = form.get("client_id"), form.get("client_secret")
        if ids and keys:
            return ids[0], keys[0]
        return None

    def token_response(self, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """HTTP status and JSON body for one token request."""
        try:
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            return 400, {"error": "invalid_request", "error_description": "body is not form-encoded UTF-8"}
        client = self._client(authorization, form)
        ok = client is not None and (
            hmac.compare_digest(client[0].encode(), self._client_id)
            & hmac.compare_digest(client[1].encode(), self._secret)
        )
        if not ok:
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if form.get("grant_type", [""])[0] != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "use client_credentials"}
        scope = form.get("scope", ["all-apis"])[0]
        if "all-apis" not in scope.split():
            return 400, {"error": "invalid_scope", "error_description": "the scope must include all-apis"}
        now = self.clock()
        self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + self.ttl_s
        self.issued += 1
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.ttl_s,
            "scope": "all-apis",
        }

    def valid(self, token: str) -> bool:
        """True for a token issued here that has not expired."""
        expiry = self._tokens.get(token)
        return expiry is not None and self.clock() < expiry
