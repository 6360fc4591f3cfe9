"""The complete, serialisable description of one run, handed from the CLI to the Locust engine process.

It holds no secrets: credentials are referenced by environment-variable name only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import orjson

from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.client.scrub import public_url
from loadtest.errors import ConfigError
from loadtest.spec.arrivals import ArrivalProcess, token_rate_label
from loadtest.spec.profile import SHAPES
from loadtest.spec.prompts import PromptCalibration
from loadtest.spec.pyscenario import PythonScenario

__all__ = [
    "DEFAULT_ABORT_AFTER_S",
    "DEFAULT_HEADROOM",
    "DEFAULT_MAX_CONCURRENCY",
    "NO_FLOWS_INSTEAD",
    "NO_FLOWS_PEAK",
    "PlanRequest",
    "RetryPolicy",
    "RunSpec",
    "Stage",
    "SweepPlan",
    "one_peak",
    "parse_abort_after",
    "parse_duration",
    "parse_server_metrics",
]

DEFAULT_MAX_CONCURRENCY: Final[int] = 256  # an open-loop stage's most requests in flight
DEFAULT_HEADROOM: Final[float] = 0.2  # capacity above the forecast peak a plan provisions
DEFAULT_ABORT_AFTER_S: Final[float] = (
    10.0  # a run stops when its endpoint is dead this long (loadtest.engine.health)
)


def parse_duration(text: str | float | int) -> float:
    """``"30s"``, ``"2m"``, ``"1h"``, ``"1m30s"``, ``"500ms"`` or a number of seconds → seconds (float)."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = text.strip().lower()
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        value, num = 0.0, ""
        i = 0
        if not s:
            raise ValueError("empty duration")
        while i < len(s):
            ch = s[i]
            if ch.isdigit() or ch == ".":
                num += ch
                i += 1
                continue
            unit = "ms" if s.startswith("ms", i) else ch
            if unit not in units or not num:
                raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 2m, 1m30s)")
            value += float(num) * units[unit]
            num = ""
            i += len(unit)
        if num:
            value += float(num)
    if value <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return value


def parse_abort_after(text: str | float | int) -> float | None:
    """``--abort-after`` / ``[load] abort_after``: a duration (``"10s"``), or ``"off"`` / ``0`` for never
    (``None``)."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r} (use e.g. 10s, 1m, or off)")
    if (isinstance(text, str) and text.strip().lower() in ("off", "0", "0s")) or (
        isinstance(text, int | float) and text == 0
    ):
        return None
    return parse_duration(text)


def parse_server_metrics(value: object) -> str:
    """``--server-metrics`` / ``[load] server_metrics``: ``auto`` or ``off`` (any case; returned in lower case) or
    an http(s) URL with a host (returned as given, stripped) — what :mod:`loadtest.runner.scrape` takes. A bad value
    is a ``ValueError`` whose message shows it without user-info or query (it may hold a token)."""
    text = value.strip() if isinstance(value, str) else ""
    if text.lower() in ("auto", "off"):
        return text.lower()
    if not text.startswith(("http://", "https://")) or not urlsplit(text).hostname:
        shown = public_url(value) if isinstance(value, str) else value
        raise ValueError(f"must be an http(s) URL, 'auto' or 'off', got {shown!r}")
    return text


StageKind = Literal["concurrency", "rate", "tokens", "idle"]


@dataclass(frozen=True, slots=True)
class Stage:
    """One steady load level. ``label`` is the readable identity used in records, tables and charts.

    * ``concurrency`` — closed loop: ``users`` users, each sends its next request when the last one ends;
    * ``rate`` — open loop: arrivals at ``rate`` requests/s (``arrival`` constant / poisson / gamma with
      ``burstiness``), served by a pool of at most ``max_concurrency`` users;
    * ``tokens`` — open loop at a token rate: ``tokens_per_min`` in total, or ``input_tokens_per_min`` and/or
      ``output_tokens_per_min``; the request rate follows completed requests' usage;
    * ``idle`` — no request at all for ``duration_s`` (an endpoint with scale-to-zero scales down meanwhile); the
      stage after it is a burst after idle, whose cold start ``analysis.coldstart`` measures.
    """

    kind: StageKind
    duration_s: float
    users: int | None = None
    rate: float | None = None
    arrival: str = "poisson"
    burstiness: float = 1.0
    tokens_per_min: float | None = None
    input_tokens_per_min: float | None = None
    output_tokens_per_min: float | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_requests: int | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.kind == "concurrency":
            return f"concurrency@{self.users}"
        if self.kind == "rate":
            return ArrivalProcess(self.arrival, self.burstiness).label(self.rate or 0.0)  # type: ignore[arg-type]
        if self.kind == "idle":
            return f"idle@{self.duration_s:g}s"
        return token_rate_label(self.tokens_per_min, self.input_tokens_per_min, self.output_tokens_per_min)

    @property
    def pool_size(self) -> int:
        """How many users this stage needs at most."""
        if self.kind == "idle":
            return 0
        return int(self.users or 0) if self.kind == "concurrency" else self.max_concurrency

    @property
    def open_loop(self) -> bool:
        return self.kind in ("rate", "tokens")

    @property
    def idle(self) -> bool:
        return self.kind == "idle"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What a user does after a 429 (a scenario's ``[retry]`` table): ``policy="retry-after"`` waits the server's
    Retry-After (1 s if absent), at most ``max_wait_s``, then sends the same request again as a new attempt, at most
    ``max_retries`` times; ``"none"`` never retries."""

    policy: Literal["none", "retry-after"] = "none"
    max_wait_s: float = 30.0
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """An automatic sweep (:mod:`loadtest.engine.sweep`): a 1-user baseline, a saturation probe at
    ``max_concurrency`` users, then up to ``points`` open-loop rates between, each stage ``duration_s`` long."""

    points: int
    duration_s: float
    max_concurrency: int
    arrival: str = "poisson"
    burstiness: float = 1.0


