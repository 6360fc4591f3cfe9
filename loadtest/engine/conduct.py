"""Running a run's stages: the conductor and the recorder. No gevent here — the engine supplies the waiting.

:class:`Recorder` is where records land (the local engine process, or the master): appended to ``records.jsonl``
as they come, each record's ``chunk_gaps`` moved to the binary side file ``chunk_gaps.f32`` (see
:mod:`loadtest.client.records`) and a sampled record's ``sample`` to ``samples.jsonl``
(:mod:`loadtest.rundir.samples`), with stage events in ``events.jsonl``. :class:`Conductor` runs each stage — opens
it, draws open-loop arrivals from one seeded process and deals them out a little ahead of time, closes it, and
writes what happened — or runs the automatic sweep. How a stage is opened, dealt and closed is the role's business
(in this process, or over Locust messages), implemented in :mod:`loadtest.engine.roles`.
"""

from __future__ import annotations

import abc
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import orjson

from loadtest.client.clock import EpochClock
from loadtest.engine.distribute import open_loop_seq
from loadtest.engine.health import Abort, AbortWatch
from loadtest.engine.loopdelay import worst_worker
from loadtest.engine.procstat import peak_rss_mb
from loadtest.engine.sweep import StageObservation, fold, sweep_rates, sweep_verdict
from loadtest.rundir.files import EVENTS_FILE, GAPS_FILE, RECORDS_FILE
from loadtest.rundir.flows import FLOWS_FILE
from loadtest.rundir.manifest import RunFailure, StageTarget
from loadtest.rundir.samples import SampleWriter
from loadtest.spec.arrivals import ArrivalProcess, TokenRateController
from loadtest.spec.runspec import RunSpec, Stage, SweepPlan
from loadtest.spec.workload import RequestFactory

__all__ = ["LOOKAHEAD_S", "Conductor", "Recorder", "Stop", "run_stages"]

LOOKAHEAD_S = 0.05  # arrivals are handed to users this far ahead of their scheduled instant
REQUEST_PRIOR_WEIGHT = 20.0  # a token-rate stage trusts the classes' expected lengths as much as 20 requests
FLOW_PRIOR_WEIGHT = 2.0  # ... and a Python scenario's guessed tokens per flow as much as 2 flows


