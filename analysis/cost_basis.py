"""One cost basis for provisioned throughput: what one increment of an architecture's provisioning — a token band's
chunk or a model unit — stands for in GPUs, and what it costs, so that costs follow the hardware across rows.

* **GPUs per increment** ``g = tokens/s of the increment / tokens/s one GPU of the deployment delivers`` at the
  increment's reference mix (:func:`loadtest.model.predict.reference_tokens_per_s` divided by the tensor-parallel
  size): the model's estimate of the GPU slice the increment stands for.
* **Tokens/s of the increment**: the price table's ``throughput_chunk_size`` / ``model_unit_tokens_per_s`` when it
  gives one; else ESTIMATED — a chunk is one replica's reference tokens/s (:func:`loadtest.model.predict.chunk_of`,
  the simulator's chunk too), a model unit is the GPU slice of the one published model-unit figure (Llama 4 Maverick,
  50 units ≈ 3,250 tokens/s at 3,500 in / 300 out) on this architecture, an assumption stated in the output.
* **From a workspace** (``plan --endpoint`` or ``--registered-model``): a :class:`WorkspaceFacts` for the
  architecture replaces both — the chunk is the workspace's ``throughput_chunk_size`` and its DBUs the workspace's
  ``dbus`` when it gives them (basis ``workspace API``, with where and when in ``PtRate.source``).
* **DBUs per increment-hour**: the table's ``dbu_per_chunk_hour`` / ``dbu_per_model_unit_hour`` when given; else
  ESTIMATED as ``g × DBUs per GPU-hour``, the one GPU-hour basis of the plan (:func:`gpu_hour_basis`).
* **$ per increment-hour** ``= DBUs × usd_per_dbu``; the **implied $ per GPU-hour** ``= $ per hour / g`` is the same
  on every estimated row, and differs only where the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from analysis.prices import PriceBook, PriceEntry
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.predict import (
    MODEL_UNIT_MIX,
    MODEL_UNIT_TOKENS_PER_S,
    REFERENCE_MIX,
    chunk_of,
    reference_tokens_per_s,
)
from loadtest.model.roofline import Deployment
from loadtest.model.serving import ServingConfig

__all__ = [
    "MODEL_UNIT_ANCHOR",
    "GpuHourBasis",
    "PtRate",
    "WorkspaceFacts",
    "gpu_hour_basis",
    "model_unit_gpus",
    "pt_rate",
    "reference_mix",
]

MODEL_UNIT_ANCHOR = "llama-4-maverick"  # the architecture of the one published model-unit figure


def _per_gpu(dep: Deployment, max_batch: int, mix: tuple[int, int]) -> float:
    """Reference tokens/s of one GPU of ``dep``: a replica's saturated tokens/s at ``mix`` over its TP GPUs."""
    return reference_tokens_per_s(ServingConfig(dep, max_batch=max_batch), mix) / dep.tp


def reference_mix(architecture: str) -> tuple[int, int]:
    """The mix an architecture's increments are quoted at: model units at the published point, bands at
    2,048 in / 256 out (embeddings: input only, see :func:`reference_tokens_per_s`)."""
    return MODEL_UNIT_MIX if ARCHITECTURES[architecture].provisioning == "model_units" else REFERENCE_MIX


@dataclass(frozen=True, slots=True)
class GpuHourBasis:
    """DBUs per GPU-hour for every estimated rate of a plan (None: none given, estimated rates are not priced),
    and how it was found."""

    dbu_per_gpu_hour: float | None
    how: str


def gpu_hour_basis(book: PriceBook, gpu: str, max_batch: int) -> GpuHourBasis:
    """The plan's GPU-hour basis: the table's ``dbu_per_gpu_hour``, or the published chunk of ``gpu_hour_from``
    turned into DBUs per GPU-hour by the model's GPU slice for that chunk on ``gpu`` (its native dtype)."""
    if book.dbu_per_gpu_hour is not None:
        return GpuHourBasis(book.dbu_per_gpu_hour, "dbu_per_gpu_hour given in the price table")
    anchor = book.gpu_hour_from
    if anchor is None:
        return GpuHourBasis(
            None, "the price table gives no GPU-hour basis: estimated PT rates are not priced"
        )
    entry = book.entries[anchor]
    chunk, dbu = entry.throughput_chunk_size, entry.dbu_per_chunk_hour
    assert chunk is not None and dbu is not None  # load_prices checks it
    dep = Deployment.of(anchor, gpu)
    per_gpu = _per_gpu(dep, max_batch, reference_mix(anchor))
    share = chunk / per_gpu
    return GpuHourBasis(
        dbu / share,
        f"{anchor}'s published chunk ({dbu:g} DBU/h for {chunk:,.0f} tokens/s), which the model puts at "
        f"{share:.3f} of one {dep.gpu.name} ({per_gpu:,.0f} tokens/s per GPU as {dep.name})",
    )


def model_unit_gpus(gpu: str, max_batch: int) -> float:
    """GPUs one model unit stands for: the published Maverick unit's tokens/s over one GPU's (native dtype)."""
    dep = Deployment.of(MODEL_UNIT_ANCHOR, gpu)
    return MODEL_UNIT_TOKENS_PER_S / _per_gpu(dep, max_batch, MODEL_UNIT_MIX)


Basis = Literal["price table", "estimated", "workspace API"]


