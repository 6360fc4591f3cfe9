"""The embedded simulator: an OpenAI/Databricks-compatible HTTP endpoint backed by a continuous-batching model
(:mod:`loadtest.sim.batching`) whose behaviour is known exactly (:func:`loadtest.model.predict.predict_closed_loop`).

Importing this package starts nothing and pulls in no third-party library but orjson.
"""

from __future__ import annotations

from loadtest.sim.batching import BatchRequest, Cluster, Replica, StepPlan, TokenEvent
from loadtest.sim.faults import FAULT_KINDS, FaultConfig
from loadtest.sim.server import SimConfig, SimServer, run_sim_foreground

__all__ = [
    "FAULT_KINDS",
    "BatchRequest",
    "Cluster",
    "FaultConfig",
    "Replica",
    "SimConfig",
    "SimServer",
    "StepPlan",
    "TokenEvent",
    "run_sim_foreground",
]
