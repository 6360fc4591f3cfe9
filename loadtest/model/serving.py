"""What a served endpoint is, for the model: ``replicas`` data-parallel copies of a deployment, each batching up to
``max_batch`` sequences, with an optional step-time jitter. Used by the simulator's batching model
(:mod:`loadtest.sim.batching`), the closed-loop predictions (:mod:`loadtest.model.predict`) and the planner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loadtest.model.roofline import Deployment

__all__ = ["Jitter", "ServingConfig"]

Jitter = Literal["lognormal", "normal"]


@dataclass(frozen=True, slots=True)
class ServingConfig:
    """A simulated endpoint: ``replicas`` data-parallel copies of ``deployment``, each batching up to ``max_batch``."""

    deployment: Deployment
    max_batch: int = 256
    replicas: int = 1
    seed: int = 0
    jitter_cv: float = 0.0
    jitter: Jitter = "lognormal"

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.replicas < 1:
            raise ValueError("max_batch and replicas must be >= 1")
        if not 0.0 <= self.jitter_cv <= 1.0:
            raise ValueError("jitter_cv must be within [0, 1]")
        if self.jitter not in ("lognormal", "normal"):
            raise ValueError(f"jitter must be lognormal or normal, got {self.jitter!r}")
