"""The embedded simulator: an OpenAI/Databricks-compatible HTTP endpoint backed by a continuous-batching model
(:mod:`loadtest.sim.batching`) whose behaviour is known exactly (:func:`loadtest.model.predict.predict_closed_loop`),
or by the fixed-slots model (:mod:`loadtest.sim.slots`), an M/D/c server whose waiting times queueing theory knows.

Importing this package starts nothing and pulls in no third-party library but orjson. The server
(:class:`SimServer`, :func:`run_sim_foreground`) is imported on first use, so that :mod:`loadtest.sim.config` can
be read (by ``analysis.measured``, to rebuild a simulated run's band) without the asyncio server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loadtest.sim.batching import BatchRequest, Cluster, Replica, StepPlan, TokenEvent
from loadtest.sim.config import SimConfig
from loadtest.sim.faults import FAULT_KINDS, FaultConfig

if TYPE_CHECKING:
    from loadtest.sim.server import SimServer, run_sim_foreground

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


def __getattr__(name: str) -> Any:
    if name in ("SimServer", "run_sim_foreground"):
        from loadtest.sim import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
