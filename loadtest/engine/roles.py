"""The engine's roles: one process (local), the master and the workers, and ``main`` for ``python -m loadtest.engine``.

The gevent door is these modules, run only in the engine's child process (``import locust`` monkey-patches the
interpreter): this one, which monkey-patches first thing so nothing imports ssl / socket before it, then
:mod:`loadtest.engine.users` (stage gate, per-process engine, the Locust user),
:mod:`loadtest.engine.gevent_transport` (the HTTP/1.1 transport), :mod:`loadtest.engine.flows` (a Python
scenario's users; the API it imports is :mod:`loadtest.flows`) and :mod:`loadtest.engine.scenario_module` (the
import of its module). Here: the
conductors that carry stages to the users (:class:`LocalConductor` in this process, :class:`MasterConductor` over
Locust messages), the worker's record :class:`Forwarder`, signals, and the three ``run_*`` entry points. The stage
sequencing they drive is pure (:mod:`loadtest.engine.conduct`).

Run by :mod:`loadtest.runner.run`, never imported by the CLI, the analysis or the reports::

    python -m loadtest.engine RUN_DIR                                   # one process (LocalRunner)
    python -m loadtest.engine RUN_DIR --master --workers N --port P     # MasterRunner: stages, arrivals, records
    python -m loadtest.engine --worker --master-host H --port P         # WorkerRunner: users that send requests

The master (or the local process) reads ``RUN_DIR/spec.json`` and appends

* ``records.jsonl`` — one line per request as it completes, its chunk gaps in ``chunk_gaps.f32`` (workers forward
  batches every 100 ms, gaps inline; a crash or Ctrl-C loses nothing that completed; in-flight requests are
  recorded as ``cancelled``);
* ``events.jsonl`` — stage start/end markers with the generator's CPU time and event-loop delay, so stage windows
  survive a crash.

Stage semantics: at a stage's start the first ``users`` users may send (closed loop), or arrivals start at their
scheduled instants (open loop); when its duration is over no new request starts and in-flight requests drain (up to
``drain_timeout_s``) before the next stage begins, so every stage is measured on its own.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS, STATE_MISSING, MasterRunner, WorkerRunner  # noqa: E402  # noqa: E402

from loadtest.engine.conduct import LOOKAHEAD_S, Conductor, Recorder, run_stages  # noqa: E402
from loadtest.engine.distribute import split_evenly, users_per_worker  # noqa: E402
from loadtest.engine.flows import ScenarioModuleError  # noqa: E402
from loadtest.engine.health import AbortWatch  # noqa: E402
from loadtest.engine.scenario_module import load_users  # noqa: E402
from loadtest.engine.users import Engine, LLMUser  # noqa: E402
from loadtest.errors import EXIT_INTERRUPTED, ConfigError, EndpointError, LoadtestError  # noqa: E402
from loadtest.rundir.files import SPEC_FILE  # noqa: E402
from loadtest.rundir.manifest import SCENARIO_BROKEN, WORKER_LOST, RunFailure  # noqa: E402
from loadtest.spec.pyscenario import SCENARIO_FAILED  # noqa: E402
from loadtest.spec.runspec import RunSpec, Stage  # noqa: E402

__all__ = ["main"]

FORWARD_EVERY_S = 0.1


class LocalConductor(Conductor):
    def __init__(self, spec: RunSpec, recorder: Recorder, stop: Event, engine: Engine) -> None:
        super().__init__(spec, recorder, stop)
        self.engine = engine

    def open(self, stage: Stage, index: int) -> None:
        self.engine.open_stage(stage, index, stage.users or 0)

    def deal(self, seq: int, due: float, n: int) -> None:
        self.engine.schedule(seq, due)

    def close(self) -> list[dict[str, Any]]:
        if not self.stop.is_set():
            gevent.sleep(LOOKAHEAD_S)  # arrivals dealt ahead of time reach their users
        return [self.engine.close_stage(drain=not self.stop.is_set())]


class MasterConductor(Conductor):
    """Stages over Locust messages: ``lt_open`` / ``lt_arrivals`` / ``lt_close`` to workers, ``lt_closed`` back."""

    def __init__(
        self, spec: RunSpec, recorder: Recorder, stop: Event, runner: MasterRunner, workers: list[str]
    ) -> None:
        super().__init__(spec, recorder, stop)
        self.runner = runner
        self.workers = workers
        self.batches: dict[str, list[list[float]]] = {w: [] for w in workers}
        self.closed: dict[str, dict[str, Any]] = {}
        self.closed_event = Event()
        self.flusher: Any = None
        self.lost: set[str] = set()

    def _all_closed(self) -> bool:
        return all(w in self.closed or w in self.lost for w in self.workers)

    def on_lost(self, node_id: str) -> None:
        """A worker stopped answering: its stage report will never come, so closing waits for the others only."""
        self.lost.add(node_id)
        if self._all_closed():
            self.closed_event.set()

    def on_closed(self, node_id: str, data: dict[str, Any]) -> None:
        self.closed[node_id] = data
        if self._all_closed():
            self.closed_event.set()

    def open(self, stage: Stage, index: int) -> None:
        shares = split_evenly(stage.users or 0, len(self.workers))
        self.closed, self.closed_event = {}, Event()
        for worker, share in zip(self.workers, shares, strict=True):
            self.runner.send_message(
                "lt_open", {"index": index, "share": share, "stage": asdict(stage)}, client_id=worker
            )
        self.flusher = gevent.spawn(self._flush_forever) if stage.open_loop else None

    def deal(self, seq: int, due: float, n: int) -> None:
        self.batches[self.workers[n % len(self.workers)]].append([seq, due])

    def _flush(self) -> None:
        for worker, batch in self.batches.items():
            if batch:
                self.runner.send_message("lt_arrivals", {"items": batch}, client_id=worker)
                self.batches[worker] = []

    def _flush_forever(self) -> None:
        while True:
            self._flush()
            gevent.sleep(LOOKAHEAD_S / 5)

    def close(self) -> list[dict[str, Any]]:
        if self.flusher is not None:
            self.flusher.kill()
            self._flush()
            gevent.sleep(LOOKAHEAD_S)
        self.runner.send_message("lt_close", {"drain": not self.stop.is_set()})
        self.closed_event.wait(self.spec.drain_timeout_s + 15.0)
        missing = [w for w in self.workers if w not in self.closed and w not in self.lost]
        if missing:
            self.recorder.event("workers_lost", workers=missing)
        return list(self.closed.values())


class Forwarder:
    """A worker's record sink: batches of JSON lines to the master every 100 ms (or sooner when large), with the
    lines of the flows that ended meanwhile (written after the batch's records)."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.lines: list[bytes] = []
        self.flow_lines: list[bytes] = []

    def __call__(self, line: bytes) -> None:
        self.lines.append(line)
        if len(self.lines) >= 500:
            self.flush()

    def flow(self, line: bytes) -> None:
        self.flow_lines.append(line)

    def flush(self) -> None:
        if self.lines or self.flow_lines:
            payload, self.lines = b"".join(self.lines), []
            flows, self.flow_lines = b"".join(self.flow_lines), []
            self.runner.send_message("lt_records", {"lines": payload, "flows": flows})

    def forever(self) -> None:
        while True:
            gevent.sleep(FORWARD_EVERY_S)
            self.flush()


def _install_signals(stop: Event, interrupted: list[str]) -> None:
    def on_signal(signame: str) -> None:
        interrupted.append(signame)
        stop.set()

    gevent.signal_handler(signal.SIGINT, on_signal, "SIGINT")
    gevent.signal_handler(signal.SIGTERM, on_signal, "SIGTERM")


def _watch_endpoint(recorder: Recorder, spec: RunSpec, stop: Event) -> None:
    """Stop the run when its endpoint is dead for ``spec.abort_after_s`` (the recorder sees every record: this
    process's, or every worker's on the master)."""
    if spec.abort_after_s:
        recorder.watch = AbortWatch(spec.abort_after_s)
        recorder.on_abort = lambda _abort: stop.set()


def _exit_code(recorder: Recorder, interrupted: list[str]) -> int:
    """130 when a signal stopped the run, 3 (:class:`EndpointError`) when its endpoint was dead, 1 when a worker was
    lost, 2 when a Python scenario's users could not start, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    if recorder.failure is None:
        return 0
    if recorder.failure.kind == SCENARIO_BROKEN:
        return ConfigError.exit_code
    return LoadtestError.exit_code if recorder.failure.kind == WORKER_LOST else EndpointError.exit_code


def _abort_for_scenario(recorder: Recorder, stop: Event) -> Callable[[str], None]:
    """How this process stops a run whose Python scenario cannot run as its stages say: the failure written (the
    first wins), the run stopped."""

    def abort(reason: str) -> None:
        at = time.time()
        recorder.fail(RunFailure(SCENARIO_BROKEN, reason, at, at, 0.0, recorder.stage_label))
        stop.set()

    return abort


def _watch_workers(
    runner: MasterRunner, conductor: MasterConductor, names: dict[str, str], recorder: Recorder, stop: Event
) -> None:
    """Stop the run when a worker goes missing (Locust's heartbeats: none for ``HEARTBEAT_LIVENESS`` intervals, or
    gone from the master's list): its users and their load are gone, so the stages would no longer offer what they
    say. Its in-flight requests are lost with it (never recorded); everything it forwarded is kept."""
    while not stop.is_set():
        for node_id in conductor.workers:
            node = runner.clients.get(node_id)
            if node_id not in conductor.lost and (node is None or node.state == STATE_MISSING):
                at = time.time()
                after = float(HEARTBEAT_LIVENESS * HEARTBEAT_INTERVAL)
                stage = recorder.stage_label
                name = names.get(node_id, node_id)
                reason = (
                    f"worker {name} lost: no heartbeat for {after:.0f} s at "
                    f"{time.strftime('%H:%M:%S', time.localtime(at))}"
                    + (f" (stage {stage})" if stage else "")
                    + f"; {len(conductor.workers) - len(conductor.lost) - 1} of {len(conductor.workers)} workers "
                    "left, so the load was no longer what the stages say"
                )
                recorder.fail(RunFailure(WORKER_LOST, reason, at - after, at, after, stage), worker=name)
                conductor.on_lost(node_id)
                stop.set()
        gevent.sleep(0.2)


def _user_classes(spec: RunSpec, index: int) -> list[Any]:
    """The Locust user classes of the run: the engine's own, or a Python scenario's (its module imported here, in
    the engine process only). Locust picks a user's next task with the global ``random``: seeded per process."""
    random.seed(f"{spec.seed}/tasks/{index}")
    if spec.python is None:
        return [LLMUser]
    return list(load_users(spec.python))


def _spawn_users(runner: Any, users: int, stop: Event) -> int:
    runner.start(users, spawn_rate=max(100.0, users * 50.0), wait=False)
    deadline = time.monotonic() + 60
    while runner.user_count < users and time.monotonic() < deadline and not stop.is_set():
        gevent.sleep(0.02)
    return int(runner.user_count)


def run_local(spec: RunSpec, run_dir: Path) -> int:
    stop, interrupted = Event(), []  # type: ignore[var-annotated]
    _install_signals(stop, interrupted)
    recorder = Recorder(run_dir, f"local-{os.getpid()}")
    _watch_endpoint(recorder, spec, stop)
    engine = Engine(spec, f"local-{os.getpid()}", 0, 1, recorder.write)
    engine.flow_sink = recorder.write_flows
    engine.report = lambda kind, fields: recorder.event(kind, **fields)  # a scenario's on_start runs at spawn
    engine.abort = _abort_for_scenario(recorder, stop)
    LLMUser.engine = engine
    runner = Environment(user_classes=_user_classes(spec, 0)).create_local_runner()
    users = _spawn_users(runner, engine.users, stop)
    recorder.event("run_start", users=users, workers=1, auth=engine.auth.describe())
    refresher = gevent.spawn(engine.refresh_credentials_forever, engine.report)
    try:
        run_stages(LocalConductor(spec, recorder, stop, engine), spec)
    finally:
        refresher.kill()
        engine.stop_watchers()
        engine.gate.close()
        runner.quit()  # kills user greenlets; in-flight requests record themselves as cancelled
        _run_end(recorder, interrupted)
        recorder.close()
    return _exit_code(recorder, interrupted)


def _run_end(recorder: Recorder, interrupted: list[str]) -> None:
    aborted = recorder.failure.kind if recorder.failure is not None else None
    recorder.event(
        "run_end",
        interrupted=bool(interrupted),
        records=recorder.records,
        errors=recorder.errors,
        **({"aborted": aborted} if aborted else {}),
    )


def run_master(spec: RunSpec, run_dir: Path, workers: int, bind_host: str, port: int) -> int:
    stop, interrupted = Event(), []  # type: ignore[var-annotated]
    _install_signals(stop, interrupted)
    recorder = Recorder(run_dir, f"master-{os.getpid()}")
    _watch_endpoint(recorder, spec, stop)
    runner = Environment(user_classes=_user_classes(spec, 0)).create_master_runner(bind_host, port)
    ready: dict[str, bool] = {}
    finished: dict[str, bool] = {}
    conductor: MasterConductor | None = None

    def on_records(environment: Any, msg: Any) -> None:
        recorder.write(msg.data["lines"])
        recorder.write_flows(msg.data.get("flows", b""))

    runner.register_message("lt_records", on_records)
    names: dict[str, str] = {}  # Locust's node id -> the worker's own name (workerK-PID)

    def on_ready(environment: Any, msg: Any) -> None:
        ready[msg.node_id] = True
        names[msg.node_id] = str(msg.data.get("worker", msg.node_id))

    runner.register_message("lt_ready", on_ready)
    runner.register_message("lt_finished", lambda environment, msg: finished.__setitem__(msg.node_id, True))
    runner.register_message(
        "lt_event", lambda environment, msg: recorder.event(msg.data["kind"], **msg.data["fields"])
    )
    scenario_abort = _abort_for_scenario(recorder, stop)
    runner.register_message("lt_abort", lambda environment, msg: scenario_abort(str(msg.data["reason"])))
    runner.register_message(
        "lt_closed",
        lambda environment, msg: conductor.on_closed(msg.node_id, msg.data) if conductor else None,
    )
    deadline = time.monotonic() + 60
    while runner.worker_count < workers and time.monotonic() < deadline and not stop.is_set():
        gevent.sleep(0.05)
    ids = sorted((c.id for c in runner.clients.all), key=runner.get_worker_index)[:workers]
    if len(ids) < workers:
        recorder.event("run_end", interrupted=True, records=0, errors=0, reason="workers did not connect")
        print(f"engine: only {len(ids)} of {workers} workers connected within 60 s", file=sys.stderr)
        runner.quit()
        return 1
    for k, worker in enumerate(ids):
        runner.send_message(
            "lt_spec", {"spec": spec.to_public_dict(), "index": k, "workers": workers}, client_id=worker
        )
    while len(ready) < workers and time.monotonic() < deadline + 30 and not stop.is_set():
        gevent.sleep(0.05)
    per_worker = users_per_worker(spec.pool_size, workers)
    # a worker that could not load the scenario stopped the run before it was ready: spawn nothing it lacks
    users = 0 if stop.is_set() else _spawn_users(runner, per_worker * workers, stop)
    recorder.event("run_start", users=users, workers=workers)
    conductor = MasterConductor(spec, recorder, stop, runner, ids)
    watcher = gevent.spawn(_watch_workers, runner, conductor, names, recorder, stop)
    try:
        run_stages(conductor, spec)
    finally:
        watcher.kill()
        abort = bool(interrupted) or recorder.failure is not None
        runner.send_message("lt_finish", {"abort": abort})
        end = time.monotonic() + 15
        while len(finished) < workers - len(conductor.lost) and time.monotonic() < end:
            gevent.sleep(0.05)
        _run_end(recorder, interrupted)
        runner.quit()
        recorder.close()
    return _exit_code(recorder, interrupted)


def run_worker(master_host: str, port: int) -> int:
    runner = Environment(user_classes=[LLMUser]).create_worker_runner(master_host, port)
    forwarder = Forwarder(runner)
    greenlets: list[Any] = []

    def report(kind: str, fields: dict[str, Any]) -> None:
        runner.send_message("lt_event", {"kind": kind, "fields": fields})

    def on_spec(environment: Any, msg: Any) -> None:
        spec = RunSpec.from_dict(msg.data["spec"])
        name = f"worker{msg.data['index']}-{os.getpid()}"
        try:
            runner.environment.user_classes = _user_classes(spec, msg.data["index"])
        except ScenarioModuleError as exc:  # the master loaded it: this machine lacks what the module needs
            runner.send_message("lt_abort", {"reason": f"{name} could not load the scenario: {exc}"})
            return
        engine = LLMUser.engine = Engine(spec, name, msg.data["index"], msg.data["workers"], forwarder)
        engine.flow_sink = forwarder.flow
        engine.abort = lambda reason: runner.send_message("lt_abort", {"reason": reason})
        greenlets.append(gevent.spawn(forwarder.forever))
        engine.report = report
        greenlets.append(gevent.spawn(engine.refresh_credentials_forever, report))
        runner.send_message("lt_ready", {"worker": name})

    def on_open(environment: Any, msg: Any) -> None:
        engine = LLMUser.engine
        assert engine is not None
        stage = RunSpec.stage_from_dict(msg.data["stage"])
        engine.open_stage(stage, msg.data["index"], msg.data["share"])

    def on_arrivals(environment: Any, msg: Any) -> None:
        engine = LLMUser.engine
        assert engine is not None
        for seq, due in msg.data["items"]:
            engine.schedule(int(seq), float(due))

    def on_close(environment: Any, msg: Any) -> None:
        def close() -> None:
            engine = LLMUser.engine
            assert engine is not None
            result = engine.close_stage(drain=bool(msg.data.get("drain", True)))
            forwarder.flush()  # every record of the stage reaches the master before the stage ends there
            runner.send_message("lt_closed", result)

        gevent.spawn(close)

    def on_finish(environment: Any, msg: Any) -> None:
        if LLMUser.engine is not None:
            LLMUser.engine.stop_watchers()
            LLMUser.engine.gate.close()
        if msg.data.get("abort"):
            runner.stop()  # kills users: in-flight requests record themselves as cancelled
        forwarder.flush()
        runner.send_message("lt_finished", {})

    for name, handler in (
        ("lt_spec", on_spec),
        ("lt_open", on_open),
        ("lt_arrivals", on_arrivals),
        ("lt_close", on_close),
        ("lt_finish", on_finish),
    ):
        runner.register_message(name, handler)
    gevent.signal_handler(signal.SIGTERM, runner.quit)
    gevent.signal_handler(signal.SIGINT, lambda: None)  # the master decides when a run ends
    runner.greenlet.join()
    for greenlet in greenlets:
        greenlet.kill()
    return 0


def _quiet_gc() -> None:
    """The cyclic collector scans less: what is loaded by now (locust, gevent, the toolkit) is never garbage, so it
    is frozen out of every collection, and the youngest generation is collected every 10,000 allocations instead
    of 700. Each streamed chunk allocates a few dicts and lists that die at once (freed by reference counting, not
    by the collector); the default threshold ran a collection every ~150 chunks (3 % of the engine at 1,000 paced
    streams, docs/performance.md)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.engine")
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--master", action="store_true")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bind-host", default="127.0.0.1")
    parser.add_argument("--master-host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5557)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="engine: %(message)s")
    logging.getLogger("locust").setLevel(logging.ERROR)
    _quiet_gc()
    if args.worker:
        return run_worker(args.master_host, args.port)
    if args.run_dir is None:
        parser.error("RUN_DIR is required")
    spec = RunSpec.read(args.run_dir / SPEC_FILE)
    try:
        if args.master:
            return run_master(spec, args.run_dir, args.workers, args.bind_host, args.port)
        return run_local(spec, args.run_dir)
    except ScenarioModuleError as exc:  # a Python scenario's module that cannot be loaded: one line
        print(f"{SCENARIO_FAILED} {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
