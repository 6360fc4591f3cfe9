"""``loadtest sim``: the simulated endpoint in the foreground (see :mod:`loadtest.sim`)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from loadtest.errors import ConfigError
from loadtest.spec.simulator import default

__all__ = ["sim"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8000,
    show_default=True,
    help="Port (0: any free port).",
)
@click.option("--architecture", default=default("architecture"), show_default=True)
@click.option("--gpu", default=default("gpu"), show_default=True)
@click.option(
    "--tp",
    type=click.IntRange(min=0),
    default=default("tp"),
    show_default=True,
    help="Tensor parallel (0: auto).",
)
@click.option("--replicas", type=click.IntRange(min=1), default=default("replicas"), show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=default("max_batch"), show_default=True)
@click.option("--jitter-cv", type=click.FloatRange(0.0, 1.0), default=default("jitter_cv"), show_default=True)
@click.option(
    "--slowdown",
    type=click.FloatRange(min=0.1, max=100.0),
    default=default("slowdown"),
    show_default=True,
    help="Every step takes this factor longer (1.2: 20 % slower per token), to test a gate.",
)
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    default=default("slots"),
    help="Fixed-slots model instead of continuous batching: at most N requests at once, one FIFO queue, fixed "
    "times (an M/D/c server). Needs --prefill-ms and --tpot-ms.",
)
@click.option(
    "--prefill-ms",
    type=click.FloatRange(min=0.0, min_open=True),
    default=default("prefill_ms"),
    help="Fixed-slots model: milliseconds from taking a slot to the first token.",
)
@click.option(
    "--tpot-ms",
    type=click.FloatRange(min=0.0, min_open=True),
    default=default("tpot_ms"),
    help="Fixed-slots model: milliseconds between tokens after the first.",
)
@click.option(
    "--tokens-per-word",
    type=click.FloatRange(min=0.1, max=10.0),
    default=default("tokens_per_word"),
    show_default=True,
    help="Count each prompt word as this many tokens (rounded over the prompt), like a real tokenizer.",
)
@click.option(
    "--template-tokens",
    type=click.IntRange(min=0),
    default=default("template_tokens"),
    show_default=True,
    help="Add this many prompt tokens to every chat request, like a chat template.",
)
@click.option(
    "--prefix-cache-tokens",
    type=click.IntRange(min=0),
    default=default("prefix_cache_tokens"),
    help="Tokens each replica's prefix cache holds, in 16-token blocks (default: its whole KV cache, as vLLM's "
    "automatic prefix caching); 0 switches it off.",
)
@click.option(
    "--reject-stream-options",
    is_flag=True,
    help="Answer 400 to stream_options, as some external models behind Databricks do.",
)
@click.option(
    "--scale-to-zero",
    is_flag=True,
    help="Scale to zero replicas after --scale-down-after-s without requests; the next request waits for a cold "
    "start (docs/cold-start.md).",
)
@click.option(
    "--scale-down-after-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=default("scale_down_after_s"),
    show_default=True,
    help="Seconds without requests before the endpoint scales down (Databricks: 30 minutes).",
)
@click.option(
    "--cold-start-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=default("cold_start_s"),
    show_default=True,
    help="Seconds from the first request at zero replicas until replicas serve (Databricks: usually 10-20).",
)
@click.option(
    "--cold-start-reply",
    type=click.Choice(["hold", "503"]),
    default=default("cold_start_reply"),
    show_default=True,
    help="What a request gets meanwhile: held until a replica is up (Databricks), or 503 with Retry-After.",
)
@click.option(
    "--hold-timeout-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=default("hold_timeout_s"),
    show_default=True,
    help="A request held longer than this gets 504 (Databricks' server-side timeout).",
)
@click.option(
    "--scale-out-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=default("scale_out_s"),
    help="Autoscale: start at the band's minimum and add one replica every N s while requests wait, up to the "
    "maximum.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--api-token-env", metavar="VAR", help="Require 'Authorization: Bearer $VAR' (401 otherwise).")
@click.option(
    "--mode",
    type=click.Choice(["pt", "ppt"]),
    default=default("mode"),
    show_default=True,
    help="Provisioned throughput, or pay-per-token with quotas (429s).",
)
@click.option("--itpm", type=click.IntRange(min=1), default=None, help="PPT: input tokens per minute.")
@click.option(
    "--otpm", type=click.IntRange(min=1), default=None, help="PPT: output tokens per minute (reserved)."
)
@click.option("--qph", type=click.IntRange(min=1), default=None, help="PPT: queries per hour.")
@click.option("--qps", type=click.IntRange(min=1), default=None, help="PPT: queries per second.")
@click.option("--chunks", type=click.IntRange(min=1), default=None, help="PT band of N chunks (N replicas).")
@click.option(
    "--chunk-size", type=click.IntRange(min=1), default=None, help="Reported throughput_chunk_size."
)
@click.option(
    "--min-provisioned-throughput", type=click.IntRange(min=0), default=None, help="PT band, tokens/s."
)
@click.option(
    "--max-provisioned-throughput", type=click.IntRange(min=1), default=None, help="PT band, tokens/s."
)
@click.option(
    "--entity-name",
    default=None,
    help="The served entity GET /api/2.0/serving-endpoints/{name} shows (default: the architecture's system.ai "
    "model, e.g. system.ai.meta_llama_v3_3_70b_instruct).",
)
@click.option("--entity-version", default="1", show_default=True, help="The served entity's version.")
@click.option(
    "--dbus-per-chunk",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="DBUs per chunk-hour the optimization-info API reports as 'dbus' (default: none reported).",
)
@click.option("--oauth-client-id", default=None, help="Serve POST /oidc/v1/token for this client id.")
@click.option("--oauth-secret-env", metavar="VAR", default=None, help="The OAuth client secret's variable.")
@click.option(
    "--token-ttl",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="OAuth token lifetime, s.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=PROB",
    help="Inject a fault per request (repeatable): http_429, http_500, http_503, stream_cut, garbage_line, "
    "stall, error_event.",
)
@click.option(
    "--stall-seconds",
    type=click.FloatRange(min=0.0, min_open=True),
    default=2.0,
    show_default=True,
    help="How long a stall fault pauses a stream.",
)
def sim(**opts: Any) -> None:
    """Serve the simulated OpenAI/Databricks endpoint until Ctrl-C."""
    from loadtest.model.catalog import check_architecture, check_gpu
    from loadtest.sim.config import SimConfig
    from loadtest.sim.faults import FaultConfig
    from loadtest.sim.server import run_sim_foreground

    check_architecture(opts["architecture"], "--architecture")
    check_gpu(opts["gpu"], "--gpu")

    def secret(var: str | None) -> str | None:
        if not var:
            return None
        value = os.environ.get(var)
        if not value:
            raise ConfigError(f"environment variable {var} is not set")
        return value

    oauth_secret = secret(opts["oauth_secret_env"])
    if (opts["oauth_client_id"] is None) != (oauth_secret is None):
        raise ConfigError("OAuth needs both --oauth-client-id and --oauth-secret-env")
    probabilities: dict[str, float] = {}
    for item in opts["faults"]:
        name, sep, value = item.partition("=")
        try:
            probability = float(value) if sep else -1.0
        except ValueError:
            probability = -1.0
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"--fault takes NAME=PROBABILITY with a probability in [0, 1], got {item!r}")
        probabilities[name.strip()] = probability
    try:
        faults = (
            FaultConfig.from_mapping(probabilities, stall_s=opts["stall_seconds"]) if probabilities else None
        )
    except ValueError as exc:
        raise ConfigError(f"--fault: {exc}") from None
    band = {
        k: opts[k]
        for k in ("chunks", "chunk_size", "min_provisioned_throughput", "max_provisioned_throughput")
    }
    config = SimConfig(
        host=opts["host"],
        port=opts["port"],
        architecture=opts["architecture"],
        gpu=opts["gpu"],
        tp=opts["tp"],
        replicas=opts["replicas"],
        max_batch=opts["max_batch"],
        seed=opts["seed"],
        jitter_cv=opts["jitter_cv"],
        slowdown=opts["slowdown"],
        slots=opts["slots"],
        prefill_ms=opts["prefill_ms"],
        tpot_ms=opts["tpot_ms"],
        tokens_per_word=opts["tokens_per_word"],
        template_tokens=opts["template_tokens"],
        prefix_cache_tokens=opts["prefix_cache_tokens"],
        reject_stream_options=opts["reject_stream_options"],
        **{
            k: opts[k]
            for k in (
                "scale_to_zero",
                "scale_down_after_s",
                "cold_start_s",
                "cold_start_reply",
                "hold_timeout_s",
                "scale_out_s",
            )
        },
        api_token=secret(opts["api_token_env"]),
        mode=opts["mode"],
        itpm=opts["itpm"],
        otpm=opts["otpm"],
        qph=opts["qph"],
        qps=opts["qps"],
        oauth_client_id=opts["oauth_client_id"],
        oauth_client_secret=oauth_secret,
        oauth_token_ttl_s=opts["token_ttl"],
        entity_name=opts["entity_name"],
        entity_version=opts["entity_version"],
        dbus_per_chunk=opts["dbus_per_chunk"],
        faults=faults,
        **band,
    )
    run_sim_foreground(config, sys.stdout)
