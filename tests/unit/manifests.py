"""Run-directory manifests for tests, built with the contract's own types (:mod:`loadtest.rundir`) so that a test's
manifest has the shape the writer writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loadtest.client.protocol import EndpointSpec, RequestClass
from loadtest.rundir import Host, Manifest, RunDistribution, SimulatedEndpoint, StageWindow
from loadtest.rundir.jsonshape import JsonObject
from loadtest.spec.runspec import RunSpec, Stage
from loadtest.spec.simulator import SimSettings

__all__ = ["manifest_dict", "window", "windows"]


def manifest_dict(
    *,
    classes: Mapping[str, Mapping[str, float]] | None = None,
    stage_labels: Iterable[str] = ("s1",),
    stages: list[dict[str, Any]] | None = None,
    simulator: Mapping[str, Any] | None = None,
    status: str = "complete",
    **top: Any,
) -> dict[str, Any]:
    """A complete format-2 manifest as a dict: ``classes`` ``{name: slo}`` (default one ``chat`` class without
    SLOs), spec stages named ``stage_labels``, the stage windows ``stages`` (raw dicts, as written), a simulator
    target with the given settings (else an endpoint run); ``top`` replaces top-level keys."""
    spec = RunSpec(
        run_id="r1",
        name="test",
        out_dir="runs/r1",
        endpoint=EndpointSpec(base_url="http://127.0.0.1:9/v1", model="m"),
        request_classes=tuple(
            RequestClass(name=name, slo=dict(slo)) for name, slo in (classes or {"chat": {}}).items()
        ),
        stages=tuple(
            Stage(kind="concurrency", users=1, duration_s=1.0, name=label) for label in stage_labels
        ),
    )
    manifest = Manifest(
        format=2,
        run_id="r1",
        name="test",
        status=status,
        seed=0,
        created_at=0.0,
        command=("loadtest", "run"),
        versions={},
        host=Host("test", 1),
        spec=spec,
        simulator=SimulatedEndpoint(SimSettings.from_mapping(simulator), 0)
        if simulator is not None
        else None,
        distribution=RunDistribution(1, 0),
    )
    out = manifest.to_dict()
    if stages is not None:
        out["stages"] = stages
    out.update(top)
    return out


def window(raw: Mapping[str, Any]) -> StageWindow:
    """A stage window from its manifest form (``{"label": "s1", "target": {"kind": "rate", "rate": 4.0}}``)."""
    return StageWindow.read(JsonObject(raw, Path("manifest.json"), "stages[0]."))


def windows(raws: Iterable[Mapping[str, Any]]) -> list[StageWindow]:
    return [window(raw) for raw in raws]
