"""The embedded simulator: an OpenAI/Databricks-compatible HTTP endpoint backed by a continuous-batching engine
model whose behaviour is known exactly (:func:`predict_closed_loop`).

Importing this package starts nothing and pulls in no third-party library but orjson.
"""

from __future__ import annotations

from loadtest.sim.engine import Cluster, EngineConfig, EngineRequest, Replica, StepPlan, TokenEvent
from loadtest.sim.predict import (
    Prediction,
    feasible_batch,
    predict_closed_loop,
    reference_chunk_size,
    saturation,
)
from loadtest.sim.server import SimConfig, SimServer, run_sim_foreground

__all__ = [
    "Cluster",
    "EngineConfig",
    "EngineRequest",
    "Prediction",
    "Replica",
    "SimConfig",
    "SimServer",
    "StepPlan",
    "TokenEvent",
    "feasible_batch",
    "predict_closed_loop",
    "reference_chunk_size",
    "run_sim_foreground",
    "saturation",
]
