"""Calibrate the roofline model on a measured run, and predict one replica's capacity for a token mix.

Pure: numpy/scipy only, no I/O. Uses exactly the functions the simulator uses (:mod:`loadtest.model.roofline`,
:func:`loadtest.model.predict.predict_closed_loop` / :func:`~loadtest.model.predict.saturation`), so a calibrated
:class:`~loadtest.model.roofline.Deployment` drops straight into :class:`~loadtest.model.serving.ServingConfig`.

**Fit.** Each observation is a measured steady-state point of a closed-loop sweep (concurrency, prompt and output
tokens, mean TPOT, mean TTFT; e.g. one stage summary). Three parameters are fitted by bounded least squares on
``log(predicted / measured)`` of TPOT and TTFT (``scipy.optimize.least_squares``, trust-region reflective):
a memory-efficiency scale ``s_m`` (MBU ← ``s_m·MBU``), a compute-efficiency scale ``s_c`` (MFU ← ``s_c·MFU``) and the
per-step overhead ``c0``. Bounds: scales in ``[0.2, 1/MBU]`` and ``[0.2, 1/MFU]`` (no more than the hardware peak),
``c0`` in ``[0, 50 ms]``. TTFT is dominated by prefill (compute), TPOT at low concurrency by weight reads (memory)
plus ``c0``, so a sweep over concurrency with at least two prompt lengths identifies all three.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares  # type: ignore[import-untyped]

from analysis.capacity import CapacityResult
from loadtest.model.predict import (
    Resource,
    Start,
    bounding_resource,
    feasible_batch,
    predict_closed_loop,
    saturation,
)
from loadtest.model.roofline import Deployment
from loadtest.model.serving import DEFAULT_MAX_BATCH, ServingConfig

__all__ = [
    "CalibratedDeployment",
    "MixPrediction",
    "Observation",
    "calibrate",
    "calibration_observations",
    "predict_mix",
    "predict_observation",
    "scaled",
]

_MAX_C0_S = 0.05
_MIN_SCALE = 0.2


@dataclass(frozen=True, slots=True)
class Observation:
    """One measured steady-state point: ``concurrency`` closed-loop clients (≈ batch) sending
    ``prompt_tokens``/``output_tokens`` requests, with the measured mean TPOT and TTFT in seconds."""

    concurrency: int
    prompt_tokens: int
    output_tokens: int
    tpot_s: float
    ttft_s: float

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.prompt_tokens < 0 or self.output_tokens < 2:
            raise ValueError("an observation needs concurrency >= 1, prompt >= 0 and output >= 2 tokens")
        if not (self.tpot_s > 0 and self.ttft_s > 0):
            raise ValueError("tpot_s and ttft_s must be > 0")


@dataclass(frozen=True, slots=True)
class CalibratedDeployment:
    """The fitted deployment and how well it fits. ``residuals``: ``log(predicted/measured)`` for TPOT then TTFT of
    each observation, in order."""

    deployment: Deployment
    memory_scale: float
    compute_scale: float
    c0_s: float
    residuals: tuple[float, ...]
    max_batch: int

    @property
    def rms_log_error(self) -> float:
        return math.sqrt(sum(r * r for r in self.residuals) / len(self.residuals)) if self.residuals else 0.0

    @property
    def max_abs_relative_error(self) -> float:
        """Largest ``|predicted/measured − 1|`` over all fitted quantities."""
        return max((abs(math.expm1(r)) for r in self.residuals), default=0.0)


@dataclass(frozen=True, slots=True)
class MixPrediction:
    """Per-replica capacity for one token mix at saturation (identical requests, closed loop at the ceiling).

    ``resource``: what bounds the replica at saturation (:func:`~loadtest.model.predict.bounding_resource`)."""

    max_output_tokens_per_s: float
    max_total_tokens_per_s: float
    requests_per_s: float
    tpot_s_at_saturation: float | None
    ttft_s_unloaded: float
    batch: int
    resource: Resource


def scaled(deployment: Deployment, memory_scale: float, compute_scale: float, c0_s: float) -> Deployment:
    """``deployment`` with MBU × ``memory_scale``, MFU × ``compute_scale`` and ``c0 = c0_s``."""
    gpu = dataclasses.replace(
        deployment.gpu, mbu=deployment.gpu.mbu * memory_scale, mfu=deployment.gpu.mfu * compute_scale
    )
    return dataclasses.replace(deployment, gpu=gpu, c0_s=c0_s)


def predict_observation(
    deployment: Deployment, obs: Observation, max_batch: int = DEFAULT_MAX_BATCH, start: Start = "spread"
) -> tuple[float, float]:
    """(TPOT, TTFT) the simulator's closed-loop prediction gives for ``obs``'s concurrency and mix, with the
    clients' phases laid out as ``start`` says (:func:`~loadtest.model.predict.predict_closed_loop`)."""
    pred = predict_closed_loop(
        ServingConfig(deployment, max_batch=max_batch),
        obs.concurrency,
        obs.prompt_tokens,
        obs.output_tokens,
        start=start,
    )
    assert pred.tpot_s is not None  # output_tokens >= 2
    return pred.tpot_s, pred.ttft_s


