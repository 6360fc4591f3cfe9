"""The raw request record: the contract between the load generator and the analysis.

One record per request attempt, whatever happened to it. Times are epoch seconds as floats, taken from one
monotonic clock anchored to the wall clock at process start (:class:`loadtest.clock.Clock`), so differences between
them are exact to the microsecond and never jump with NTP.

Fields (see ``docs/metrics.md`` for what is derived from them):

``scheduled_at``   when the request was meant to start (closed loop: when its user became free)
``started_at``     just before the request bytes were handed to the socket
``first_token_at`` when the first chunk with non-empty content arrived (stamped before the chunk is parsed)
``last_token_at``  when the last content chunk arrived
``ended_at``       when the response was complete (``[DONE]`` or end of body) or the failure was seen

``attempt`` is 0 for a request's first attempt and counts retries after a 429 (``[retry] policy = "retry-after"``);
``(worker, seq, attempt)`` identifies a record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Final, Literal, get_args

import orjson

__all__ = [
    "ERROR_CLASSES",
    "RECORD_FIELDS",
    "ErrorClass",
    "RequestRecord",
    "TokenSource",
    "dump_record",
    "load_record",
]

ErrorClass = Literal[
    "rate_limited",
    "server_error",
    "client_error",
    "timeout",
    "connection",
    "stream_cut",
    "protocol",
    "cancelled",
]
ERROR_CLASSES: Final[tuple[str, ...]] = get_args(ErrorClass)
TokenSource = Literal["usage", "client"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Everything measured about one request attempt. ``error_class is None`` means success."""

    run_id: str
    stage: str
    request_class: str
    endpoint: str
    worker: str
    seq: int
    scheduled_at: float
    started_at: float
    first_token_at: float | None
    last_token_at: float | None
    ended_at: float
    status: int | None
    error_class: ErrorClass | None
    error_detail: str | None
    retry_after_s: float | None
    prompt_tokens: int | None
    output_tokens: int | None
    token_source: TokenSource | None
    client_output_tokens: int | None
    max_tokens: int | None
    finish_reason: str | None
    chunk_gaps: tuple[float, ...] | None
    server_request_id: str | None
    attempt: int = 0

    @property
    def ok(self) -> bool:
        return self.error_class is None


RECORD_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(RequestRecord))


def dump_record(record: RequestRecord) -> bytes:
    """One JSON line (with trailing newline) for a record."""
    return orjson.dumps(asdict(record)) + b"\n"


def load_record(line: bytes | str) -> RequestRecord:
    """Parse one JSON line back into a record; unknown keys are ignored, missing optional keys become None."""
    raw: dict[str, Any] = orjson.loads(line)
    values: dict[str, Any] = {name: raw.get(name) for name in RECORD_FIELDS}
    values["attempt"] = values["attempt"] or 0
    gaps = values["chunk_gaps"]
    values["chunk_gaps"] = tuple(gaps) if gaps is not None else None
    return RequestRecord(**values)
