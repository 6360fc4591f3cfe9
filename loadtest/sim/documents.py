"""The simulator's GET documents: the Databricks endpoint, model-optimization info, ``/v1/models``, ``/metrics`` and
the Databricks metrics export.

Rules:

- ``GET /api/2.0/serving-endpoints/{name}``: a tokens-band PT endpoint shows ``min_provisioned_throughput``,
  ``max_provisioned_throughput`` and ``throughput_chunk_size`` on its served entity (:meth:`SimConfig.band`); a
  model-unit architecture shows ``provisioned_model_units`` (65 tokens/s per unit at 3,500 in / 300 out, the
  published 50 MU ≈ 3,250 tok/s point) per replica; a pay-per-token endpoint shows neither, and its quotas under
  ``simulator.quotas``.
  The served entity is ``entity_name`` / ``entity_version`` (default: the architecture's ``system.ai`` model,
  version 1). Every provisioned-throughput served entity (band or model units) shows ``scale_to_zero_enabled``, as
  Databricks' does: true when the simulator models scale to zero (``SimConfig.scale_to_zero``), else false.
- ``GET /api/2.0/serving-endpoints/get-model-optimization-info/{model}/{version}`` answers for the served entity
  (the workspace's one registered model) at versions 1 to ``entity_version`` (or that version alone when it is not
  a number): ``{"optimizable": true, "model_type", "throughput_chunk_size"}`` (no chunk for a model-unit
  architecture), and ``dbus`` when ``dbus_per_chunk`` is set; ``{"optimizable": false}`` with
  ``optimizable=False``. Any other model or version is a 404 (``RESOURCE_DOES_NOT_EXIST``) naming it.
  ``model_type`` is the family: llama, mistral, mixtral, dbrx, mpt, deepseek, gte, bge.
- ``GET /.well-known/databricks-config`` (the host's metadata: ``oidc_endpoint`` ``{base}/oidc``, ``workspace_id``)
  and ``GET /oidc/.well-known/oauth-authorization-server`` (``token_endpoint`` ``{base}/oidc/v1/token``): what the
  Databricks SDK reads before it authenticates, with ``base`` the URL the client used.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from loadtest.model.architectures import Architecture
from loadtest.model.predict import MODEL_UNIT_MIX, MODEL_UNIT_TOKENS_PER_S, reference_chunk_size
from loadtest.model.roofline import Deployment
from loadtest.sim.config import SimConfig

__all__ = [
    "LastMinute",
    "databricks_metrics_text",
    "endpoint_document",
    "host_metadata",
    "metrics_text",
    "model_type",
    "models_document",
    "oidc_discovery",
    "optimization_info",
]

_FAMILIES: Final = ("mixtral", "mistral", "llama", "dbrx", "mpt", "deepseek", "gte", "bge")


def model_type(arch: Architecture) -> str:
    """The ``model_type`` Databricks reports for an architecture's family (``llama`` if none matches)."""
    return next((family for family in _FAMILIES if arch.key.startswith(family)), "llama")


def optimization_info(
    arch: Architecture, chunk: int, dbus: float | None = None, optimizable: bool = True
) -> dict[str, Any]:
    if not optimizable:
        return {"optimizable": False}
    info: dict[str, Any] = {"optimizable": True, "model_type": model_type(arch)}
    if arch.provisioning == "tokens_band":
        info["throughput_chunk_size"] = chunk
        if dbus is not None:
            info["dbus"] = dbus
    return info


def host_metadata(base: str, ident: str) -> dict[str, Any]:
    """``GET /.well-known/databricks-config``: where the workspace's OIDC endpoints are, and its id."""
    return {"oidc_endpoint": f"{base}/oidc", "workspace_id": str(int(ident, 16))}


def oidc_discovery(base: str) -> dict[str, Any]:
    """``GET /oidc/.well-known/oauth-authorization-server``: the workspace's OAuth endpoints."""
    return {
        "issuer": f"{base}/oidc",
        "authorization_endpoint": f"{base}/oidc/v1/authorize",
        "token_endpoint": f"{base}/oidc/v1/token",
    }


def endpoint_document(
    config: SimConfig, deployment: Deployment, chunk: int, ident: str, created: int, name: str
) -> dict[str, Any]:
    """``GET /api/2.0/serving-endpoints/{name}``: the served endpoint under the name it was asked by."""
    arch = deployment.architecture
    replicas = config.replica_count
    entity: dict[str, Any] = {"name": f"{name}-entity", "entity_name": config.served_entity,
                              "entity_version": config.entity_version,
                              "state": {"deployment": "DEPLOYMENT_READY"}}  # fmt: skip
    simulator: dict[str, Any] = {"deployment": deployment.name, "replicas": replicas,
                                 "max_batch": config.max_batch, "mode": config.mode}  # fmt: skip
    band = config.band()
    if config.mode == "ppt":
        limits = config.quota_limits()
        simulator["quotas"] = {} if limits is None else dict(limits.by_type())
    elif arch.provisioning == "model_units":
        units = int(
            reference_chunk_size(deployment, config.max_batch, MODEL_UNIT_MIX) // MODEL_UNIT_TOKENS_PER_S
        )
        entity["provisioned_model_units"] = replicas * max(1, units)
        entity["scale_to_zero_enabled"] = config.scale_to_zero
    elif band is not None:
        entity.update(min_provisioned_throughput=band[0], max_provisioned_throughput=band[1])
        entity.update(throughput_chunk_size=chunk, scale_to_zero_enabled=config.scale_to_zero)
    return {
        "name": name, "id": ident, "creator": "loadtest-sim",
        "creation_timestamp": created * 1000, "last_updated_timestamp": created * 1000,
        "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
        "task": "llm/v1/embeddings" if arch.kind == "embedding" else "llm/v1/chat",
        "config": {"served_entities": [entity], "config_version": 1},
        "simulator": simulator,
    }  # fmt: skip


