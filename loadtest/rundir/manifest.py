"""``manifest.json``: what a run was, against what, and how it went — the typed contract between the one writer
(:mod:`loadtest.runner.run`, :mod:`loadtest.runner.launch`) and every reader (``analysis``, ``reports``, the CLI).

Written as JSON with sorted keys and a two-space indent (``orjson`` ``OPT_INDENT_2 | OPT_SORT_KEYS``); a field that is
``None`` here is absent from the file unless its docstring says it is written as ``null``. :meth:`Manifest.to_json`
of what :meth:`Manifest.from_json` read gives back the same bytes.

Formats: 1 (chunk gaps inline in the records) and 2 (chunk gaps in ``chunk_gaps.f32``; written today). The manifest
itself has the same shape in both. :func:`read_manifest` refuses any other format, and a field of the wrong type,
with one line naming the file and the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from loadtest.errors import ConfigError
from loadtest.rundir.files import MANIFEST_FILE
from loadtest.rundir.jsonshape import JsonObject
from loadtest.spec.runspec import RunSpec
from loadtest.spec.simulator import SIM_KEYS, SimSettings

__all__ = [
    "FORMAT",
    "READ_FORMATS",
    "SCENARIO_BROKEN",
    "WORKER_LOST",
    "GeneratorVerdict",
    "Host",
    "Manifest",
    "RunDistribution",
    "RunFailure",
    "SimulatedEndpoint",
    "StageTarget",
    "StageWindow",
    "read_manifest",
    "write_manifest",
]

FORMAT: Final = 2  # 2: chunk_gaps in chunk_gaps.f32 (see loadtest.client.records)
READ_FORMATS: Final = (1, 2)
_OPTIONS: Final = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
_TOKEN_KEYS: Final = ("tokens_per_min", "input_tokens_per_min", "output_tokens_per_min", "initial_rate")


@dataclass(frozen=True, slots=True)
class StageTarget:
    """What a stage set out to offer (the engine's ``stage_start`` event): ``users`` and ``rate`` are written as
    ``null`` when not set; a ``tokens`` stage also has its token rates and the request rate it started at."""

    kind: str | None
    users: int | None = None
    rate: float | None = None
    tokens_per_min: float | None = None
    input_tokens_per_min: float | None = None
    output_tokens_per_min: float | None = None
    initial_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "users": self.users, "rate": self.rate}
        if self.kind == "tokens":
            out.update({key: getattr(self, key) for key in _TOKEN_KEYS})
        return out

    @classmethod
    def read(cls, obj: JsonObject) -> StageTarget:
        numbers = {key: obj.number(key) for key in ("rate", *_TOKEN_KEYS)}
        return cls(kind=obj.text("kind"), users=obj.integer("users"), **numbers)


@dataclass(frozen=True, slots=True)
class StageWindow:
    """One stage as the engine ran it, from its events. Three groups, each written whole (``None`` as ``null``)
    when its event was seen: ``stage_start`` (``start``, ``cpu_start_s``, ``target``), ``stage_window_end``
    (``window_end``: when sending stopped) and ``stage_end`` (``end`` after the drain, ``cpu_end_s``,
    ``generator_rss_max_mb`` and the engine's counts; a token-rate stage adds ``final_rate``, ``expected_input``,
    ``expected_output``). ``generator_cpu_share`` is written when it could be worked out
    (:func:`loadtest.rundir.events.stage_windows`). ``loop_delay_p50_s``, ``loop_delay_p99_s`` and
    ``loop_delay_max_s`` — the engine's event-loop delay over the stage, the worst worker's
    (:mod:`loadtest.engine.loopdelay`) — are each written when known: runs made before the engine measured it have
    none, and read back as ``None``. ``flows``: a Python scenario's stage, the flow lines that ended in it (its
    ``stage_end``; an arrival there starts a flow, so its target rate is in flows/s), written only when known."""

    label: str
    start: float | None = None
    cpu_start_s: float | None = None
    target: StageTarget | None = None
    window_end: float | None = None
    end: float | None = None
    cpu_end_s: float | None = None
    generator_rss_max_mb: float | None = None
    records: int | None = None
    arrivals: int | None = None
    dropped: int | None = None
    no_free_user: int | None = None
    inflight: int | None = None
    drained: bool | None = None
    workers: int | None = None
    worker_cpu_share_max: float | None = None
    final_rate: float | None = None
    expected_input: float | None = None
    expected_output: float | None = None
    generator_cpu_share: float | None = None
    loop_delay_p50_s: float | None = None
    loop_delay_p99_s: float | None = None
    loop_delay_max_s: float | None = None
    flows: int | None = None

    @property
    def has_cpu_share(self) -> bool:
        return self.worker_cpu_share_max is not None or (self.start is not None and self.end is not None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.start is not None:
            target = self.target.to_dict() if self.target is not None else None
            out.update(start=self.start, cpu_start_s=self.cpu_start_s, target=target)
        if self.window_end is not None:
            out["window_end"] = self.window_end
        if self.end is not None:
            for key in _END_KEYS:
                out[key] = getattr(self, key)
            if self.final_rate is not None:
                out.update({key: getattr(self, key) for key in _TOKEN_END_KEYS})
            if self.flows is not None:
                out["flows"] = self.flows
        if self.has_cpu_share:
            out["generator_cpu_share"] = self.generator_cpu_share
        out.update({key: getattr(self, key) for key in _LOOP_DELAY_KEYS if getattr(self, key) is not None})
        return out

    @classmethod
    def read(cls, obj: JsonObject) -> StageWindow:
        target = obj.obj("target")
        values: dict[str, Any] = {}
        for key in ("records", "flows", "arrivals", "dropped", "no_free_user", "inflight", "workers"):
            values[key] = obj.integer(key)
        for key in ("start", "cpu_start_s", "window_end", "end", "cpu_end_s", "generator_rss_max_mb"):
            values[key] = obj.number(key)
        for key in ("worker_cpu_share_max", "generator_cpu_share", *_TOKEN_END_KEYS, *_LOOP_DELAY_KEYS):
            values[key] = obj.number(key)
        label = obj.text("label", required=True)
        assert label is not None
        return cls(
            label=label,
            target=StageTarget.read(target) if target is not None else None,
            drained=obj.flag("drained"),
            **values,
        )


_END_KEYS: Final = (
    "end",
    "cpu_end_s",
    "generator_rss_max_mb",
    "records",
    "arrivals",
    "dropped",
    "no_free_user",
    "inflight",
    "drained",
    "worker_cpu_share_max",
    "workers",
)
_TOKEN_END_KEYS: Final = ("final_rate", "expected_input", "expected_output")
_LOOP_DELAY_KEYS: Final = ("loop_delay_p50_s", "loop_delay_p99_s", "loop_delay_max_s")


@dataclass(frozen=True, slots=True)
class SimulatedEndpoint:
    """The embedded simulator a run went to: the settings the scenario gave it and its seed."""

    settings: SimSettings
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings.given(), "seed": self.seed}

    @classmethod
    def read(cls, obj: JsonObject) -> SimulatedEndpoint:
        for key in obj.raw:
            if key not in SIM_KEYS and key != "seed":
                raise ConfigError(f"{obj.file}: {obj.prefix}{key} is not a simulator setting")
        seed = obj.integer("seed")
        return cls(SimSettings.from_mapping({k: v for k, v in obj.raw.items() if k != "seed"}), seed or 0)


@dataclass(frozen=True, slots=True)
class Host:
    """The machine the CLI ran on: ``cpus`` is ``os.cpu_count()``; ``usable_cpus`` the CPUs the run could use (its
    CPU affinity and cgroup quota, :func:`loadtest.spec.processes.usable_cpus`) — absent from runs made before it
    was recorded."""

    platform: str
    cpus: int | None
    usable_cpus: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"platform": self.platform, "cpus": self.cpus}
        if self.usable_cpus is not None:
            out["usable_cpus"] = self.usable_cpus
        return out


@dataclass(frozen=True, slots=True)
class RunDistribution:
    """How many processes sent the load; ``master`` (``host:port``) only when a Locust master coordinated them;
    ``auto`` (written only when true) when ``processes`` is what ``--processes auto`` chose."""

    processes: int
    expect_workers: int
    master: str | None = None
    auto: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"processes": self.processes, "expect_workers": self.expect_workers}
        if self.master is not None:
            out["master"] = self.master
        if self.auto:
            out["auto"] = True
        return out


@dataclass(frozen=True, slots=True)
class GeneratorVerdict:
    """Did the load generator keep up (written by ``loadtest run`` after the run, :mod:`analysis.load_check`):
    ``stages`` are the stages where it did not, ``capped`` those that did not offer their target, with why."""

    kept_up: bool
    stages: Mapping[str, str | None]
    capped: Mapping[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        return {"kept_up": self.kept_up, "stages": dict(self.stages), "capped": dict(self.capped)}


WORKER_LOST: Final = (
    "worker_lost"  # a RunFailure kind: the master lost a worker, and with it part of the load
)
SCENARIO_BROKEN: Final = (
    "scenario"  # a RunFailure kind: a Python scenario's users could not start (its own bug)
)


@dataclass(frozen=True, slots=True)
class RunFailure:
    """Why the engine stopped a run early (its status is then ``failed``): ``kind`` ``unreachable`` (every request
    failed to connect or got no response) or ``server_error`` (every one answered with a 5xx) from ``since`` to
    ``at`` (epoch seconds), for at least ``after_s`` (``--abort-after``), decided in ``stage``; or
    :data:`WORKER_LOST` (the master heard no heartbeat from a worker for ``after_s``); or :data:`SCENARIO_BROKEN` (a
    Python scenario's user could not start: its ``on_start`` raised, or a worker could not load the module).
    ``reason`` is the one line the run printed (its clock time is the run's local time). From the engine's
    ``run_aborted`` event (:mod:`loadtest.engine.health`, :mod:`loadtest.engine.roles`); ``stage`` is written as
    ``null`` when unknown."""

    kind: str
    reason: str
    since: float
    at: float
    after_s: float
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "since": self.since,
            "at": self.at,
            "after_s": self.after_s,
            "stage": self.stage,
        }

    @classmethod
    def read(cls, obj: JsonObject) -> RunFailure:
        return cls(
            kind=_required(obj.text("kind", required=True)),
            reason=_required(obj.text("reason", required=True)),
            since=_required(obj.number("since", required=True)),
            at=_required(obj.number("at", required=True)),
            after_s=_required(obj.number("after_s", required=True)),
            stage=obj.text("stage"),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """A run directory's ``manifest.json``. ``simulator`` is the simulated endpoint, or ``None`` for a real one (written
    ``"target": {}``: the endpoint is ``spec.endpoint``). The run's outcome — ``finished_at``, ``engine_exit_code``,
    ``records``, ``stages`` (and ``engine_log_tail`` when its engine failed) — is there once the engine has
    stopped; ``failure`` when the engine stopped the run because its endpoint was dead (status ``failed``);
    ``generator`` once ``loadtest run`` has checked the load."""

    format: int
    run_id: str
    name: str
    status: str  # "running" | "complete" | "interrupted" | "failed"
    seed: int
    created_at: float
    command: tuple[str, ...]
    versions: Mapping[str, str]
    host: Host
    spec: RunSpec
    simulator: SimulatedEndpoint | None  # on disk: target.simulator; None for a real endpoint
    distribution: RunDistribution
    finished_at: float | None = None
    engine_exit_code: int | None = None
    records: int | None = None
    stages: tuple[StageWindow, ...] | None = None
    engine_log_tail: tuple[str, ...] | None = None
    generator: GeneratorVerdict | None = None
    failure: RunFailure | None = None

    @property
    def stage_order(self) -> list[str]:
        """The stage labels in the spec's order (empty for an automatic sweep: its stages are chosen as it runs)."""
        return [stage.label for stage in self.spec.stages]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "run_id": self.run_id,
            "name": self.name,
            "status": self.status,
            "seed": self.seed,
            "created_at": self.created_at,
            "command": list(self.command),
            "versions": dict(self.versions),
            "host": self.host.to_dict(),
            "spec": self.spec.to_public_dict(),
            # format 2 calls the endpoint description "target"; in code, "target" is only a stage's load target
            "target": {"simulator": self.simulator.to_dict()} if self.simulator is not None else {},
            "distribution": self.distribution.to_dict(),
        }
        for key in ("finished_at", "engine_exit_code", "records"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.stages is not None:
            out["stages"] = [stage.to_dict() for stage in self.stages]
        if self.engine_log_tail is not None:
            out["engine_log_tail"] = list(self.engine_log_tail)
        if self.generator is not None:
            out["generator"] = self.generator.to_dict()
        if self.failure is not None:
            out["failure"] = self.failure.to_dict()
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=_OPTIONS)

    @classmethod
    def from_json(cls, data: bytes, path: Path) -> Manifest:
        """Parse a manifest's bytes (``path`` names it in errors); see :func:`read_manifest`."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{path} is not valid JSON") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} is not a run manifest (not a JSON object)")
        found = raw.get("format")
        if isinstance(found, bool) or found not in READ_FORMATS:
            shown = "no format" if found is None else f"format {orjson.dumps(found).decode()}"
            formats = " or ".join(str(f) for f in READ_FORMATS)
            raise ConfigError(
                f"{path}: {shown} is not a run-directory format this version reads (format {formats})"
            )
        return _read(JsonObject(raw, path))


def _read_spec(obj: JsonObject) -> RunSpec:
    """The spec, its stage labels and class SLOs checked first (what the analysis reads), then built whole."""
    for stage in obj.objects("stages") or []:
        stage.text("label", required=True)
    for cls in obj.objects("request_classes") or []:
        slo = cls.obj("slo")
        for key in slo.raw if slo is not None else ():
            assert slo is not None
            slo.number(key, required=True)
    try:
        return RunSpec.from_dict(dict(obj.raw))
    except KeyError as exc:
        raise ConfigError(f"{obj.file}: spec.{exc.args[0]} is missing") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{obj.file}: spec is not a run spec ({exc})") from None


def _read(top: JsonObject) -> Manifest:
    spec = top.obj("spec", required=True)
    target = top.obj("target", required=True)
    assert spec is not None and target is not None
    simulator = target.obj("simulator")
    stages = top.objects("stages")
    run_spec = _read_spec(spec)
    host = top.obj("host", required=True)
    dist = top.obj("distribution", required=True)
    assert host is not None and dist is not None
    generator = top.obj("generator")
    failure = top.obj("failure")
    values = {key: top.text(key, required=True) for key in ("run_id", "name", "status")}
    return Manifest(
        format=int(top.raw["format"]),
        seed=_required(top.integer("seed", required=True)),
        created_at=_required(top.number("created_at", required=True)),
        command=_required(top.texts("command", required=True)),
        versions=_required(top.text_map("versions", required=True)),
        host=Host(
            _required(host.text("platform", required=True)), host.integer("cpus"), host.integer("usable_cpus")
        ),
        spec=run_spec,
        simulator=SimulatedEndpoint.read(simulator) if simulator is not None else None,
        distribution=RunDistribution(
            _required(dist.integer("processes", required=True)),
            _required(dist.integer("expect_workers", required=True)),
            dist.text("master"),
            bool(dist.flag("auto")),
        ),
        finished_at=top.number("finished_at"),
        engine_exit_code=top.integer("engine_exit_code"),
        records=top.integer("records"),
        stages=tuple(StageWindow.read(s) for s in stages) if stages is not None else None,
        engine_log_tail=top.texts("engine_log_tail"),
        generator=GeneratorVerdict(
            _required(generator.flag("kept_up", required=True)),
            _required(generator.text_map("stages", required=True, nullable=True)),
            _required(generator.text_map("capped", required=True, nullable=True)),
        )
        if generator is not None
        else None,
        failure=RunFailure.read(failure) if failure is not None else None,
        run_id=_required(values["run_id"]),
        name=_required(values["name"]),
        status=_required(values["status"]),
    )


_T = TypeVar("_T")


def _required(value: _T | None) -> _T:
    assert value is not None  # read with required=True: a missing value has raised already
    return value


def read_manifest(run_dir: Path) -> Manifest:
    """The run directory's manifest. A missing file, one that is not JSON, of an unknown format or with a field of
    the wrong type: one :class:`ConfigError` line naming it."""
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no manifest.json)")
    return Manifest.from_json(path.read_bytes(), path)


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (a reader never sees half of it)."""
    tmp = run_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_bytes(manifest.to_json())
    os.replace(tmp, run_dir / MANIFEST_FILE)
