"""A one-request preflight over httpx: is the endpoint there, and does it speak the OpenAI protocol?

It goes through the same executor as the load path, so a probe and a load request are classified the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from loadtest.client.clock import EpochClock
from loadtest.client.execute import RecordContext, execute_request
from loadtest.client.httpx_transport import HttpxTransport, default_timeout
from loadtest.client.protocol import EndpointSpec, RequestClass, RequestKind, build_request
from loadtest.client.records import RequestRecord
from loadtest.client.scrub import public_url
from loadtest.errors import EndpointError

__all__ = ["first_model_id", "preflight", "probe"]


def probe(
    endpoint: EndpointSpec,
    kind: RequestKind,
    prompt: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float = 60.0,
    extra_body: Mapping[str, object] | None = None,
) -> RequestRecord:
    """Send one non-streamed request of ``kind`` carrying ``prompt`` and asking for 1 output token; its record
    (``prompt_tokens``: what the server counted, from its usage)."""
    probe_cls = RequestClass(
        name="preflight",
        kind=kind,
        output_tokens=1,
        stream=False,
        ignore_eos=False,
        extra_body=dict(extra_body or {}),
    )
    request = build_request(endpoint, probe_cls, prompt)
    ctx = RecordContext(run_id="preflight", stage="preflight", endpoint=endpoint.name, worker="cli")
    with httpx.Client(timeout=default_timeout(connect_s=min(10.0, timeout_s), read_s=timeout_s)) as client:
        return execute_request(
            HttpxTransport(client),
            request,
            headers,
            EpochClock(),
            ctx,
            seq=0,
            scheduled_at=0.0,
            emit=lambda _r: None,
        )


def preflight(
    endpoint: EndpointSpec, cls: RequestClass, headers: Mapping[str, str], *, timeout_s: float = 60.0
) -> RequestRecord:
    """Send one small request like ``cls`` (non-streamed, 1 output token). Raise :class:`EndpointError` with one
    readable line when the endpoint cannot be used; return the record otherwise (429 is acceptable: a quota)."""
    record = probe(endpoint, cls.kind, "Say OK.", headers, timeout_s=timeout_s)
    url = public_url(endpoint.url_for(cls.kind))
    cls_ = record.error_class
    if cls_ is None or cls_ == "rate_limited":
        return record
    detail = record.error_detail or ""
    if cls_ in ("connection", "timeout"):
        raise EndpointError(f"cannot reach {url}: {detail}")
    if record.status in (401, 403):
        raise EndpointError(f"{url} rejected the credentials (HTTP {record.status}); check --api-key-env")
    if record.status == 404 and endpoint.api == "databricks":
        raise EndpointError(
            f"no serving endpoint named {endpoint.model!r} at {public_url(endpoint.base_url)} (HTTP 404"
            + (f": {detail.removeprefix('HTTP 404: ')}" if detail else "")
            + "); check the name on the workspace's Serving page or with `databricks serving-endpoints list`"
        )
    if record.status == 404:
        raise EndpointError(
            f"no OpenAI-compatible API at {url} (HTTP 404); --endpoint is the base URL before "
            "/chat/completions, e.g. http://127.0.0.1:8000/v1"
        )
    if cls_ == "protocol":
        raise EndpointError(f"{url} does not answer like an OpenAI-compatible server: {detail}")
    raise EndpointError(f"{url} failed the preflight request: {detail}")


def first_model_id(base_url: str, headers: Mapping[str, str]) -> str | None:
    """The first model id listed at ``{base_url}/models``, or None."""
    try:
        with httpx.Client(timeout=10.0) as client:
            response = client.get(base_url.rstrip("/") + "/models", headers=dict(headers))
            data = response.json().get("data") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        model = data[0].get("id")
        return str(model) if model else None
    return None
