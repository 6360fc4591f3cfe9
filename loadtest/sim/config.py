"""What the simulator simulates: :class:`SimConfig`, and how its endpoint kind resolves to replicas.

Rules:

- **Provisioned throughput** (``mode="pt"``, the default). Capacity is ``replicas`` replicas. A tokens/s band
  sizes it instead: ``chunks=k`` is ``k`` replicas, one per ``throughput_chunk_size`` (one replica's saturated
  tokens/s at the reference mix, :func:`loadtest.model.predict.reference_chunk_size`, unless ``chunk_size``
  overrides the reported value); ``min/max_provisioned_throughput`` (tokens/s, multiples of the chunk; one given
  alone sets both) is ``max / chunk`` replicas (no autoscaling: the endpoint stays scaled to its maximum). Give at
  most one of ``replicas`` (≠ 1), ``chunks`` or the band. Model-unit architectures take ``replicas`` or ``chunks``
  (one unit block per replica), never a tokens/s band.
- **Pay-per-token** (``mode="ppt"``): ``replicas`` of shared capacity behind the quotas ``itpm``, ``otpm``, ``qph``,
  ``qps`` (each optional, :mod:`loadtest.sim.quota`). Quotas need ``mode="ppt"``; a band needs ``mode="pt"``.
- **OAuth** (``oauth_client_id`` with ``oauth_client_secret``): ``POST /oidc/v1/token`` issues tokens valid for
  ``oauth_token_ttl_s`` s, and the protected paths take them (and ``api_token`` if set too).
- **Faults**: ``faults=FaultConfig(...)`` (:mod:`loadtest.sim.faults`), seeded by ``seed`` unless it has its own.
- **Scaling** (``scale_to_zero``, ``scale_out_s``; :mod:`loadtest.sim.scaling`): a provisioned-throughput endpoint
  of the batching model may scale to zero after ``scale_down_after_s`` without requests, and come back
  ``cold_start_s`` after the next one (holding requests meanwhile, or refusing them with 503:
  ``cold_start_reply``); with ``scale_out_s`` it starts at the band's minimum (``min_provisioned_throughput /
  chunk``, at least one replica; one without a band) and grows by one replica every ``scale_out_s`` while requests
  wait, up to its maximum. Without either the endpoint keeps its size.
- **Prefix cache** (``prefix_cache_tokens``; :mod:`loadtest.sim.prefix`): each replica of the batching model keeps
  one, holding its KV cache's capacity (``None``, the default) or this many tokens (at least one 16-token block);
  0 switches it off. The fixed-slots model has none (its times are fixed).
- **Fixed slots** (``slots=N`` with ``prefill_ms`` and ``tpot_ms``): the fixed-slots model
  (:mod:`loadtest.sim.slots`, an M/D/c server) serves instead of continuous batching: one server, so no
  ``replicas``, ``chunks`` or band, and fixed times, so no ``jitter_cv`` (``slowdown`` scales both times). The
  architecture still names the model and bounds the context; pay-per-token quotas and faults apply as before.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

from loadtest.errors import ConfigError
from loadtest.model.catalog import check_architecture, check_gpu, databricks_entity
from loadtest.model.hardware import Dtype
from loadtest.model.predict import reference_chunk_size
from loadtest.model.quota import QuotaLimits
from loadtest.model.roofline import Deployment
from loadtest.model.serving import ServingConfig
from loadtest.sim.batching import Cluster, ServingModel
from loadtest.sim.faults import FaultConfig
from loadtest.sim.prefix import BLOCK_SIZE
from loadtest.sim.scaling import ScalingConfig
from loadtest.sim.slots import SlotPool
from loadtest.spec.simulator import default

__all__ = ["Mode", "SimConfig"]

Mode = Literal["pt", "ppt"]


@functools.lru_cache(maxsize=64)
def _chunk(deployment: Deployment, max_batch: int) -> int:
    return reference_chunk_size(deployment, max_batch)


def _positive(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate and where. ``port=0`` takes a free port; ``model_name=""`` serves the architecture key.

    See the module docstring for ``mode``, the band, quotas, OAuth and faults. The fields named after a setting of
    :class:`loadtest.spec.simulator.SimSettings` take their defaults from it (one definition).
    """

    host: str = "127.0.0.1"
    port: int = 0
    architecture: str = default("architecture")
    gpu: str = default("gpu")
    tp: int = default("tp")
    dtype: Dtype | None = None
    replicas: int = default("replicas")
    max_batch: int = default("max_batch")
    seed: int = 0
    jitter_cv: float = default("jitter_cv")
    slowdown: float = default("slowdown")
    slots: int | None = default("slots")
    prefill_ms: float | None = default("prefill_ms")
    tpot_ms: float | None = default("tpot_ms")
    tokens_per_word: float = default("tokens_per_word")
    template_tokens: int = default("template_tokens")
    prefix_cache_tokens: int | None = default("prefix_cache_tokens")
    api_token: str | None = field(default=None, repr=False)
    # the one Databricks endpoint name served, or None: any name (a workspace has many); "sim-llama" when asked
    endpoint_name: str | None = None
    # the endpoint's served entity (GET /api/2.0/serving-endpoints/{name}); None: the architecture's system.ai name
    entity_name: str | None = None
    entity_version: str = "1"
    # DBUs per chunk-hour the optimization-info API reports as ``dbus`` (None: the field is left out)
    dbus_per_chunk: float | None = None
    # False: the optimization info says {"optimizable": false}, as for a model provisioned throughput cannot serve
    optimizable: bool = True
    model_name: str = ""
    mode: Mode = default("mode")  # noqa: RUF009 (an immutable str from the settings definition)
    itpm: int | None = default("itpm")
    otpm: int | None = default("otpm")
    qph: int | None = default("qph")
    qps: int | None = default("qps")
    chunks: int | None = default("chunks")
    chunk_size: int | None = default("chunk_size")
    min_provisioned_throughput: int | None = default("min_provisioned_throughput")
    max_provisioned_throughput: int | None = default("max_provisioned_throughput")
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    oauth_token_ttl_s: int = 3600
    faults: FaultConfig | None = None
    # behave like an external model (e.g. Bedrock behind Databricks) that rejects stream_options with HTTP 400
    reject_stream_options: bool = default("reject_stream_options")
    scale_to_zero: bool = default("scale_to_zero")
    scale_down_after_s: float = default("scale_down_after_s")
    cold_start_s: float = default("cold_start_s")
    cold_start_reply: str = default("cold_start_reply")
    hold_timeout_s: float = default("hold_timeout_s")
    scale_out_s: float | None = default("scale_out_s")

    def __post_init__(self) -> None:
        check_architecture(self.architecture, "the simulator")
        check_gpu(self.gpu, "the simulator")
        if self.mode not in ("pt", "ppt"):
            raise ConfigError(f"mode must be pt or ppt, got {self.mode!r}")
        for name in ("itpm", "otpm", "qph", "qps", "chunks", "chunk_size", "max_provisioned_throughput"):
            _positive(name, getattr(self, name))
        low = self.min_provisioned_throughput
        if low is not None and (isinstance(low, bool) or not isinstance(low, int) or low < 0):
            raise ConfigError(f"min_provisioned_throughput must be an integer >= 0, got {low!r}")
        _positive("oauth_token_ttl_s", self.oauth_token_ttl_s)
        self._check_prefix_cache()
        if self.entity_name is not None and not self.entity_name.strip():
            raise ConfigError("entity_name must not be empty")
        dbus = self.dbus_per_chunk
        if dbus is not None and (isinstance(dbus, bool) or not isinstance(dbus, int | float) or not dbus > 0):
            raise ConfigError(f"dbus_per_chunk must be a positive number, got {dbus!r}")
        if (self.oauth_client_id is None) != (self.oauth_client_secret is None):
            raise ConfigError("OAuth needs both oauth_client_id and oauth_client_secret")
        if self.oauth_client_id is not None and not (self.oauth_client_id and self.oauth_client_secret):
            raise ConfigError("oauth_client_id and oauth_client_secret must not be empty")
        self._check_slots()
        quotas = any(getattr(self, n) is not None for n in ("itpm", "otpm", "qph", "qps"))
        if quotas and self.mode != "ppt":
            raise ConfigError("itpm, otpm, qph and qps are pay-per-token quotas: they need mode='ppt'")
        if self.mode == "ppt" and (self.chunks is not None or self._band_given):
            raise ConfigError("chunks and provisioned throughput describe a PT endpoint: they need mode='pt'")
        try:
            self.serving_config()
            scaling = self.scaling_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if scaling is not None and (self.mode != "pt" or self.slots is not None):
            raise ConfigError(
                "scale_to_zero and scale_out_s scale a provisioned-throughput endpoint of the batching model: "
                "they need mode='pt' and no slots"
            )

    def _check_prefix_cache(self) -> None:
        size = self.prefix_cache_tokens
        if size is None:
            return
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(
                f"prefix_cache_tokens must be an integer >= 0 (0: no prefix cache), got {size!r}"
            )
        if 0 < size < BLOCK_SIZE:
            raise ConfigError(
                f"prefix_cache_tokens must be 0 (off) or at least {BLOCK_SIZE} (one block), got {size}"
            )
        if size and self.slots is not None:
            raise ConfigError(
                "the fixed-slots model has no prefix cache: prefix_cache_tokens needs the batching model"
            )

    def _check_slots(self) -> None:
        _positive("slots", self.slots)
        for name in ("prefill_ms", "tpot_ms"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ConfigError(f"{name} must be a positive number of milliseconds, got {value!r}")
            if self.slots is None:
                raise ConfigError(f"{name} times the fixed-slots model: give slots too")
        if self.slots is None:
            return
        if self.prefill_ms is None or self.tpot_ms is None:
            raise ConfigError("the fixed-slots model needs prefill_ms and tpot_ms (its fixed times)")
        if self.replicas != 1 or self.chunks is not None or self._band_given:
            raise ConfigError(
                "the fixed-slots model is one server: give slots, not replicas, chunks or a band"
            )
        if self.jitter_cv:
            raise ConfigError("the fixed-slots model has fixed times: jitter_cv needs the batching model")

    def serving_model(self) -> ServingModel:
        """What serves: the fixed-slots pool when ``slots`` is given, else the batching model's replicas."""
        if self.slots is not None and self.prefill_ms is not None and self.tpot_ms is not None:
            scale = self.slowdown / 1000.0
            return SlotPool(self.slots, self.prefill_ms * scale, self.tpot_ms * scale)
        return Cluster(self.serving_config())

    @property
    def _band_given(self) -> bool:
        return self.min_provisioned_throughput is not None or self.max_provisioned_throughput is not None

    @property
    def served_entity(self) -> str:
        """The served entity's ``entity_name``: ``entity_name``, else the architecture's ``system.ai`` model."""
        return self.entity_name or databricks_entity(self.architecture)

    @property
    def served_model_name(self) -> str:
        return self.model_name or self.architecture

    def deployment(self) -> Deployment:
        return Deployment.of(self.architecture, self.gpu, tp=self.tp, dtype=self.dtype)

    @property
    def throughput_chunk_size(self) -> int:
        """Tokens/s of one chunk: ``chunk_size`` if given, else one replica's (:func:`reference_chunk_size`)."""
        return self.chunk_size or _chunk(self.deployment(), self.max_batch)

    def band(self) -> tuple[int, int] | None:
        """``(min, max)`` provisioned tokens/s of a tokens-band PT endpoint; ``None`` for PPT and model units."""
        if self.mode != "pt" or self.deployment().architecture.provisioning != "tokens_band":
            return None
        if self._band_given:
            low = self.min_provisioned_throughput
            high = self.max_provisioned_throughput
            return (low if low is not None else high or 0), (high if high is not None else low or 0)
        full = self.replica_count * self.throughput_chunk_size
        return full, full

    @property
    def replica_count(self) -> int:
        """Engine replicas: from ``chunks``, the band, or ``replicas`` (module docstring)."""
        given = [self.replicas != 1, self.chunks is not None, self._band_given]
        if sum(given) > 1:
            raise ConfigError("give one of replicas, chunks or min/max_provisioned_throughput")
        if self.chunks is not None:
            return self.chunks
        if not self._band_given:
            return self.replicas
        if self.deployment().architecture.provisioning != "tokens_band":
            raise ConfigError(f"{self.architecture} is sized in model units, not a tokens/s band: use chunks")
        chunk = self.throughput_chunk_size
        low = self.min_provisioned_throughput
        high = self.max_provisioned_throughput
        low, high = (low if low is not None else high), (high if high is not None else low)
        assert low is not None and high is not None
        if low > high:
            raise ConfigError(f"min_provisioned_throughput {low} exceeds max_provisioned_throughput {high}")
        if low % chunk or high % chunk or high < chunk:
            raise ConfigError(
                f"the provisioned throughput band {low}-{high} tokens/s must be in multiples of "
                f"throughput_chunk_size {chunk} (at least one chunk)"
            )
        return high // chunk

    def quota_limits(self) -> QuotaLimits | None:
        """The PPT quotas, or ``None`` (PT mode, or PPT without any quota)."""
        if self.mode != "ppt" or not any(
            getattr(self, n) is not None for n in ("itpm", "otpm", "qph", "qps")
        ):
            return None
        return QuotaLimits(self.itpm, self.otpm, self.qph, self.qps)

    def scaling_config(self) -> ScalingConfig | None:
        """How the endpoint scales, or ``None`` when it keeps its size (module docstring)."""
        config = ScalingConfig(
            scale_to_zero=self.scale_to_zero,
            scale_down_after_s=self.scale_down_after_s,
            cold_start_s=self.cold_start_s,
            cold_start_reply=self.cold_start_reply,  # type: ignore[arg-type]
            hold_timeout_s=self.hold_timeout_s,
            scale_out_s=self.scale_out_s,
            min_replicas=min(self._min_replicas(), self.replica_count),
            max_replicas=self.replica_count,
        )
        return config if config.enabled else None

    def _min_replicas(self) -> int:
        """Replicas at the band's minimum (at least one); one without a band."""
        low = self.min_provisioned_throughput
        if low is None or self.band() is None:
            return 1
        return max(1, low // self.throughput_chunk_size)

    def serving_config(self) -> ServingConfig:
        return ServingConfig(
            self.deployment(),
            self.max_batch,
            self.replica_count,
            self.seed,
            self.jitter_cv,
            slowdown=self.slowdown,
            prefix_cache_tokens=self.prefix_cache_tokens,
        )
