"""Credentials for requests: Databricks through the Databricks SDK's own chain, a bearer token for generic
OpenAI-compatible endpoints, or none.

By source: :mod:`~loadtest.client.auth.providers` (the :class:`AuthProvider` seam, ``pat`` and ``none``),
:mod:`~loadtest.client.auth.databricks` (the SDK's chain: every auth type it supports, its precedence and variables,
headers cached between refreshes), :mod:`~loadtest.client.auth.resolve` (which provider a run gets, and the
environment for the engine's child processes). This package's names are the surface the rest of the toolkit
imports. docs/databricks-auth.md is the user's page.

Secrets never appear in messages, ``repr()`` or :meth:`AuthProvider.describe`, and never travel to a child
process: each process resolves its own credentials.
"""

from loadtest.client.auth.databricks import DatabricksAuth, databricks_auth, import_sdk_config, sdk_auth_types
from loadtest.client.auth.providers import AuthProvider, NoAuth, PatAuth
from loadtest.client.auth.resolve import AuthOptions, child_environment, resolve_auth

__all__ = [
    "AuthOptions",
    "AuthProvider",
    "DatabricksAuth",
    "NoAuth",
    "PatAuth",
    "child_environment",
    "databricks_auth",
    "import_sdk_config",
    "resolve_auth",
    "sdk_auth_types",
]
