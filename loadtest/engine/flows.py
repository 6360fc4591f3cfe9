"""Python scenarios in the engine: :class:`FlowUser`, whose Locust tasks are flows of model calls, and loading the
scenario's module (``docs/scenarios-python.md``).

A *flow* is one run of one of a user's tasks. Each task is wrapped (:func:`_as_flow`) so that, before it runs, the
user takes its turn the way every user of the engine does (:func:`loadtest.engine.users.next_ticket`: a closed-loop
turn while the stage admits it, or the next open-loop arrival), and after it ends one line goes to ``flows.jsonl``
(:class:`loadtest.rundir.flows.FlowRecord`). Inside, ``self.chat`` / ``self.complete`` / ``self.embed`` send one
call each through the engine's own path (:meth:`loadtest.engine.users.Engine.attempts`: the same transport, timing,
classification, retries and back-off as any request), record it with the flow's id and the step's position, and
return a :class:`Reply` — the answer's text (or vectors) and usage — so the flow can use what the model said. A call
that failed raises :class:`CallFailed` (the flow ends ``failed`` unless the task catches it); any other exception is
the scenario's own bug: the flow ends ``error`` with the file and line, the first of each kind is reported once, and
the user goes on with its next flow.

A flow counts as in flight from its first line to its last, so a stage's drain waits for flows, not just requests;
a flow that started in a stage keeps that stage's label for all its calls, and one still running when the drain
times out is stopped (:class:`loadtest.engine.users.DrainCut`: its call in flight and the flow are ``cancelled``), so
no flow carries its load into the next stage. In an open loop an arrival starts one
flow and ``wait_time`` is not applied (the arrivals set the pace); in a closed loop ``wait_time`` is the think time
between one flow and the user's next, as in Locust.

Part of the engine's gevent door (imports gevent and locust), as is :mod:`loadtest.engine.scenario_module`, which
imports the scenario's module, in the engine process only, after :mod:`loadtest.engine.roles` has monkey-patched it.
Scenario modules import this one as :mod:`loadtest.flows`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import gevent
import orjson
from locust import User, between, constant, constant_pacing, task
from locust.env import Environment
from locust.exception import InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately, StopUser

from loadtest.client.execute import RecordContext
from loadtest.client.protocol import PreparedRequest, RequestClass, RequestKind, build_request
from loadtest.client.records import RequestRecord
from loadtest.client.scrub import header_secrets, redact
from loadtest.engine.users import DrainCut, Engine, LLMUser, Pacing, next_ticket
from loadtest.errors import ConfigError
from loadtest.rundir.flows import FlowOutcome, FlowRecord, dump_flow

__all__ = [
    "CallFailed",
    "FlowUser",
    "Reply",
    "ScenarioModuleError",
    "between",
    "constant",
    "constant_pacing",
    "innermost_line",
    "task",
]

Message = dict[str, Any]
_F = TypeVar("_F", bound=Callable[..., Any])
_CONTROL = (StopUser, InterruptTaskSet, RescheduleTask, RescheduleTaskImmediately)


@dataclass(frozen=True, slots=True)
class Reply:
    """What one call got back: the answer's ``text`` (the chunks that arrived, joined), the
    ``vectors`` of an embeddings call, and the call's ``record`` (its timings, usage and error)."""

    text: str
    record: RequestRecord
    vectors: list[list[float]] | None = None

    @property
    def ok(self) -> bool:
        return self.record.ok

    @property
    def prompt_tokens(self) -> int | None:
        return self.record.prompt_tokens

    @property
    def output_tokens(self) -> int | None:
        return self.record.output_tokens

    @property
    def cached_tokens(self) -> int | None:
        return self.record.cached_tokens

    @property
    def ttft_s(self) -> float | None:
        first = self.record.first_token_at
        return first - self.record.started_at if first is not None else None

    def message(self) -> Message:
        """The answer as the next turn's assistant message."""
        return {"role": "assistant", "content": self.text}


class ScenarioModuleError(ConfigError):
    """The scenario's module cannot be run: it raised while imported, defines no FlowUser, names one it lacks."""


