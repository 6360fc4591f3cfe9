"""What to send: endpoints, request classes and the HTTP requests built from them.

Pure data and pure functions (no I/O). The same :class:`PreparedRequest` is sent by the Locust load path and by the
httpx control path.

URL rules:

* ``api="openai"``: ``base_url`` is everything before ``/chat/completions`` (e.g. ``http://host:8000/v1``).
* ``api="databricks"``: ``base_url`` is the workspace host (``https://adb-123.azuredatabricks.net``); chat and
  completions go to ``{host}/serving-endpoints/{chat/completions|completions|embeddings}`` with ``model`` = the
  endpoint name, or to ``{host}/serving-endpoints/{name}/invocations`` when ``path_style="invocations"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from loadtest.client.scrub import public_url

__all__ = [
    "EndpointSpec",
    "PreparedRequest",
    "RequestClass",
    "RequestKind",
    "build_request",
]

RequestKind = Literal["chat", "completions", "embeddings"]
_OPENAI_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """Where requests go. ``api_key_env`` names the environment variable holding the token; the token itself is
    never stored in a spec, a manifest or a record."""

    base_url: str
    model: str
    api: Literal["openai", "databricks"] = "openai"
    path_style: Literal["openai", "invocations"] = "openai"
    api_key_env: str | None = None
    include_usage: bool = True
    name: str = "endpoint"
    auth: Literal["none", "env", "databricks"] = "env"
    auth_type: str | None = (
        None  # Databricks: the SDK's auth type the CLI resolved (pat, oauth-m2m, ...); no secret
    )

    def url_for(self, kind: RequestKind) -> str:
        base = self.base_url.rstrip("/")
        if self.api == "databricks":
            if self.path_style == "invocations":
                return f"{base}/serving-endpoints/{self.model}/invocations"
            return f"{base}/serving-endpoints{_OPENAI_PATHS[kind]}"
        return base + _OPENAI_PATHS[kind]

    def public(self) -> dict[str, Any]:
        """What a manifest keeps; ``auth_type`` only when known (a manifest from before it reads back the same)."""
        out = {
            "base_url": public_url(self.base_url),
            "model": self.model,
            "api": self.api,
            "path_style": self.path_style,
            "api_key_env": self.api_key_env,
            "include_usage": self.include_usage,
            "name": self.name,
            "auth": self.auth,
        }
        if self.auth_type is not None:
            out["auth_type"] = self.auth_type
        return out


@dataclass(frozen=True, slots=True)
class RequestClass:
    """One kind of traffic with its own token-length distributions, weight in the mix and SLOs.

    ``prompt_tokens`` and ``output_tokens`` are an integer or a distribution table
    (:func:`loadtest.spec.distributions.parse_length`); each request's sampled output length is sent as ``max_tokens``
    (and as ``min_tokens`` too when ``min_tokens`` is true), with ``ignore_eos`` where the server supports it, so
    output lengths are exact on vLLM, llama.cpp and the simulator.
    """

    name: str = "chat"
    kind: RequestKind = "chat"
    weight: float = 1.0
    prompt_tokens: int | dict[str, Any] = 128
    output_tokens: int | dict[str, Any] = 128
    stream: bool = True
    ignore_eos: bool = True
    min_tokens: bool = False
    temperature: float = 0.0
    shared_prefix_tokens: int = 0
    dataset: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    slo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    url: str
    body: bytes
    stream: bool
    max_tokens: int | None
    request_class: str
    kind: RequestKind
    # the prompt length asked for, in the server's tokens (chat template included); None: a dataset's prompt
    asked_prompt_tokens: int | None = None


def build_request(
    endpoint: EndpointSpec,
    cls: RequestClass,
    prompt: str | list[dict[str, Any]],
    *,
    max_tokens: int | None = None,
    include_usage: bool | None = None,
    asked_prompt_tokens: int | None = None,
) -> PreparedRequest:
    """The JSON body for one request of ``cls`` carrying ``prompt`` (text, or chat messages from a dataset).

    ``max_tokens`` is this request's sampled output length (default: the class's fixed ``output_tokens``).
    """
    if max_tokens is None:
        max_tokens = cls.output_tokens if isinstance(cls.output_tokens, int) else 128
    body: dict[str, Any]
    if cls.kind == "embeddings":
        text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content", "")) for m in prompt)
        body = {"model": endpoint.model, "input": [text]}
        stream = False
        sent_max: int | None = None
    else:
        stream = cls.stream
        sent_max = max_tokens
        body = {"model": endpoint.model, "max_tokens": max_tokens, "temperature": cls.temperature}
        if cls.kind == "chat":
            body["messages"] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        else:
            body["prompt"] = (
                prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)
            )
        if cls.stream:
            body["stream"] = True
            usage = endpoint.include_usage if include_usage is None else include_usage
            if usage:
                body["stream_options"] = {"include_usage": True}
        if cls.ignore_eos:
            body["ignore_eos"] = True
        if cls.min_tokens:
            body["min_tokens"] = max_tokens
        body.update(cls.extra_body)
    return PreparedRequest(
        url=endpoint.url_for(cls.kind),
        body=orjson.dumps(body),
        stream=stream,
        max_tokens=sent_max,
        request_class=cls.name,
        kind=cls.kind,
        asked_prompt_tokens=asked_prompt_tokens,
    )
