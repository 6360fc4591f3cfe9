"""What a Databricks workspace says of a serving endpoint, for ``loadtest plan --endpoint``.

Two calls through the Databricks SDK's API client, with the credentials of its own chain
(:mod:`loadtest.client.auth.databricks`):

- ``GET /api/2.0/serving-endpoints/{name}``: the endpoint's served entities. The first one that is provisioned
  throughput (a tokens/s band, ``min/max_provisioned_throughput``, or ``provisioned_model_units``) is the one read:
  ``entity_name``, ``entity_version``, the band or units and ``scale_to_zero_enabled``.
- for a tokens/s band, ``GET /api/2.0/serving-endpoints/get-model-optimization-info/{entity_name}/{version}``
  (the SDK has no method for it): ``throughput_chunk_size`` and, when the workspace gives it, ``dbus`` (DBUs per
  chunk-hour).

Every failure is one line: a missing endpoint (404), credentials that may not read it (401 / 403), an endpoint
that is not provisioned throughput and a served model the architecture catalog does not know are
:class:`~loadtest.errors.ConfigError` (exit 2); a workspace that does not answer (unreachable, 5xx, a time-out) is
:class:`~loadtest.errors.EndpointError` (exit 3). Plain values out: :class:`WorkspaceEndpoint`.
"""

from __future__ import annotations

import datetime
import urllib.parse
from dataclasses import dataclass
from typing import Any

from loadtest.client.auth import DatabricksAuth, databricks_auth
from loadtest.client.auth.databricks import sdk_error
from loadtest.client.scrub import public_url
from loadtest.errors import ConfigError, EndpointError
from loadtest.model.catalog import architecture_of_entity

__all__ = ["WorkspaceEndpoint", "read_endpoint"]


@dataclass(frozen=True, slots=True)
class WorkspaceEndpoint:
    """One serving endpoint's provisioned-throughput configuration, as its workspace reported it."""

    endpoint: str
    host: str  # as public_url shows it
    read_on: str  # the UTC date of the read, YYYY-MM-DD
    auth_type: str
    entity_name: str
    entity_version: str
    architecture: str  # the catalog's key for entity_name
    min_provisioned_throughput: int | None
    max_provisioned_throughput: int | None
    provisioned_model_units: int | None
    scale_to_zero_enabled: bool | None
    throughput_chunk_size: int | None  # from the optimization-info API (token bands only)
    dbus: float | None  # DBUs per chunk-hour, when the optimization-info API gives them

    @property
    def source(self) -> str:
        return f"workspace API, endpoint {self.endpoint}, {self.read_on}"


def _number(entity: dict[str, Any], key: str) -> int | None:
    value = entity.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EndpointError(f"the workspace's {key} is not a number: {value!r}")
    try:
        return int(float(value))
    except ValueError:
        raise EndpointError(f"the workspace's {key} is not a number: {value!r}") from None


def _get(auth: DatabricksAuth, path: str, what: str) -> dict[str, Any]:
    """GET ``path`` through the SDK's API client; every failure is one line (see the module docstring)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors.base import DatabricksError
    from databricks.sdk.errors.platform import NotFound, PermissionDenied, Unauthenticated

    client = WorkspaceClient(config=auth.config)
    host = public_url(auth.host or "")
    try:
        answer = client.api_client.do("GET", path)
    except NotFound as exc:
        raise ConfigError(
            sdk_error(exc, f"{what} not found in the workspace {host} (HTTP 404)", [])
        ) from None
    except (PermissionDenied, Unauthenticated) as exc:
        status = 401 if isinstance(exc, Unauthenticated) else 403
        raise ConfigError(
            sdk_error(
                exc, f"the {auth.auth_type} credentials may not read {what} at {host} (HTTP {status})", []
            )
        ) from None
    except DatabricksError as exc:
        raise EndpointError(
            sdk_error(exc, f"the workspace API at {host} refused to read {what}", [])
        ) from None
    except Exception as exc:  # unreachable, timed out: the SDK's retries are over
        raise EndpointError(
            sdk_error(exc, f"the workspace API at {host} did not answer for {what}", [])
        ) from None
    if not isinstance(answer, dict):
        raise EndpointError(f"the workspace API at {host} answered {what} with no JSON object")
    return answer


def _provisioned(entity: dict[str, Any]) -> bool:
    keys = ("min_provisioned_throughput", "max_provisioned_throughput", "provisioned_model_units")
    return any(entity.get(k) is not None for k in keys)


def read_endpoint(
    name: str, *, host: str | None = None, profile: str | None = None, auth: DatabricksAuth | None = None
) -> WorkspaceEndpoint:
    """Read endpoint ``name``'s provisioned throughput from its workspace (see the module docstring)."""
    if auth is None:
        auth = databricks_auth(host, profile)
    what = f"serving endpoint {name!r}"
    document = _get(auth, f"/api/2.0/serving-endpoints/{urllib.parse.quote(name, safe='')}", what)
    config = document.get("config") or document.get("pending_config") or {}
    entities = [
        e for e in config.get("served_entities") or config.get("served_models") or [] if isinstance(e, dict)
    ]
    pt = [e for e in entities if _provisioned(e)]
    if not pt:
        kinds = (
            ", ".join(str(e.get("entity_name") or e.get("model_name") or "?") for e in entities) or "nothing"
        )
        raise ConfigError(
            f"{what} is not a provisioned-throughput endpoint: it serves {kinds} with no tokens/s band and no "
            "model units (pay-per-token, external or custom models are not planned from a workspace)"
        )
    entity = pt[0]
    entity_name = str(entity.get("entity_name") or entity.get("model_name") or "")
    version = str(entity.get("entity_version") or entity.get("model_version") or "")
    if not entity_name or not version:
        raise EndpointError(f"{what}: its served entity has no entity_name / entity_version")
    architecture = architecture_of_entity(entity_name, what)
    low = _number(entity, "min_provisioned_throughput")
    high = _number(entity, "max_provisioned_throughput")
    units = _number(entity, "provisioned_model_units")
    chunk: int | None = None
    dbus: float | None = None
    if units is None:
        info_path = (
            "/api/2.0/serving-endpoints/get-model-optimization-info/"
            f"{urllib.parse.quote(entity_name, safe='')}/{urllib.parse.quote(version, safe='')}"
        )
        info = _get(auth, info_path, f"the optimization info of {entity_name} version {version}")
        chunk = _number(info, "throughput_chunk_size")
        if chunk is None or chunk <= 0:
            raise EndpointError(
                f"the optimization info of {entity_name} version {version} has no throughput_chunk_size "
                f"(optimizable: {info.get('optimizable')!r})"
            )
        raw_dbus = info.get("dbus")
        dbus = (
            float(raw_dbus) if isinstance(raw_dbus, int | float) and not isinstance(raw_dbus, bool) else None
        )
    scale = entity.get("scale_to_zero_enabled")
    return WorkspaceEndpoint(
        endpoint=name,
        host=public_url(auth.host or ""),
        read_on=datetime.datetime.now(datetime.UTC).date().isoformat(),
        auth_type=auth.auth_type,
        entity_name=entity_name,
        entity_version=version,
        architecture=architecture,
        min_provisioned_throughput=low,
        max_provisioned_throughput=high,
        provisioned_model_units=units,
        scale_to_zero_enabled=scale if isinstance(scale, bool) else None,
        throughput_chunk_size=chunk,
        dbus=dbus,
    )
