"""A serving engine's own metrics: one scrape of a Prometheus text endpoint, parsed and mapped to the toolkit's names.

The server says what the client cannot see — how many requests wait in its queue, how many run in its batch, how
full its KV cache is, whether it preempts, how many tokens it counted. Each server kind names these differently;
:data:`MAPPINGS` maps them to one set of names (:data:`METRICS`, defined in docs/metrics.md, "Server metrics").

Parsing is ``prometheus_client``'s text parser (``text_string_to_metric_families``): it handles the exposition
format's escaping, label quoting, ``+Inf`` / ``NaN``, histogram and summary series, comments and blank lines, and
it normalises a counter's sample name to end in ``_total`` (llama.cpp's ``llamacpp:n_tokens_max`` counter is
yielded as ``llamacpp:n_tokens_max_total``; TGI's ``tgi_request_success`` as ``tgi_request_success_total``) — the
rules a hand-written regex gets wrong on the first server that quotes a ``}`` in a label (docs/server-metrics.md).

Series of one metric are combined across their labels (engines, tensor-parallel ranks, replicas, served entities)
by summing, except a usage share, which is averaged (:attr:`ServerMetric.combine`). ``_created`` series are ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from loadtest.client.scrub import redact

__all__ = [
    "KINDS",
    "MAPPINGS",
    "METRICS",
    "MetricsTextError",
    "Scrape",
    "ServerMetric",
    "decode_body",
    "detect_kind",
    "map_samples",
    "parse_exposition",
    "read_metrics",
    "scrape_once",
]


@dataclass(frozen=True, slots=True)
class ServerMetric:
    """One of the toolkit's server metrics: a ``gauge`` (a level at the scrape's instant) or a ``counter`` (a running
    total since the server started; a stage gets its increase and rate)."""

    name: str
    kind: Literal["gauge", "counter"]
    unit: str
    meaning: str
    combine: Literal["sum", "mean"] = "sum"


METRICS: Final[tuple[ServerMetric, ...]] = (
    ServerMetric("waiting", "gauge", "requests", "requests queued in the server, not yet running"),
    ServerMetric("running", "gauge", "requests", "requests in the running batch"),
    ServerMetric("kv_cache_usage", "gauge", "fraction", "share of the KV cache in use (1 = full)", "mean"),
    ServerMetric("preemptions", "counter", "preemptions", "requests preempted (evicted from the batch)"),
    ServerMetric("prompt_tokens", "counter", "tokens", "prompt tokens the server counted"),
    ServerMetric("generation_tokens", "counter", "tokens", "generated tokens the server counted"),
    ServerMetric("requests_last_min", "gauge", "requests", "requests in the last minute (Databricks)"),
    ServerMetric("errors_4xx_last_min", "gauge", "requests", "4xx answers in the last minute (Databricks)"),
    ServerMetric("errors_5xx_last_min", "gauge", "requests", "5xx answers in the last minute (Databricks)"),
    ServerMetric(
        "provisioned_concurrency", "gauge", "requests", "parallel requests provisioned (Databricks)"
    ),
    ServerMetric("cpu_usage_pct", "gauge", "%", "CPU use, mean over replicas (Databricks)", "mean"),
    ServerMetric("mem_usage_pct", "gauge", "%", "memory use, mean over replicas (Databricks)", "mean"),
    ServerMetric("gpu_usage_pct", "gauge", "%", "GPU use, mean over GPUs (Databricks)", "mean"),
    ServerMetric("gpu_mem_usage_pct", "gauge", "%", "GPU memory use, mean over GPUs (Databricks)", "mean"),
)
_BY_NAME: Final = {m.name: m for m in METRICS}

# toolkit name -> alternatives, first present wins; an alternative is a tuple of sample names whose values add up
# (present when its first name is). Names as the parser yields them (a counter's end in _total).
Sources = tuple[tuple[str, ...], ...]
MAPPINGS: Final[Mapping[str, Mapping[str, Sources]]] = {
    "vllm": {
        "waiting": (("vllm:num_requests_waiting",),),
        "running": (("vllm:num_requests_running",),),
        "kv_cache_usage": (("vllm:kv_cache_usage_perc",), ("vllm:gpu_cache_usage_perc",)),
        "preemptions": (("vllm:num_preemptions_total",),),
        "prompt_tokens": (("vllm:prompt_tokens_total",),),
        "generation_tokens": (("vllm:generation_tokens_total",),),
    },
    "sglang": {
        "waiting": (("sglang:num_queue_reqs",),),
        "running": (("sglang:num_running_reqs",),),
        "kv_cache_usage": (("sglang:token_usage",),),
        "prompt_tokens": (("sglang:prompt_tokens_total",),),
        "generation_tokens": (("sglang:generation_tokens_total",),),
    },
    "llamacpp": {
        "waiting": (("llamacpp:requests_deferred",),),
        "running": (("llamacpp:requests_processing",),),
        "kv_cache_usage": (("llamacpp:kv_cache_usage_ratio",),),
        # llama.cpp counts prompt tokens taken from its cache apart; the prompt is both
        "prompt_tokens": (("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total"),),
        "generation_tokens": (("llamacpp:tokens_predicted_total",),),
    },
    "tgi": {
        "waiting": (("tgi_queue_size",),),
        "running": (("tgi_batch_current_size",),),
        # TGI counts tokens only in per-request histograms: their sums are the totals
        "prompt_tokens": (("tgi_request_input_length_sum",),),
        "generation_tokens": (("tgi_request_generated_tokens_sum",),),
    },
    "databricks": {
        "requests_last_min": (("request_count_total",),),
        "errors_4xx_last_min": (("request_4xx_count_total",),),
        "errors_5xx_last_min": (("request_5xx_count_total",),),
        "provisioned_concurrency": (("provisioned_concurrent_requests_total",),),
        "cpu_usage_pct": (("cpu_usage_percentage",),),
        "mem_usage_pct": (("mem_usage_percentage",),),
        "gpu_usage_pct": (("gpu_usage_percentage",),),
        "gpu_mem_usage_pct": (("gpu_mem_usage_percentage",),),
    },
}
KINDS: Final = tuple(MAPPINGS)  # in the order detection tries them: Databricks' generic names last
_PREFIXES: Final = {"vllm": "vllm:", "sglang": "sglang:", "llamacpp": "llamacpp:", "tgi": "tgi_"}


class MetricsTextError(ValueError):
    """The body is not Prometheus text (an HTML page, JSON, garbage)."""


def parse_exposition(text: str) -> dict[str, list[float]]:
    """Every sample of a Prometheus text exposition: its name (as the parser yields it) → its values across label
    sets. ``_created`` series and NaN values are left out. Raises :class:`MetricsTextError` on text that is not
    Prometheus text."""
    out: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.endswith("_created") or math.isnan(sample.value):
                    continue
                out.setdefault(sample.name, []).append(float(sample.value))
    except (
        ValueError,
        TypeError,
        IndexError,
        KeyError,
    ) as exc:  # the parser's ways of saying "not this format"
        raise MetricsTextError(f"not Prometheus text ({redact(str(exc))})") from None
    return out


def detect_kind(samples: Mapping[str, list[float]]) -> str | None:
    """The server kind whose names the samples carry: a prefix (``vllm:``, ``sglang:``, ``llamacpp:``, ``tgi_``)
    first, then Databricks' export names; None when none of :data:`MAPPINGS` is there."""
    for kind, prefix in _PREFIXES.items():
        if any(name.startswith(prefix) for name in samples):
            return kind
    names = {n for alternatives in MAPPINGS["databricks"].values() for alt in alternatives for n in alt}
    return "databricks" if names & samples.keys() else None