NO_FLOWS_INSTEAD: Final = "give the peak as tokens/min or requests/s"  # a peak in flows/s without flows
NO_FLOWS_PEAK: Final = (
    "{given}: a peak in flows per second needs a Python scenario (its tasks are the flows) and this one has no "
    "[python]: " + NO_FLOWS_INSTEAD
)


def one_peak(given: Mapping[str, object], lead: str) -> None:
    """At most one form of the forecast peak: ``given`` maps each form's name (``peak_tpm``, ``--peak-rps``, ...)
    to its value; a one-line :class:`~loadtest.errors.ConfigError` naming those given, after ``lead``
    (``"[plan]: give "``)."""
    named = [name for name, value in given.items() if value is not None]
    if len(named) == 2:
        raise ConfigError(f"{lead}{named[0]} or {named[1]}, not both")
    if len(named) > 2:
        raise ConfigError(f"{lead}{', '.join(named[:-1])} or {named[-1]}, not all {len(named)}")


@dataclass(frozen=True, slots=True)
class PlanRequest:
    """What the run's report plans for (a scenario's ``[plan]`` table, ``--peak-tpm`` / ``--peak-rps`` /
    ``--peak-fps``): the forecast peak — total tokens/min, requests/s or (a Python scenario's) flows/s, at most
    one — the headroom above it, and architectures to
    estimate beside the measured one. ``example`` marks a forecast the tool chose because none was given (the
    simulator's demo run), so that the report says so."""

    peak_tokens_per_min: float | None = None
    peak_requests_per_s: float | None = None
    headroom: float = DEFAULT_HEADROOM
    architectures: tuple[str, ...] = ()
    example: bool = False
    profile: str | None = None  # a named hourly shape (loadtest.spec.profile.SHAPES)
    peak_flows_per_s: float | None = None  # converted with the run's measured flows (analysis.flow_peak)

    @property
    def has_peak(self) -> bool:
        """Whether a peak is given, in any of its forms."""
        return any(
            v is not None for v in (self.peak_tokens_per_min, self.peak_requests_per_s, self.peak_flows_per_s)
        )

    @classmethod
    def from_dict(cls, raw: object) -> PlanRequest:
        """The spec's ``plan`` object; ``TypeError`` naming the field when it has another shape."""
        if not isinstance(raw, dict):
            raise TypeError("plan must be an object")
        for key in ("peak_tokens_per_min", "peak_requests_per_s", "peak_flows_per_s", "headroom"):
            value = raw.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise TypeError(f"plan.{key} must be a number ≥ 0, got {value!r}")
        archs = raw.get("architectures", [])
        if not isinstance(archs, list | tuple) or not all(isinstance(a, str) for a in archs):
            raise TypeError(f"plan.architectures must be a list of names, got {archs!r}")
        if not isinstance(raw.get("example", False), bool):
            raise TypeError("plan.example must be true or false")
        if raw.get("profile") is not None and raw.get("profile") not in SHAPES:
            raise TypeError(f"plan.profile must be one of {', '.join(SHAPES)}, got {raw.get('profile')!r}")
        try:
            return cls(**{**raw, "architectures": tuple(archs)})
        except TypeError as exc:
            raise TypeError(f"plan: {exc}") from None


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run as the engine runs it. In ``spec.json`` (and the manifest's ``spec``) ``retry`` is ``{}`` when
    ``None`` (no ``[retry]`` table: no retries), and ``scenario_source`` / ``description`` are the ``extra``
    object's ``scenario`` / ``description``; ``plan`` is written only when there is one.

    ``abort_after_s``: stop the run when its endpoint is dead that long (:mod:`loadtest.engine.health`); ``None``
    never stops — what ``--abort-after off`` asks for, and what a spec written before the option reads as (so it
    is written only when set).

    ``prompts``: the prompt calibration the preflight decided (:mod:`loadtest.spec.prompts`); ``None`` — one word
    per token, as every run made before it — is not written.

    ``python``: a Python scenario (:mod:`loadtest.spec.pyscenario`): its module's text, the user classes and the flow
    SLO; its ``request_classes`` then describe steps (name, kind, SLOs) and may be empty. Written only when set. The
    module's text is copied as it is: a key written into it would be too (docs/scenarios-python.md says to read keys
    from the environment)."""

    run_id: str
    name: str
    out_dir: str
    endpoint: EndpointSpec
    request_classes: tuple[RequestClass, ...]
    stages: tuple[Stage, ...]
    seed: int = 0
    drain_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    keep_gaps: bool = True
    simulated: bool = False
    retry: RetryPolicy | None = None
    sweep: SweepPlan | None = None
    scenario_source: str | None = None
    description: str = ""
    plan: PlanRequest | None = None
    abort_after_s: float | None = None
    prompts: PromptCalibration | None = None
    python: PythonScenario | None = None

    @property
    def pool_size(self) -> int:
        """Users the run needs at most (a sweep's saturation probe uses its ``max_concurrency``)."""
        sizes = [s.pool_size for s in self.stages]
        if self.sweep:
            sizes.append(self.sweep.max_concurrency)
        return max(sizes or [1])

    def to_public_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["endpoint"] = self.endpoint.public()
        for stage, raw in zip(self.stages, data["stages"], strict=True):
            raw["label"] = stage.label
        data["retry"] = data["retry"] or {}
        data["extra"] = {"scenario": data.pop("scenario_source"), "description": data.pop("description")}
        if data["plan"] is None:
            del data["plan"]  # written only when there is one: older spec files have no such key
        elif data["plan"]["profile"] is None:
            del data["plan"]["profile"]  # likewise
        if data["abort_after_s"] is None:
            del data["abort_after_s"]  # likewise
        if self.prompts is None:
            del data["prompts"]  # likewise
        else:
            data["prompts"] = self.prompts.to_dict()
        if self.python is None:
            del data["python"]  # likewise
        else:
            data["python"] = self.python.to_dict()
        return data

    @staticmethod
    def stage_from_dict(raw: dict[str, Any]) -> Stage:
        return Stage(**{k: v for k, v in raw.items() if k != "label"})

    def write(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.to_public_dict(), option=orjson.OPT_INDENT_2))

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunSpec:
        """The inverse of :meth:`to_public_dict` (``TypeError`` / ``KeyError`` for a dict of another shape)."""
        raw = dict(raw)
        raw["endpoint"] = EndpointSpec(**raw["endpoint"])
        raw["request_classes"] = tuple(RequestClass(**c) for c in raw["request_classes"])
        raw["stages"] = tuple(cls.stage_from_dict(s) for s in raw["stages"])
        raw["retry"] = RetryPolicy(**raw["retry"]) if raw.get("retry") else None
        raw["sweep"] = SweepPlan(**raw["sweep"]) if raw.get("sweep") is not None else None
        if raw.get("plan") is not None:
            raw["plan"] = PlanRequest.from_dict(raw["plan"])
        if raw.get("prompts") is not None:
            raw["prompts"] = PromptCalibration.from_dict(raw["prompts"])
        if raw.get("python") is not None:
            raw["python"] = PythonScenario.from_dict(raw["python"])
        extra = raw.pop("extra", None) or {}
        raw["scenario_source"] = extra.get("scenario")
        raw["description"] = extra.get("description", "")
        return cls(**raw)