class CallFailed(Exception):
    """A call got no usable answer (an HTTP error, a timeout, a cut stream …): the endpoint's doing. Raised by
    ``self.chat`` / ``complete`` / ``embed``; a task may catch it to go on, otherwise its flow ends ``failed``."""

    def __init__(self, step: str, reply: Reply) -> None:
        record = reply.record
        super().__init__(f"step {step!r} failed: {record.error_class}: {record.error_detail}")
        self.step = step
        self.reply = reply


@dataclass(slots=True)
class _Flow:
    flow_id: str
    ctx: RecordContext
    user: str
    task: str
    scheduled_at: float
    started_at: float
    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0


class FlowUser(User):
    """The base of a Python scenario's users: Locust's ``@task``, weights, ``wait_time``, ``on_start`` and
    ``on_stop``, plus calls to the endpoint under test that are measured like every request of the tool.

    ``self.random`` is this user's own random generator, seeded by the run's seed and the user's place, so a run
    with the same seed draws the same flows."""

    abstract = True
    _think: ClassVar[Callable[[Any], float] | None] = None

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.pacing = Pacing()
        engine = LLMUser.engine
        seed = engine.spec.seed if engine is not None else 0
        worker = engine.index if engine is not None else 0
        self.random = random.Random(f"{seed}/flows/{worker}/{self.pacing.index}")
        self._flow: _Flow | None = None
        self._last: RequestRecord | None = None  # the flow's last call (its back-off after a failure)
        self._ran = False  # whether the last task really ran a flow (else no think time follows)
        self._failed_start = False  # on_start raised: this user runs no flow (its error was reported)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.tasks = [t if getattr(t, "_loadtest_flow", False) else _as_flow(t) for t in cls.tasks]
        think = cls.__dict__.get("wait_time")
        if think is not None:
            cls._think = think
            del cls.wait_time  # FlowUser.wait_time decides when the user's own applies
        on_start = cls.__dict__.get("on_start")
        if on_start is not None and not getattr(on_start, "_loadtest_guarded", False):
            cls.on_start = _guarded(on_start)  # type: ignore[method-assign]

    def wait_time(self) -> float:
        """The user's ``wait_time`` after a closed-loop flow; none after an open-loop one or a pass without one."""
        think = type(self)._think
        engine = LLMUser.engine
        stage = engine.gate.stage if engine is not None else None
        if not self._ran or think is None or (stage is not None and stage.open_loop):
            return 0.0
        return float(think(self))

    # -- calls -----------------------------------------------------------------------------------------------

    def chat(
        self,
        messages: str | Sequence[Message],
        *,
        name: str = "chat",
        max_tokens: int = 256,
        temperature: float = 0.0,
        stream: bool = True,
        ignore_eos: bool = True,
        **extra_body: Any,
    ) -> Reply:
        """One chat completion (``messages``: a list of ``{"role", "content"}`` or a user message's text) as step
        ``name``. ``ignore_eos`` (default, as every request of the tool) makes the answer exactly ``max_tokens``
        long on servers that honour it; pass False for the model's natural length."""
        prompt = messages if isinstance(messages, str) else [dict(m) for m in messages]
        cls = RequestClass(name, "chat", stream=stream, ignore_eos=ignore_eos, temperature=temperature)
        return self._generate(cls, prompt, max_tokens, extra_body)

    def complete(
        self,
        prompt: str,
        *,
        name: str = "completions",
        max_tokens: int = 256,
        temperature: float = 0.0,
        stream: bool = True,
        ignore_eos: bool = True,
        **extra_body: Any,
    ) -> Reply:
        """One text completion of ``prompt`` as step ``name``."""
        cls = RequestClass(name, "completions", stream=stream, ignore_eos=ignore_eos, temperature=temperature)
        return self._generate(cls, prompt, max_tokens, extra_body)

    def embed(self, inputs: str | Sequence[str], *, name: str = "embed", **extra_body: Any) -> Reply:
        """Embeddings of ``inputs`` (one text or several) as step ``name``; the reply's ``vectors``."""
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]

        def build(engine: Engine) -> PreparedRequest:
            body = {"model": engine.spec.endpoint.model, "input": texts, **extra_body}
            return PreparedRequest(
                url=engine.spec.endpoint.url_for("embeddings"),
                body=orjson.dumps(body),
                stream=False,
                max_tokens=None,
                request_class=name,
                kind="embeddings",
            )

        return self._call(name, "embeddings", build)

    def _generate(
        self, cls: RequestClass, prompt: str | list[Message], max_tokens: int, extra_body: dict[str, Any]
    ) -> Reply:
        """A chat or completions call of step ``cls.name`` (its body built as every request of the tool is)."""
        cls = replace(cls, extra_body=extra_body)

        def build(engine: Engine) -> PreparedRequest:
            return build_request(
                engine.spec.endpoint, cls, prompt, max_tokens=max_tokens, include_usage=engine.include_usage
            )

        return self._call(cls.name, cls.kind, build)

    def _call(self, name: str, kind: RequestKind, build: Callable[[Engine], PreparedRequest]) -> Reply:
        engine = LLMUser.engine
        flow = self._flow
        if engine is None or flow is None:
            raise RuntimeError(
                f"self.{_VERB[kind]}() outside a task: calls are measured as steps of a flow, and a flow is one "
                "run of a @task (on_start runs before any stage: prepare data there, call the model in tasks)"
            )
        if not isinstance(name, str) or not name:
            raise ValueError("name= must be a non-empty string: it is the step's name in the records")
        known = engine.step_kinds.setdefault(name, kind)
        if known != kind:
            raise ValueError(
                f"step {name!r} is already a {known} step: give the {kind} call its own name= "
                "(a step's records are analysed together)"
            )
        built = [build(engine)]  # a body that cannot be built is the scenario's error before it is a step
        index = flow.calls
        flow.calls += 1
        seq = engine.next_closed_seq()
        scheduled_at = flow.scheduled_at if index == 0 else engine.clock()
        record, capture = engine.attempts(
            seq,
            scheduled_at,
            lambda: built.pop() if built else build(engine),  # a retry builds it again
            engine.flow_capture,
            flow.ctx,
            (flow.flow_id, index),
        )
        if record.ok:
            flow.prompt_tokens += record.prompt_tokens or 0
            flow.output_tokens += record.output_tokens or 0
        self._last = record
        text = "".join(capture.content or ()) if kind != "embeddings" else ""
        vectors = _vectors(capture.body) if kind == "embeddings" and record.ok else None
        reply = Reply(text=text, record=record, vectors=vectors)
        if not record.ok:
            raise CallFailed(name, reply)
        return reply

    # -- one flow ------------------------------------------------------------------------------------------

    def _run_flow(self, task: Callable[[Any], Any], task_name: str) -> None:
        engine = LLMUser.engine
        self._ran = False
        if engine is None:  # a worker's users can spawn before the run's spec arrives
            gevent.sleep(0.05)
            return
        if (
            self._failed_start
        ):  # its on_start raised and the run is stopping: no flow without what it prepared
            engine.gate.wait_change()
            return
        ticket = next_ticket(engine, self.pacing.index)
        if ticket is None:
            return
        _seq, scheduled_at, closed_loop = ticket
        ctx = engine.gate.ctx
        assert ctx is not None
        engine.gate.started_in_stage += 1
        engine.enter()
        flow_id = f"{engine.name}/{engine.flows_started}"
        engine.flows_started += 1
        flow = self._flow = _Flow(flow_id, ctx, type(self).__name__, task_name, scheduled_at, engine.clock())
        self._last = None
        outcome: FlowOutcome = "ok"
        detail: str | None = None
        where: str | None = None
        try:
            task(self)
        except CallFailed as exc:
            outcome, detail = "failed", str(exc)
        except _CONTROL as exc:  # Locust's own way out of a task: the flow did not end, it was stopped
            outcome, detail = "cancelled", f"Locust's {type(exc).__name__} ended the task"
            raise
        except Exception as exc:
            outcome, detail, where = "error", _describe(exc, engine), _where(exc, engine)
            # the drain may run out while the report is on its way (a worker's message): the error is the outcome
            with contextlib.suppress(DrainCut):
                _report_error(engine, type(self).__name__, task_name, detail, where)
        except DrainCut:  # its stage's drain timed out: the flow ends here, the user goes on
            outcome, detail = "cancelled", "its stage's drain timed out (drain_timeout) before the flow ended"
        except BaseException:
            outcome, detail = "cancelled", "the run stopped the flow before it ended"
            raise
        finally:
            self._flow = None
            self._ran = True
            _end(engine, flow, outcome, detail, where)
            engine.leave()
        last = self._last
        if last is not None and not last.ok:
            self.pacing.after(engine, last, closed_loop)