class Stop(Protocol):
    """The run's stop flag (a gevent Event in the engine): ``wait`` returns True when stopped."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Recorder:
    """Where records land (the local process or the master): appended to ``records.jsonl`` as they come, with
    stage events in ``events.jsonl``. Feeds the token-rate controller with the usage of the current stage.

    Lines arrive in the wire form (``chunk_gaps`` inline, :func:`loadtest.client.records.dump_record`) and are
    written in the disk form: the gaps go to ``chunk_gaps.f32`` as float32 and the line gets ``gap_offset`` /
    ``gap_count``.
    A batch's gaps are written before its lines, so a crash between the two leaves orphan gaps, never a line
    pointing at gaps that are not there; its samples (a line's ``sample``, :class:`SampleWriter`) after them, so a
    sample's record is always on disk.

    With a ``watch`` (:class:`loadtest.engine.health.AbortWatch`) every record is shown to it; when it decides the
    endpoint is dead, a ``run_aborted`` event is written at once and ``on_abort`` is called (it stops the run). The
    master also stops a run through :meth:`fail` when a worker is lost."""

    def __init__(self, run_dir: Path, name: str) -> None:
        self.name = name
        self.clock = EpochClock()
        self.records = 0
        self.errors = 0
        self.controller: TokenRateController | None = None
        self.observation: StageObservation | None = None
        self.stage_label: str | None = None
        self.watch: AbortWatch | None = None
        self.aborted: Abort | None = None
        self.on_abort: Callable[[Abort], None] = lambda _abort: None
        self.failure: RunFailure | None = (
            None  # why the run was stopped early: a dead endpoint or a lost worker
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fd = os.open(run_dir / RECORDS_FILE, flags, 0o644)
        self._gaps_fd = os.open(run_dir / GAPS_FILE, flags, 0o644)
        self._gaps_written = os.fstat(self._gaps_fd).st_size // 4  # float32 elements in the side file
        self._events_fd = os.open(run_dir / EVENTS_FILE, flags, 0o644)
        self.samples = SampleWriter(run_dir)
        self.flows = 0
        self.by_flow = False  # a Python scenario: a token-rate stage counts flows' tokens, not requests'
        self._flows_fd: int | None = None
        self._flows_path = run_dir / FLOWS_FILE

    def write(self, lines: bytes) -> None:
        """Append one or more complete JSON lines in the wire form (as orjson writes them: no spaces)."""
        self.errors += lines.count(b'"error_class":"')
        out: list[bytes] = []
        gaps: list[bytes] = []
        samples: list[bytes] = []
        for line in lines.splitlines():
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:  # not ours to judge: keep it, the analysis skips and counts it
                if line.strip():
                    out.append(line)
                continue
            sample = obj.pop("sample", None)
            values = obj.pop("chunk_gaps", None)
            if values:
                gaps.append(struct.pack(f"<{len(values)}f", *values))
                obj["gap_offset"], obj["gap_count"] = self._gaps_written, len(values)
                self._gaps_written += len(values)
            else:
                obj["gap_offset"] = obj["gap_count"] = None
            out.append(orjson.dumps(obj))
            self._observe(obj)
            if sample is not None and (kept := self.samples.line(obj, sample)) is not None:
                samples.append(kept)
        if gaps:
            _write_all(self._gaps_fd, b"".join(gaps))
        if out:
            _write_all(self._fd, b"\n".join(out) + b"\n")
            self.records += len(out)
        if samples:
            self.samples.write(samples)

    def write_flows(self, lines: bytes) -> None:
        """Append flow lines (``flows.jsonl``, :mod:`loadtest.rundir.flows`); a worker's come after the records of
        the same batch, so a flow's calls are on disk before its line. In a token-rate stage of a Python scenario
        each flow that ended well tells the controller its tokens (one arrival is one flow)."""
        if not lines:
            return
        if self._flows_fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._flows_fd = os.open(self._flows_path, flags, 0o644)
        _write_all(self._flows_fd, lines)
        for line in lines.splitlines():
            self.flows += 1
            if self.controller is None or not self.by_flow:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if obj.get("stage") == self.stage_label and obj.get("outcome") == "ok":
                self.controller.observe(obj.get("prompt_tokens"), obj.get("output_tokens"))

    def _observe(self, obj: dict[str, Any]) -> None:
        if self.watch is not None and self.aborted is None:
            self._watch(self.watch, obj)
        if (self.controller is None and self.observation is None) or obj.get("stage") != self.stage_label:
            return
        if self.controller is not None and obj["error_class"] is None and not self.by_flow:
            self.controller.observe(obj["prompt_tokens"], obj["output_tokens"])
        if self.observation is not None:
            fold(self.observation, obj)

    def _watch(self, watch: AbortWatch, obj: dict[str, Any]) -> None:
        try:
            found = watch.observe(
                obj.get("status"),
                obj.get("error_class"),
                float(obj["started_at"]),
                float(obj["ended_at"]),
                obj.get("stage"),
                obj.get("error_detail"),
            )
        except (KeyError, TypeError, ValueError):  # not a record this version wrote: not the watch's to judge
            return
        if found is None:
            return
        self.aborted = found
        failure = RunFailure(found.kind, found.reason(), found.since, found.at, found.after_s, found.stage)
        self.fail(failure, failures=found.failures, detail=found.detail)
        self.on_abort(found)

    def fail(self, failure: RunFailure, **fields: Any) -> None:
        """Write why the run stops early (a ``run_aborted`` event: the manifest's ``failure``); the first wins."""
        if self.failure is None:
            self.failure = failure
            self.event("run_aborted", failure=failure.to_dict(), **fields)

    def event(self, kind: str, **fields: Any) -> None:
        line = {
            "event": kind,
            "t": self.clock(),
            "cpu_s": time.process_time(),
            "rss_max_mb": peak_rss_mb(),
            "worker": self.name,
            **fields,
        }
        os.write(self._events_fd, orjson.dumps(line) + b"\n")

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._gaps_fd)
        os.close(self._events_fd)
        if self._flows_fd is not None:
            os.close(self._flows_fd)
        self.samples.close()


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out: a short write of the gaps would shift every later offset."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Conductor(abc.ABC):
    """Drives the stages of a run, in this process (local) or over Locust messages (master)."""

    def __init__(self, spec: RunSpec, recorder: Recorder, stop: Stop) -> None:
        self.spec = spec
        self.recorder = recorder
        self.stop = stop

    @abc.abstractmethod
    def open(self, stage: Stage, index: int) -> None:
        """Let the stage's users send (closed loop) or get ready for arrivals (open loop)."""

    @abc.abstractmethod
    def deal(self, seq: int, due: float, n: int) -> None:
        """Hand arrival number ``n`` (sequence ``seq``, scheduled at ``due``) to a process that will send it."""

    @abc.abstractmethod
    def close(self) -> list[dict[str, Any]]:
        """End the stage, wait for it to drain, and return one report per sending process."""

    def run_stage(self, stage: Stage, index: int, observe: bool = False) -> StageObservation | None:
        """Run one stage; with ``observe``, return what its successful requests showed (for the sweep)."""
        rec = self.recorder
        rec.observation = StageObservation([], [], [], []) if observe else None
        target = StageTarget(kind=stage.kind, users=stage.users, rate=stage.rate)
        rec.controller = None
        rec.stage_label = stage.label
        if stage.kind == "tokens":
            python = self.spec.python
            rec.by_flow = python is not None
            if python is not None:  # an arrival is a flow: its expected tokens, until flows tell
                (e_in, e_out), weight = python.flow_tokens, FLOW_PRIOR_WEIGHT
            else:
                e_in, e_out = RequestFactory(
                    self.spec.endpoint, self.spec.request_classes, 0
                ).expected_tokens()
                weight = REQUEST_PRIOR_WEIGHT
            rec.controller = TokenRateController(
                total_per_min=stage.tokens_per_min,
                input_per_min=stage.input_tokens_per_min,
                output_per_min=stage.output_tokens_per_min,
                expected_input=e_in,
                expected_output=e_out,
                prior_weight=weight,
            )
            target = replace(
                target,
                tokens_per_min=stage.tokens_per_min,
                input_tokens_per_min=stage.input_tokens_per_min,
                output_tokens_per_min=stage.output_tokens_per_min,
                initial_rate=rec.controller.rate(),
            )
        before, flows_before = rec.records, rec.flows
        rec.event("stage_start", stage=stage.label, duration_s=stage.duration_s, target=target.to_dict())
        self.open(stage, index)
        arrivals = self.dispatch(stage, index) if stage.open_loop else self.wait_window(stage)
        rec.event("stage_window_end", stage=stage.label)
        reports = self.close()
        extra: dict[str, Any] = {}
        if rec.controller is not None:
            extra = {
                "final_rate": rec.controller.rate(),
                "expected_input": rec.controller.expected_input,
                "expected_output": rec.controller.expected_output,
            }
        shares = [r["cpu_share"] for r in reports if r.get("cpu_share") is not None]
        observation = rec.observation
        if observation is not None:
            observation.window_s = stage.duration_s
            observation.no_free_user = sum(r["no_free_user"] for r in reports)
        rec.observation = None
        rec.event(
            "stage_end",
            stage=stage.label,
            records=rec.records - before,
            cut=sum(r.get("cut", 0) for r in reports),
            **({"flows": rec.flows - flows_before} if self.spec.python is not None else {}),
            arrivals=arrivals,
            dropped=sum(r["dropped"] for r in reports),
            no_free_user=sum(r["no_free_user"] for r in reports),
            inflight=sum(r["inflight"] for r in reports),
            drained=all(r["drained"] for r in reports),
            worker_cpu_share_max=max(shares) if shares else None,
            **worst_worker(reports),
            workers=len(reports),
            **extra,
        )
        return observation

    def run_sweep(self, sweep: SweepPlan) -> None:
        """Baseline → saturation probe → open-loop stages between, stopping early (see :mod:`loadtest.engine.sweep`)."""
        duration, users = float(sweep.duration_s), int(sweep.max_concurrency)
        slos = {c.name: c.slo for c in self.spec.request_classes if c.slo}
        base = self.run_stage(Stage(kind="concurrency", users=1, duration_s=duration), 0, observe=True)
        if self.stop.is_set() or base is None:
            return
        top = self.run_stage(Stage(kind="concurrency", users=users, duration_s=duration), 1, observe=True)
        if self.stop.is_set() or top is None:
            return
        r1, r_max = base.completed_rate, top.completed_rate
        self.recorder.event("sweep_plan", baseline_rps=r1, saturation_rps=r_max, points=sweep.points)
        if r_max <= r1 * 1.05:
            self.recorder.event("sweep_stopped", reason="no headroom: saturation rate ≈ baseline rate")
            return
        for i, rate in enumerate(sweep_rates(r1, r_max, int(sweep.points))):
            stage = Stage(
                kind="rate",
                rate=rate,
                duration_s=duration,
                arrival=sweep.arrival,
                burstiness=float(sweep.burstiness),
                max_concurrency=users,
            )
            obs = self.run_stage(stage, 2 + i, observe=True)
            if self.stop.is_set() or obs is None:
                return
            reason = sweep_verdict(obs, slos)
            if reason is not None:
                self.recorder.event("sweep_stopped", reason=reason, stage=stage.label)
                return

    def wait_window(self, stage: Stage) -> int | None:
        self.stop.wait(stage.duration_s)
        return None

    def dispatch(self, stage: Stage, index: int) -> int:
        """Draw the stage's arrivals from one seeded process and deal them out a little ahead of time."""
        process = ArrivalProcess(stage.arrival, stage.burstiness)  # type: ignore[arg-type]
        rng = random.Random(f"{self.spec.seed}/arrivals/{index}")
        controller = self.recorder.controller
        clock = self.recorder.clock
        t0 = clock() + LOOKAHEAD_S

        def rate(elapsed: float, n: int) -> float:
            return controller.rate_at(elapsed, n) if controller is not None else float(stage.rate or 0.0)

        offset = 0.0 if process.kind == "constant" else process.gap(rate(0.0, 0), rng)
        n = 0
        while not self.stop.is_set() and offset < stage.duration_s:
            if stage.max_requests is not None and n >= stage.max_requests:
                break
            ahead = t0 + offset - LOOKAHEAD_S - clock()
            if ahead > 0 and self.stop.wait(ahead):
                break
            self.deal(open_loop_seq(index, n), t0 + offset, n)
            n += 1
            offset += process.gap(rate(offset, n), rng)
        if not self.stop.is_set() and (stage.max_requests is None or n < stage.max_requests):
            left = t0 + stage.duration_s - clock()
            if left > 0:
                self.stop.wait(
                    left
                )  # the window lasts its full duration even when the next arrival falls after
        return n


def run_stages(conductor: Conductor, spec: RunSpec) -> None:
    if spec.sweep:
        conductor.run_sweep(spec.sweep)
        return
    for index, stage in enumerate(spec.stages):
        if conductor.stop.is_set():
            break
        conductor.run_stage(stage, index)
