"""What a Databricks workspace says of a serving endpoint, for ``loadtest plan --endpoint``, or of a registered model
that has no endpoint yet, for ``loadtest plan --registered-model``.

Two calls through the Databricks SDK's API client, with the credentials of its own chain
(:mod:`loadtest.client.auth.databricks`):

- ``GET /api/2.0/serving-endpoints/{name}``: the endpoint's served entities. The first one that is provisioned
  throughput (a tokens/s band, ``min/max_provisioned_throughput``, or ``provisioned_model_units``) is the one read:
  ``entity_name``, ``entity_version``, the band or units and ``scale_to_zero_enabled``.
- for a tokens/s band, ``GET /api/2.0/serving-endpoints/get-model-optimization-info/{entity_name}/{version}``
  (the SDK has no method for it): ``throughput_chunk_size`` and, when the workspace gives it, ``dbus`` (DBUs per
  chunk-hour).

A registered model (:func:`read_registered_model`) is read from the optimization-info API alone: there is no
endpoint, so no band. A model-unit architecture has no chunk there (it is sized in model units), which is no error.

Every failure is one line: a missing endpoint or model version (404), credentials that may not read it (401 / 403),
an endpoint that is not provisioned throughput, a model the optimization info says is not ``optimizable`` and a
served model the architecture catalog does not know are :class:`~loadtest.errors.ConfigError` (exit 2); a workspace
that does not answer (unreachable, 5xx, a time-out) or answers without a chunk size for a tokens/s band is
:class:`~loadtest.errors.EndpointError` (exit 3). Plain values out: :class:`WorkspaceEndpoint`,
:class:`WorkspaceModel`.
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
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import architecture_of_entity

__all__ = ["WorkspaceEndpoint", "WorkspaceModel", "read_endpoint", "read_registered_model"]


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


@dataclass(frozen=True, slots=True)
class WorkspaceModel:
    """A registered model version's optimization info, as its workspace reported it (no endpoint: no band)."""

    host: str  # as public_url shows it
    read_on: str  # the UTC date of the read, YYYY-MM-DD
    auth_type: str
    entity_name: str
    entity_version: str
    architecture: str  # the catalog's key for entity_name
    throughput_chunk_size: int | None  # None for a model-unit architecture
    dbus: float | None  # DBUs per chunk-hour, when the optimization-info API gives them

    @property
    def source(self) -> str:
        return f"workspace API, model {self.entity_name} version {self.entity_version}, {self.read_on}"


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
        chunk, dbus = _optimization_info(auth, entity_name, version, need_chunk=True)
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


def _optimization_info(
    auth: DatabricksAuth, entity_name: str, version: str, *, need_chunk: bool, what: str | None = None
) -> tuple[int | None, float | None]:
    """``(throughput_chunk_size, dbus)`` of a model version from the optimization-info API (``what`` names it in a
    404 or a refusal); ``optimizable: false`` is a :class:`ConfigError`, a missing chunk when ``need_chunk`` (a
    tokens/s band) an :class:`EndpointError`."""
    what = what or f"the optimization info of {entity_name} version {version}"
    info_path = (
        "/api/2.0/serving-endpoints/get-model-optimization-info/"
        f"{urllib.parse.quote(entity_name, safe='')}/{urllib.parse.quote(version, safe='')}"
    )
    info = _get(auth, info_path, what)
    if info.get("optimizable") is False:
        raise ConfigError(
            f"{entity_name} version {version} is not optimizable (the workspace's optimization info says "
            "optimizable: false): provisioned throughput cannot serve it, so there is no chunk to plan with"
        )
    chunk = _number(info, "throughput_chunk_size")
    if chunk is not None and chunk <= 0:
        chunk = None
    if chunk is None and need_chunk:
        raise EndpointError(f"{what} has no throughput_chunk_size (optimizable: {info.get('optimizable')!r})")
    raw_dbus = info.get("dbus")
    dbus = float(raw_dbus) if isinstance(raw_dbus, int | float) and not isinstance(raw_dbus, bool) else None
    return chunk, dbus


def read_registered_model(
    name: str,
    version: int | str,
    *,
    host: str | None = None,
    profile: str | None = None,
    auth: DatabricksAuth | None = None,
) -> WorkspaceModel:
    """Read registered model ``name`` at ``version`` from its workspace's optimization-info API (module docstring):
    its architecture from the catalog (checked first: a model it does not know cannot be planned, whatever the
    workspace says), and for a tokens/s band the real chunk size (and DBUs when given)."""
    architecture = architecture_of_entity(name, f"registered model {name!r}", served=False)
    if auth is None:
        auth = databricks_auth(host, profile)
    version = str(version)
    chunk, dbus = _optimization_info(
        auth, name, version, need_chunk=False, what=f"registered model {name!r} version {version}"
    )
    if chunk is None and ARCHITECTURES[architecture].provisioning == "tokens_band":
        raise EndpointError(
            f"the optimization info of {name} version {version} has no throughput_chunk_size, but "
            f"{architecture} is sized in tokens/s chunks"
        )
    return WorkspaceModel(
        host=public_url(auth.host or ""),
        read_on=datetime.datetime.now(datetime.UTC).date().isoformat(),
        auth_type=auth.auth_type,
        entity_name=name,
        entity_version=version,
        architecture=architecture,
        throughput_chunk_size=chunk,
        dbus=dbus,
    )