def models_document(model: str, arch: Architecture, created: int) -> dict[str, Any]:
    entry = {"id": model, "object": "model", "created": created, "owned_by": "loadtest-sim",
             "root": arch.name, "max_model_len": arch.context}  # fmt: skip
    return {"object": "list", "data": [entry]}


def _exposition(rows: list[tuple[str, str, str, float]], label: str) -> bytes:
    lines = [f"# HELP {n} {h}\n# TYPE {n} {t}\n{n}{label} {v}\n" for n, t, h, v in rows]
    return "".join(lines).encode()


def metrics_text(model: str, snapshot: dict[str, Any]) -> bytes:
    """``GET /metrics``: Prometheus text with vLLM's metric names, each what the simulator's model does —
    ``running`` / ``waiting`` its batches and queue (``waiting`` counts the requests held for a cold start too);
    ``vllm:kv_cache_usage_perc`` the KV tokens reserved over the replicas' capacity (absent in the fixed-slots mode
    and for embedding models, which model no KV cache); ``vllm:num_preemptions_total`` 0 — the batching model
    reserves ``prompt + max_tokens`` at admission and never preempts; the token counters what it prefilled and
    emitted; ``vllm:prefix_cache_queries_total`` / ``_hits_total`` the prompt tokens its prefix caches looked up and
    found (only when it models them)."""
    label = f'{{model_name="{model}"}}'
    s = snapshot
    rows: list[tuple[str, str, str, float]] = [
        ("vllm:num_requests_running", "gauge", "Requests in model execution batches.", s["running"]),
        ("vllm:num_requests_waiting", "gauge", "Requests waiting to be processed.", s["waiting"]),
    ]
    capacity = s.get("kv_capacity_tokens")
    if s.get("slots") is None and capacity:
        usage = s["kv_used_tokens"] / (capacity * s["replicas"])
        rows.append(
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", usage)
        )
    rows += [
        ("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.", 0),
        ("vllm:request_success_total", "counter", "Finished requests.", s["requests_completed"]),
        ("vllm:prompt_tokens_total", "counter", "Prefill tokens processed.", s["prompt_tokens"]),
        ("vllm:generation_tokens_total", "counter", "Generation tokens processed.", s["tokens_emitted"]),
        ("sim:requests_received_total", "counter", "HTTP requests received.", s["requests_received"]),
    ]
    prefix = s.get("prefix_cache")
    if prefix:
        rows += [
            ("vllm:prefix_cache_queries_total", "counter",
             "Prefix cache queries, in terms of number of queried tokens.", prefix["queries"]),
            ("vllm:prefix_cache_hits_total", "counter",
             "Prefix cache hits, in terms of number of cached tokens.", prefix["hits"]),
        ]  # fmt: skip
    return _exposition(rows, label)


def databricks_metrics_text(name: str, snapshot: dict[str, Any], last_minute: dict[str, int]) -> bytes:
    """``GET /api/2.0/serving-endpoints/{name}/metrics``: the workspace's export, with Databricks' names and meanings
    — ``request_count_total`` and ``request_4xx_count_total`` / ``request_5xx_count_total`` the answers of the last
    60 seconds (``last_minute``: ``requests``, ``4xx``, ``5xx``), ``provisioned_concurrent_requests_total`` the
    parallel requests the simulated endpoint serves (replicas × max batch, or the slots). CPU, memory and GPU use are
    not modelled, so they are not exported (a real export has them)."""
    label = f'{{served_entity_name="{name}-entity"}}'
    concurrency = snapshot["slots"] or snapshot["replicas"] * snapshot["max_batch"]
    rows: list[tuple[str, str, str, float]] = [
        ("request_count_total", "gauge", "Requests in the last minute.", last_minute["requests"]),
        ("request_4xx_count_total", "gauge", "4xx answers in the last minute.", last_minute["4xx"]),
        ("request_5xx_count_total", "gauge", "5xx answers in the last minute.", last_minute["5xx"]),
        ("provisioned_concurrent_requests_total", "gauge", "Provisioned concurrency.", concurrency),
    ]
    return _exposition(rows, label)


class LastMinute:
    """Answers by status over the last 60 seconds of ``clock``, in one-second buckets (the Databricks export's
    window): ``add`` each answer, ``counts(now)`` → ``{"requests", "4xx", "5xx"}``."""

    WINDOW_S: Final = 60

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [second, answers, 4xx, 5xx], oldest first

    def _trim(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= int(now) - self.WINDOW_S:
            self._buckets.popleft()

    def add(self, now: float, status: int) -> None:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += 400 <= status < 500
        bucket[3] += status >= 500
        self._trim(now)

    def counts(self, now: float) -> dict[str, int]:
        self._trim(now)
        return {
            "requests": sum(b[1] for b in self._buckets),
            "4xx": sum(b[2] for b in self._buckets),
            "5xx": sum(b[3] for b in self._buckets),
        }
