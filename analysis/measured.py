"""A measured SLO capacity to plan from: a run's highest SLO-compliant throughput (with its interval) in tokens/s,
against the band of the endpoint it ran on (:func:`measured_from_run`); a simulated run's band is rebuilt from its
settings (:func:`simulated_band`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.capacity import CapacityResult, capacity_from_run
from analysis.frame import RunData
from analysis.goodput import class_slos
from loadtest.errors import ConfigError
from loadtest.model.catalog import check_architecture
from loadtest.model.predict import MODEL_UNIT_MIX, reference_tokens_per_s
from loadtest.model.serving import ServingConfig
from loadtest.sim.config import SimConfig
from loadtest.spec.simulator import SimSettings

__all__ = ["Measured", "mean_mix", "measured_from_run", "simulated_band"]


@dataclass(frozen=True, slots=True)
class Measured:
    """A measured SLO capacity for one architecture: tokens/s meeting the SLOs at the user's mix on an endpoint
    whose band was ``band_tokens_per_s`` (nominal), with a relative 95 % interval (``None``: no interval, e.g. too
    few requests for the percentile's bound). ``lower_bound``: every tested stage met the SLOs, so the capacity is
    at least this. ``limit_detail``: what bound the run's capacity (a quota or the server, and why)."""

    slo_tokens_per_s: float
    band_tokens_per_s: float
    relative_ci: float | None = 0.05
    run: str | None = None
    limit_detail: str | None = None
    lower_bound: bool = False
    mix: tuple[int, int] | None = None  # the run's mean (input, output) tokens per request
    slos: str | None = None  # the run's SLOs, as text


def mean_mix(data: RunData) -> tuple[float, float]:
    """The run's mix: mean input and output tokens of its successful requests with both counts."""
    records = data.records  # two columns, not a copy of the frame's rows (every column of a big run)
    prompt = records["prompt_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    output = records["output_tokens"].to_numpy(dtype="float64", na_value=np.nan)
    both = records["ok"].to_numpy(dtype=bool) & ~np.isnan(prompt) & ~np.isnan(output)
    if not both.any():
        raise ConfigError(f"{data.run_dir} has no successful request with usage counts")
    return float(pd.Series(prompt[both]).mean()), float(pd.Series(output[both]).mean())


def simulated_band(sim: SimSettings) -> float:
    """Nominal tokens/s of the simulated endpoint a run measured (its sizing settings,
    :data:`loadtest.spec.simulator.SIZING_KEYS`): its PT band, or (model units) its replicas times one replica's
    tokens/s at the model-unit reference mix."""
    if sim.value("slots") is not None:
        raise ConfigError(
            "that run measured a fixed-slots simulator (a queueing model, not an architecture on a band): "
            "plan from a run of the continuous-batching model"
        )
    try:
        config = SimConfig(**sim.sizing())
        band = config.band()
        replicas = config.replica_count
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"the run's simulator settings are not usable: {exc}") from None
    if config.mode == "ppt":
        raise ConfigError(
            "that run measured a pay-per-token endpoint (its quotas), not a provisioned band: plan from a PT run"
        )
    if band is not None:
        return float(band[1])
    serving = ServingConfig(config.deployment(), max_batch=config.max_batch)
    return replicas * reference_tokens_per_s(serving, MODEL_UNIT_MIX)


def measured_from_run(
    data: RunData,
    architecture: str | None = None,
    band_tokens_per_s: float | None = None,
    *,
    capacity: CapacityResult | None = None,
) -> tuple[str, Measured]:
    """``(architecture, Measured)`` from a run: its highest SLO-compliant req/s (:func:`capacity_from_run`, with
    the 95 % CI) times the mean input + output tokens of its successful requests, against the band it ran on.

    A simulator run knows both its architecture and its band (``manifest.simulator``); a run against a
    real endpoint needs them given: the architecture served and its provisioned tokens/s (``max`` of the band).
    ``capacity``: the run's :func:`capacity_from_run`, when the caller has it already.
    """
    simulated = data.manifest.simulator
    sim = simulated.settings if simulated is not None else None
    if architecture is None and sim is not None:
        architecture = str(sim.value("architecture"))
    arch = architecture
    if arch is None:
        raise ConfigError(
            f"{data.run_dir} ran against an endpoint: give the architecture it served (--run-arch)"
        )
    check_architecture(arch, "--run-arch" if architecture is not None else str(data.run_dir))
    if band_tokens_per_s is None:
        if sim is None:
            raise ConfigError(
                f"{data.run_dir} ran against an endpoint: give its provisioned tokens/s (--run-band)"
            )
        given = sim if sim.architecture is not None else dataclasses.replace(sim, architecture=arch)
        band_tokens_per_s = simulated_band(given)
    if band_tokens_per_s <= 0:
        raise ConfigError("the measured endpoint's band must be > 0 tokens/s")
    cap = capacity if capacity is not None else capacity_from_run(data)
    if cap.max_rps is None:
        raise ConfigError(f"{data.run_dir}: {cap.basis}; there is no SLO-compliant throughput to plan from")
    mix = mean_mix(data)
    lo, hi = cap.max_rps_ci
    rel = None
    if lo is not None and hi is not None:
        rel = max(cap.max_rps - lo, hi - cap.max_rps) / cap.max_rps
    limit = cap.limit_detail if cap.limit is not None else "none reached in the run"
    return arch, Measured(
        slo_tokens_per_s=cap.max_rps * (mix[0] + mix[1]),
        band_tokens_per_s=band_tokens_per_s,
        relative_ci=rel,
        run=data.run_dir.name,
        limit_detail=limit,
        lower_bound=all(point.meets() for point in cap.points),
        mix=(round(mix[0]), round(mix[1])),
        slos="; ".join(
            f"{cls}: {_slo_text(slo)}" for cls, slo in class_slos(data.manifest.spec.request_classes).items()
        )
        or None,
    )


def _slo_text(slo: Mapping[str, float]) -> str:
    return ", ".join(f"{k} ≥ {v:g}" if k == "attainment" else f"{k} ≤ {v:g} s" for k, v in slo.items())
