"""Credentials for requests, resolved the way the Databricks SDK and CLI resolve them.

By source: :mod:`~loadtest.client.auth.providers` (the :class:`AuthProvider` seam, ``pat`` and ``none``),
:mod:`~loadtest.client.auth.oauth` (OAuth M2M with refresh), :mod:`~loadtest.client.auth.resolve` (explicit options,
environment and config-file profiles; the environment for the engine's child process). This package's names are the
surface the rest of the toolkit imports.

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

from loadtest.client.auth.oauth import OAuthM2MAuth
from loadtest.client.auth.providers import AUTH_KINDS, AuthProvider, NoAuth, PatAuth
from loadtest.client.auth.resolve import AuthOptions, resolve_auth, serialize_for_child

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