def map_samples(samples: Mapping[str, list[float]], kind: str) -> dict[str, float]:
    """The toolkit's metrics from one scrape's samples, for a server ``kind`` (only those the server exposed)."""
    out: dict[str, float] = {}
    for name, alternatives in MAPPINGS[kind].items():
        for alternative in alternatives:
            if alternative[0] not in samples:
                continue
            values = [v for n in alternative for v in samples.get(n, ())]
            if not values:
                break
            if _BY_NAME[name].combine == "mean":
                out[name] = sum(values) / len(values)
            else:
                out[name] = sum(values)
            break
    return out


def decode_body(content: bytes) -> str:
    """The exposition text of a response body: Databricks' ``GET /api/2.0/serving-endpoints/{name}/metrics`` is
    documented as ``{"contents": "<text>"}`` while its SDK reads the body as the text itself — both are taken."""
    stripped = content.lstrip()
    if stripped.startswith(b"{"):
        try:
            doc = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("contents"), str):
            return str(doc["contents"])
    return content.decode("utf-8", errors="replace")


def read_metrics(content: bytes) -> tuple[str | None, dict[str, float]]:
    """(server kind or None, its mapped metrics) of a response body; :class:`MetricsTextError` when not text."""
    samples = parse_exposition(decode_body(content))
    kind = detect_kind(samples)
    return kind, (map_samples(samples, kind) if kind is not None else {})


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape: ``t`` when its answer arrived (epoch seconds), how long it took (wall, and this thread's CPU),
    and either the server kind and its metrics or an ``error`` (one short line, credentials removed)."""

    t: float
    duration_s: float
    cpu_s: float
    kind: str | None = None
    values: Mapping[str, float] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def scrape_once(
    client: httpx.Client,
    url: str,
    headers: Mapping[str, str],
    *,
    clock: Callable[[], float] = time.time,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> Scrape:
    """GET ``url`` once and read it. Never raises for what the server does: a refused connection, a timeout, a non-200
    answer, a body that is not Prometheus text or carries none of the known names is a :class:`Scrape` with an
    ``error``."""
    start, cpu = clock(), cpu_clock()

    def done(
        kind: str | None = None, values: Mapping[str, float] | None = None, error: str | None = None
    ) -> Scrape:
        now = clock()
        return Scrape(now, max(now - start, 0.0), max(cpu_clock() - cpu, 0.0), kind, values, error)

    try:
        response = client.get(url, headers=dict(headers))
    except httpx.TimeoutException:
        return done(error="timed out")
    except httpx.HTTPError as exc:
        return done(error=f"{type(exc).__name__}: {redact(str(exc), headers.values())}")
    if response.status_code != 200:
        return done(error=f"HTTP {response.status_code}")
    try:
        kind, values = read_metrics(response.content)
    except MetricsTextError as exc:
        return done(error=str(exc))
    if kind is None:
        return done(error="no known server metric names (vLLM, SGLang, llama.cpp, TGI, Databricks)")
    return done(kind, values)
