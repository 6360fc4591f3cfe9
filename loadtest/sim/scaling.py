"""Scale-to-zero and scale-out of a provisioned endpoint, as Databricks Model Serving describes them
(docs/cold-start.md has the sources). Pure: no I/O; the clock is injected (``Autoscaler(config, clock)``), so tests
need no sleeps. :class:`loadtest.sim.app.App` drives it with the event loop's timers.

Rules (times in seconds of the injected clock):

- **Replicas.** The endpoint has between ``min_replicas`` (at least 1) and ``max_replicas`` replicas taking
  requests, or none when it has scaled to zero. It starts warm: ``max_replicas`` without autoscaling
  (``scale_out_s=None``: a fixed size, what the simulator always did), ``min_replicas`` with it.
- **Activity.** A model request arriving, finishing or being dropped is activity (:meth:`Autoscaler.arrive`,
  :meth:`Autoscaler.touch`), and so is any moment a request is outstanding, and replicas coming up.
- **Scale-down.** ``scale_down_after_s`` after the last activity, with no request outstanding, the endpoint scales
  down: to zero replicas with ``scale_to_zero`` (Databricks: "after 30 minutes of inactivity"), else (autoscaling)
  to ``min_replicas``. A scale-out in progress is called off.
- **Cold start.** A request arriving at zero replicas starts a scale-up that takes ``cold_start_s``; then the
  endpoint has the replicas it starts warm with. Until then each arriving request is held (``cold_start_reply =
  "hold"``, what Databricks does: the request waits, and may time out on the client) or refused at once with 503
  and ``Retry-After`` (``"503"``, what some gateways do). The holding — and the 504 of a request held longer than
  ``hold_timeout_s`` — is the server's business (:mod:`loadtest.sim.app`); this model says which.
- **Scale-out.** With ``scale_out_s`` set, while more requests are outstanding than the replicas taking requests can
  batch (``outstanding > replicas × per_replica``, :meth:`Autoscaler.demand`), one more replica starts; it takes
  requests ``scale_out_s`` later, and the next one starts then if the demand is still there: capacity grows by one
  replica every ``scale_out_s`` up to ``max_replicas``. A new replica takes its share of the requests queued on the
  others (the endpoint has one queue: :meth:`loadtest.sim.batching.Cluster.rebalance`); new requests go to the least
  loaded replica.

:attr:`Autoscaler.history` keeps every change of the replica count (``(time, replicas)``) for ``/sim/stats``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from loadtest.spec.simulator import default

__all__ = ["COLD_START_REPLIES", "Admission", "Autoscaler", "ColdStartReply", "ScalingConfig"]

ColdStartReply = Literal["hold", "503"]
COLD_START_REPLIES: Final[tuple[ColdStartReply, ...]] = ("hold", "503")
Admission = Literal["serve", "hold", "refuse"]


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    """How the endpoint scales (module docstring). The defaults are Databricks' documented figures where there is
    one: 30 min of inactivity before zero, 10–20 s from zero (15 s), 597 s server-side timeout."""

    scale_to_zero: bool = default("scale_to_zero")
    scale_down_after_s: float = default("scale_down_after_s")
    cold_start_s: float = default("cold_start_s")
    cold_start_reply: ColdStartReply = default("cold_start_reply")  # noqa: RUF009 (an immutable str)
    hold_timeout_s: float = default("hold_timeout_s")
    scale_out_s: float | None = default("scale_out_s")
    min_replicas: int = 1
    max_replicas: int = 1

    def __post_init__(self) -> None:
        for name in ("scale_down_after_s", "cold_start_s", "hold_timeout_s", "scale_out_s"):
            value = getattr(self, name)
            if value is None and name == "scale_out_s":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.cold_start_reply not in COLD_START_REPLIES:
            raise ValueError(f"cold_start_reply must be hold or 503, got {self.cold_start_reply!r}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"replicas must satisfy 1 <= min ({self.min_replicas}) <= max ({self.max_replicas})"
            )

    @property
    def enabled(self) -> bool:
        """Whether the endpoint ever changes size."""
        return self.scale_to_zero or self.scale_out_s is not None

    @property
    def warm_replicas(self) -> int:
        """Replicas at the start, and after a scale-up from zero."""
        return self.max_replicas if self.scale_out_s is None else self.min_replicas

    @property
    def floor(self) -> int:
        """Replicas after a scale-down."""
        return 0 if self.scale_to_zero else self.warm_replicas


class Autoscaler:
    """The endpoint's replica count over time (module docstring). ``clock`` returns seconds."""

    __slots__ = (
        "_clock",
        "_last_activity",
        "_pending",
        "_ready_at",
        "config",
        "counts",
        "history",
        "replicas",
    )

    def __init__(self, config: ScalingConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        now = clock()
        self.replicas = config.warm_replicas
        self._last_activity = now
        self._ready_at: float | None = None  # when the replicas being started take requests
        self._pending = 0  # how many replicas that is
        self.history: list[tuple[float, int]] = [(now, self.replicas)]
        self.counts = {"scale_ups_from_zero": 0, "scale_outs": 0, "scale_downs": 0}

    @property
    def cold(self) -> bool:
        """No replica takes requests (scaled to zero, or starting from zero)."""
        return self.replicas == 0

    @property
    def starting(self) -> bool:
        return self._ready_at is not None

    def arrive(self) -> Admission:
        """A model request arrives: ``serve`` it, ``hold`` it until :meth:`advance` brings a replica up, or
        ``refuse`` it (503 with :meth:`retry_after_s`). At zero it starts the cold start."""
        now = self._clock()
        self._last_activity = now
        if self.replicas:
            return "serve"
        if self._ready_at is None:
            self._ready_at = now + self.config.cold_start_s
            self._pending = self.config.warm_replicas
            self.counts["scale_ups_from_zero"] += 1
        return "hold" if self.config.cold_start_reply == "hold" else "refuse"

    def touch(self) -> None:
        """A request finished or was dropped: the endpoint was active now."""
        self._last_activity = self._clock()

    def retry_after_s(self) -> int:
        """Whole seconds until the replicas being started take requests (at least 1): a 503's ``Retry-After``."""
        if self._ready_at is None:
            return 1
        return max(1, math.ceil(self._ready_at - self._clock() - 1e-9))

    def demand(self, outstanding: int, per_replica: int) -> None:
        """``outstanding`` requests (queued or running); each replica batches ``per_replica``: start one more
        replica when they do not fit and the endpoint may grow (module docstring)."""
        step = self.config.scale_out_s
        if (
            step is None
            or self._ready_at is not None
            or not self.replicas
            or self.replicas >= self.config.max_replicas
            or outstanding <= self.replicas * per_replica
        ):
            return
        self._ready_at = self._clock() + step
        self._pending = self.replicas + 1
        self.counts["scale_outs"] += 1

    def due(self) -> float | None:
        """When :meth:`advance` next has something to do: replicas become ready, or the endpoint may scale down."""
        times = []
        if self._ready_at is not None:
            times.append(self._ready_at)
        if self.replicas > self.config.floor or (self._ready_at is not None and self.replicas):
            times.append(self._last_activity + self.config.scale_down_after_s)
        return min(times) if times else None

    def advance(self, outstanding: int) -> int:
        """Apply what is due now (``outstanding``: requests queued or running, which keep the endpoint up);
        returns the replica count."""
        now = self._clock()
        if self._ready_at is not None and now >= self._ready_at:
            self._ready_at = None
            self._last_activity = max(self._last_activity, now)  # new replicas stay up a full idle period
            self._set(now, self._pending)
        if now >= self._last_activity + self.config.scale_down_after_s and self.replicas:
            if outstanding:
                self._last_activity = now  # busy is not idle: the endpoint was active until now
            elif self.replicas > self.config.floor or self._ready_at is not None:
                self._ready_at = None  # a scale-out in progress is called off
                if self.replicas > self.config.floor:
                    self.counts["scale_downs"] += 1
                    self._set(now, self.config.floor)
        return self.replicas

    def _set(self, now: float, replicas: int) -> None:
        self.replicas = replicas
        self.history.append((now, replicas))