def calibrate(
    deployment: Deployment,
    observations: Sequence[Observation],
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    start: Start = "spread",
) -> CalibratedDeployment:
    """Fit ``s_m``, ``s_c`` and ``c0`` to ``observations`` (see the module docstring); start from ``deployment``.

    ``start``: how the measured clients' phases were laid out. A real server's timing noise spreads them
    (``spread``); the deterministic simulator keeps the cohorts a stage's simultaneous start makes (``burst``)."""
    if not observations:
        raise ValueError("calibrate needs at least one observation")
    measured = np.log(np.array([v for o in observations for v in (o.tpot_s, o.ttft_s)], dtype=float))
    gpu = deployment.gpu

    def residuals(x: np.ndarray) -> np.ndarray:
        dep = scaled(deployment, float(x[0]), float(x[1]), float(x[2]))
        pred = [v for o in observations for v in predict_observation(dep, o, max_batch, start)]
        out: np.ndarray = np.log(np.array(pred, dtype=float)) - measured
        return out

    lower = np.array([_MIN_SCALE, _MIN_SCALE, 0.0])
    upper = np.array([1.0 / gpu.mbu, 1.0 / gpu.mfu, _MAX_C0_S])
    x0 = np.clip(np.array([1.0, 1.0, deployment.c0_s]), lower + 1e-9, upper - 1e-9)
    fit = least_squares(
        residuals, x0, bounds=(lower, upper), x_scale=np.array([1.0, 1.0, 0.002]), diff_step=1e-4
    )
    s_m, s_c, c0 = (float(v) for v in fit.x)
    return CalibratedDeployment(
        scaled(deployment, s_m, s_c, c0), s_m, s_c, c0, tuple(float(r) for r in fit.fun), max_batch
    )


def predict_mix(
    deployment: Deployment, prompt_tokens: int, output_tokens: int, max_batch: int = DEFAULT_MAX_BATCH
) -> MixPrediction:
    """Throughput ceiling and latency of one replica for requests of ``prompt_tokens`` in / ``output_tokens`` out:
    :func:`~loadtest.model.predict.saturation` for the ceiling, one client for the unloaded TTFT."""
    config = ServingConfig(deployment, max_batch=max_batch)
    sat = saturation(config, prompt_tokens, output_tokens)
    batch = feasible_batch(config, prompt_tokens, output_tokens)
    return MixPrediction(
        max_output_tokens_per_s=sat.output_tokens_per_s,
        max_total_tokens_per_s=sat.requests_per_s * (prompt_tokens + output_tokens),
        requests_per_s=sat.requests_per_s,
        tpot_s_at_saturation=sat.tpot_s,
        ttft_s_unloaded=predict_closed_loop(config, 1, prompt_tokens, output_tokens).ttft_s,
        batch=batch,
        resource=bounding_resource(config, prompt_tokens, output_tokens),
    )


def calibration_observations(result: CapacityResult) -> list[Observation]:
    """The closed-loop stages of a run (:func:`analysis.capacity.capacity_from_run`) as :class:`Observation` s
    (users, mean input and output tokens, mean TPOT and TTFT of successful requests), to fit the model to the
    endpoint that was measured."""
    out = []
    for p in result.points:
        if None in (p.users, p.prompt_tokens_mean, p.output_tokens_mean, p.tpot_mean, p.ttft_mean):
            continue
        assert p.users is not None and p.prompt_tokens_mean is not None and p.output_tokens_mean is not None
        assert p.tpot_mean is not None and p.ttft_mean is not None
        if p.output_tokens_mean >= 2 and p.tpot_mean > 0 and p.ttft_mean > 0:
            out.append(
                Observation(
                    p.users,
                    round(p.prompt_tokens_mean),
                    round(p.output_tokens_mean),
                    p.tpot_mean,
                    p.ttft_mean,
                )
            )
    return out
