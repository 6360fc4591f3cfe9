"""The embedded simulator: an OpenAI/Databricks-compatible HTTP endpoint backed by a continuous-batching engine
model whose behaviour is known exactly (:func:`predict_closed_loop`).

Importing this package starts nothing and pulls in no third-party library but orjson.
"""

from __future__ import annotations

from loadtest.sim.engine import Cluster, EngineConfig, EngineRequest, Replica, StepPlan, TokenEvent
from loadtest.sim.faults import FAULT_KINDS, FaultConfig
from loadtest.sim.predict import (
    Prediction,
    feasible_batch,
    predict_closed_loop,
    reference_chunk_size,
    saturation,
)
from loadtest.sim.quota import LIMIT_TYPES, QuotaLimits, ppt_admitted_rate
from loadtest.sim.server import SimConfig, SimServer, run_sim_foreground

__all__ = [
    "FAULT_KINDS",
    "LIMIT_TYPES",
    "Cluster",
    "EngineConfig",
    "EngineRequest",
    "FaultConfig",
    "Prediction",
    "QuotaLimits",
    "Replica",
    "SimConfig",
    "SimServer",
    "StepPlan",
    "TokenEvent",
    "feasible_batch",
    "ppt_admitted_rate",
    "predict_closed_loop",
    "reference_chunk_size",
    "run_sim_foreground",
    "saturation",
]