@dataclass(frozen=True, slots=True)
class WorkspaceFacts:
    """What a workspace's API said of the endpoint serving one architecture (read by the CLI, plain values):
    its served entity, configured band or units, and the optimization info's chunk size and DBUs. ``endpoint`` is
    None for a registered model read without an endpoint: there is no configured band then."""

    endpoint: str | None
    source: (
        str  # "workspace API, endpoint NAME, YYYY-MM-DD" or "workspace API, model M version V, YYYY-MM-DD"
    )
    entity_name: str
    entity_version: str
    min_provisioned_throughput: int | None = None
    max_provisioned_throughput: int | None = None
    provisioned_model_units: int | None = None
    scale_to_zero_enabled: bool | None = None
    throughput_chunk_size: int | None = None
    dbu_per_chunk_hour: float | None = None

    def configured(self) -> str | None:
        """The endpoint's configured provisioning as a person reads it: ``0–1,940 tok/s`` or ``50 model units``;
        None without an endpoint."""
        if self.endpoint is None:
            return None
        if self.provisioned_model_units is not None:
            return f"{self.provisioned_model_units:,} model units"
        low, high = self.min_provisioned_throughput, self.max_provisioned_throughput
        return f"{low or 0:,}–{high if high is not None else low or 0:,} tok/s"

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "source": self.source,
            "entity_name": self.entity_name,
            "entity_version": self.entity_version,
            "min_provisioned_throughput": self.min_provisioned_throughput,
            "max_provisioned_throughput": self.max_provisioned_throughput,
            "provisioned_model_units": self.provisioned_model_units,
            "scale_to_zero_enabled": self.scale_to_zero_enabled,
            "throughput_chunk_size": self.throughput_chunk_size,
            "dbu_per_chunk_hour": self.dbu_per_chunk_hour,
        }


@dataclass(frozen=True, slots=True)
class PtRate:
    """One provisioning increment of one architecture on its deployment (see the module docstring)."""

    unit: Literal["chunk", "model unit"]
    tokens_per_s: float
    tokens_basis: Basis
    gpus: float
    dbu_per_hour: float | None
    dbu_basis: Basis | None
    usd_per_hour: float | None
    source: str | None = None  # where a workspace API figure came from: "workspace API, endpoint X, <date>"

    @property
    def usd_per_gpu_hour(self) -> float | None:
        return None if self.usd_per_hour is None or self.gpus <= 0 else self.usd_per_hour / self.gpus

    @property
    def estimated(self) -> bool:
        """Is any figure behind the price the model's rather than the table's?"""
        return self.tokens_basis == "estimated" or self.dbu_basis == "estimated"

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "tokens_per_s": self.tokens_per_s,
            "tokens_basis": self.tokens_basis,
            "gpus": self.gpus,
            "dbu_per_hour": self.dbu_per_hour,
            "dbu_basis": self.dbu_basis,
            "usd_per_hour": self.usd_per_hour,
            "usd_per_gpu_hour": self.usd_per_gpu_hour,
            "source": self.source,
        }


def pt_rate(
    dep: Deployment,
    max_batch: int,
    entry: PriceEntry,
    basis: GpuHourBasis,
    usd_per_dbu: float | None,
    unit_gpus: float,
    workspace: WorkspaceFacts | None = None,
) -> PtRate:
    """The increment of ``dep``'s architecture: its tokens/s, GPU slice, DBUs and dollars per hour.
    ``unit_gpus``: :func:`model_unit_gpus` on the plan's GPU; ``workspace``: what the endpoint's workspace said
    (its chunk size and DBUs outrank the price table's)."""
    key = dep.architecture.key
    per_gpu = _per_gpu(dep, max_batch, reference_mix(key))
    tokens_basis: Basis = "price table"
    dbu_basis: Basis | None = "price table"
    if dep.architecture.provisioning == "model_units":
        unit: Literal["chunk", "model unit"] = "model unit"
        tokens = entry.model_unit_tokens_per_s
        if tokens is None:
            tokens, tokens_basis = unit_gpus * per_gpu, "estimated"
        dbu = entry.dbu_per_model_unit_hour
    else:
        unit = "chunk"
        tokens = entry.throughput_chunk_size
        dbu = entry.dbu_per_chunk_hour
        if workspace is not None and workspace.throughput_chunk_size is not None:
            tokens, tokens_basis = float(workspace.throughput_chunk_size), "workspace API"
            if workspace.dbu_per_chunk_hour is not None:
                dbu, dbu_basis = workspace.dbu_per_chunk_hour, "workspace API"
            elif entry.throughput_chunk_size != tokens:
                dbu = None  # the table's DBUs are for its own chunk size
        elif tokens is None:
            tokens, tokens_basis = float(chunk_of(per_gpu * dep.tp)), "estimated"
    gpus = tokens / per_gpu
    if dbu is None:
        dbu_basis = None
        if basis.dbu_per_gpu_hour is not None:
            dbu, dbu_basis = gpus * basis.dbu_per_gpu_hour, "estimated"
    usd = dbu * usd_per_dbu if dbu is not None and usd_per_dbu is not None else None
    source = (
        workspace.source if "workspace API" in (tokens_basis, dbu_basis) and workspace is not None else None
    )
    return PtRate(unit, tokens, tokens_basis, gpus, dbu, dbu_basis, usd, source)