_VERB: dict[str, str] = {"chat": "chat", "completions": "complete", "embeddings": "embed"}


def _as_flow(task: Any) -> Callable[[FlowUser], None]:
    """A task of a FlowUser as a flow (module docstring)."""
    if isinstance(task, type):
        raise ScenarioModuleError(
            f"{task.__name__}: a FlowUser's tasks are methods (a flow is one run of a @task); TaskSets are not "
            "supported"
        )
    name = getattr(task, "__name__", "task")

    def run(user: FlowUser) -> None:
        user._run_flow(task, name)

    run.__name__ = name
    run._loadtest_flow = True  # type: ignore[attr-defined]
    return run


def _guarded(on_start: _F) -> _F:
    """``on_start`` whose exception is one reported line (file:line) and stops the run (exit 2): a user that could
    not start would leave its stages with less load than they say."""

    def run(user: FlowUser) -> None:
        try:
            on_start(user)
        except _CONTROL:
            raise
        except Exception as exc:
            engine = LLMUser.engine
            if engine is None:
                raise
            detail, where = _describe(exc, engine), _where(exc, engine)
            _report_error(engine, type(user).__name__, "on_start", detail, where)
            user._failed_start = True
            engine.abort(
                f"{where + ': ' if where else ''}{detail} (in {type(user).__name__}.on_start): a user could not "
                "start, so the stages would not offer the load they say"
            )

    run._loadtest_guarded = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def _end(engine: Engine, flow: _Flow, outcome: FlowOutcome, detail: str | None, where: str | None) -> None:
    """The flow's line in ``flows.jsonl`` (through the engine's flow sink)."""
    line = FlowRecord(
        run_id=engine.spec.run_id,
        flow_id=flow.flow_id,
        user=flow.user,
        task=flow.task,
        stage=flow.ctx.stage,
        worker=engine.name,
        scheduled_at=flow.scheduled_at,
        started_at=flow.started_at,
        ended_at=engine.clock(),
        calls=flow.calls,
        prompt_tokens=flow.prompt_tokens,
        output_tokens=flow.output_tokens,
        outcome=outcome,
        error_detail=detail,
        where=where,
    )
    engine.flow_sink(dump_flow(line))


