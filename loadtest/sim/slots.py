"""The simulator's fixed-slots model: at most ``slots`` requests served at once from one FIFO queue, with fixed
times — an M/D/c server when the arrivals are Poisson, whose waiting times queueing theory knows exactly.

Pure and deterministic, like :mod:`loadtest.sim.batching`: no I/O, no clock; whoever drives it owns time.

A request waits in the queue until a slot is free (first come, first served: the head of the queue takes the first
slot that frees), holds that slot for ``prefill_s`` and then emits its first token, then one more token every
``tpot_s``, and leaves the slot with its last token (a prefill-only request — embeddings — with its prefill). So

* TTFT = wait in the queue + ``prefill_s``; every later token ``tpot_s`` after the one before;
* a request with ``n`` output tokens holds its slot ``D = prefill_s + (n − 1)·tpot_s`` (``prefill_s`` when
  ``n = 0``): with a fixed ``max_tokens`` every request's D is the same, and the server is an M/D/c queue.

Each slot is driven like a replica of the batching model, one step at a time (:meth:`Slot.next_step`, then
:meth:`Slot.finish_step` when its time is over): a step is a request's prefill or one of its tokens. A slot that has
finished its request takes the head of the queue when it plans its next step, at the instant its last step ended,
so a queued request starts exactly when a slot frees.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from loadtest.sim.batching import BatchRequest, StepPlan, TokenEvent

__all__ = ["Slot", "SlotPool"]


class _Held:
    __slots__ = ("emitted", "request")

    def __init__(self, request: BatchRequest) -> None:
        self.request = request
        self.emitted = 0


class Slot:
    """One slot of a :class:`SlotPool`: the request it holds, one step at a time."""

    def __init__(self, pool: SlotPool) -> None:
        self._pool = pool
        self._held: _Held | None = None
        self._in_step = False
        self.steps = 0

    @property
    def busy(self) -> bool:
        """True between :meth:`next_step` and :meth:`finish_step`."""
        return self._in_step

    @property
    def running(self) -> int:
        return 0 if self._held is None else 1

    @property
    def request_id(self) -> int | None:
        return None if self._held is None else self._held.request.request_id

    def next_step(self) -> StepPlan | None:
        """The held request's next token, else the queue's head and its prefill; ``None`` when the queue is empty
        (the slot goes idle)."""
        if self._in_step:
            raise RuntimeError("a step is already in flight; call finish_step first")
        pool = self._pool
        admitted: tuple[int, ...] = ()
        prefill = 0
        if self._held is None:
            taken = pool.take(self)
            if taken is None:
                return None
            self._held = _Held(taken)
            admitted, prefill = (taken.request_id,), taken.prompt_tokens
            duration = pool.prefill_s
        else:
            duration = pool.tpot_s
        self._in_step = True
        plan = StepPlan(self.steps, duration, admitted, 0 if admitted else 1, 0.0, prefill)
        self.steps += 1
        return plan

    def finish_step(self) -> list[TokenEvent]:
        """End the step in flight: the held request emits a token (its first after the prefill; none if it is
        prefill-only) and leaves the slot with its last one."""
        if not self._in_step:
            raise RuntimeError("no step in flight")
        self._in_step = False
        held = self._held
        if held is None:  # its request was cancelled during the step
            return []
        request = held.request
        if request.output_tokens > 0:
            held.emitted += 1
        finished = held.emitted >= request.output_tokens
        if finished:
            self._held = None
            self._pool.forget(request.request_id)
        return [TokenEvent(request.request_id, held.emitted, finished)]

    def drop(self) -> None:
        """The held request is cancelled: the slot is free once the step in flight (if any) ends."""
        self._held = None


class SlotPool:
    """``slots`` slots sharing one FIFO queue (see the module docstring). Times in seconds."""

    def __init__(self, slots: int, prefill_s: float, tpot_s: float) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        if prefill_s <= 0 or tpot_s <= 0:
            raise ValueError("prefill and per-token times must be positive")
        self.prefill_s = prefill_s
        self.tpot_s = tpot_s
        self.lanes: tuple[Slot, ...] = tuple(Slot(self) for _ in range(slots))
        self._queue: deque[BatchRequest] = deque()
        self._where: dict[int, Slot | None] = {}  # request id -> the slot holding it, None while queued

    @property
    def replica_count(self) -> int:
        return 1

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return sum(slot.running for slot in self.lanes)

    @property
    def kv_used(self) -> int:
        return 0

    @property
    def outstanding(self) -> int:
        """Requests submitted and not finished (waiting + held)."""
        return len(self._where)

    def submit_all(self, requests: Sequence[BatchRequest]) -> int:
        """Queue ``requests`` in order; returns 0 (the pool has no replicas to choose from). ``ValueError`` (and
        nothing queued) when an id is in use or a token count is negative."""
        ids = [r.request_id for r in requests]
        if len(set(ids)) != len(ids) or any(i in self._where for i in ids):
            raise ValueError("request id already queued")
        if any(r.prompt_tokens < 0 or r.output_tokens < 0 for r in requests):
            raise ValueError("token counts must be >= 0")
        for request in requests:
            self._where[request.request_id] = None
            self._queue.append(request)
        return 0

    def wake(self, home: int) -> list[int]:
        """The slots to start after a submit: every idle one (the first takes the queue's head)."""
        return [i for i, slot in enumerate(self.lanes) if not slot.busy and slot.running == 0]

    def cancel(self, request_id: int, home: int = 0) -> bool:
        """Drop a request, queued or held; False if unknown or already finished."""
        if request_id not in self._where:
            return False
        slot = self._where.pop(request_id)
        if slot is None:
            self._queue.remove(next(r for r in self._queue if r.request_id == request_id))
        else:
            slot.drop()
        return True

    def take(self, slot: Slot) -> BatchRequest | None:
        """The queue's head for ``slot``, or None when nobody waits."""
        if not self._queue:
            return None
        request = self._queue.popleft()
        self._where[request.request_id] = slot
        return request

    def forget(self, request_id: int) -> None:
        self._where.pop(request_id, None)