def _report_error(engine: Engine, user: str, task: str, detail: str, where: str | None) -> None:
    """The first scenario error of each kind (place and exception type) as an event — one line on the console;
    every flow it ends is counted in ``flows.jsonl``."""
    key = (where, detail.partition(":")[0])
    if key in engine.scenario_errors:
        return
    engine.scenario_errors.add(key)
    engine.report(
        "scenario_error", {"where": where, "detail": detail, "user": user, "task": task, "by": engine.name}
    )


def _describe(exc: BaseException, engine: Engine) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text, header_secrets(engine.auth.headers()))[:500]


def _where(exc: BaseException, engine: Engine) -> str | None:
    """``file.py:LINE`` of the innermost frame in the scenario's module (else of the innermost frame)."""
    module = engine.spec.python.module if engine.spec.python is not None else None
    return innermost_line(exc, module) or innermost_line(exc, None)


def innermost_line(exc: BaseException, path: str | None) -> str | None:
    """``file.py:LINE`` of the innermost frame of ``exc``'s traceback in the file ``path`` (any file: None)."""
    tb = exc.__traceback__
    found: str | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if path is None or code.co_filename == path:
            found = f"{Path(code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def _vectors(body: bytes | None) -> list[list[float]] | None:
    if not body:
        return None
    try:
        data = orjson.loads(body).get("data")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    return [d["embedding"] for d in data if isinstance(d, dict) and isinstance(d.get("embedding"), list)]
