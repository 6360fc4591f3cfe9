"""The raw request record: the contract between the load generator and the analysis.

One record per request attempt, whatever happened to it. Times are epoch seconds as floats, taken from one
monotonic clock anchored to the wall clock at process start (:class:`loadtest.client.clock.Clock`), so differences
between them are exact to the microsecond and never jump with NTP.

Fields (see ``docs/metrics.md`` for what is derived from them):

``scheduled_at``   when the request was meant to start (closed loop: when its user became free)
``started_at``     just before the request bytes were handed to the socket
``first_token_at`` when the first chunk with non-empty content arrived (stamped before the chunk is parsed)
``last_token_at``  when the last content chunk arrived
``ended_at``       when the response was complete (``[DONE]`` or end of body) or the failure was seen

``prompt_tokens`` is the input length the server counted (``usage.prompt_tokens``; ``None`` when it reported
none), ``asked_prompt_tokens`` the length the workload asked for, in the server's tokens (``None`` for a dataset's
prompt, and in run directories written before it was recorded); ``docs/metrics.md`` defines their deviation.

``flow_id`` and ``step_index`` place a call made by a Python scenario's flow (``docs/scenarios-python.md``): which
flow it belongs to (unique in the run: the worker's name and its flow count) and the call's position in the flow from
0; both ``None`` for a request of a TOML scenario, and in run directories written before flows existed. A flow's
call has the step's name (the call's ``name=``) as its ``request_class``, so everything computed per class is
computed per step.

``cached_tokens`` is how many of the prompt's tokens the server served from its prefix cache
(``usage.prompt_tokens_details.cached_tokens``, as vLLM, OpenAI and Databricks report it); ``None`` when it said
nothing.

``attempt`` is 0 for a request's first attempt and counts retries after a 429 (``[retry] policy = "retry-after"``);
``(worker, seq, attempt)`` identifies a record.

Two forms of a record line. On the wire (a worker forwarding to the master) and from :func:`dump_record`,
``chunk_gaps`` is an inline JSON list. On disk (run-directory format 2, written by
:class:`loadtest.engine.conduct.Recorder`) the gaps live in the binary side file ``chunk_gaps.f32`` — little-endian
float32 seconds, every record's gaps back to back — and the line carries ``gap_offset`` (index of its first gap, in
float32 elements) and ``gap_count`` instead, both null when it has no gaps. :func:`read_records` reads either form
of run directory (format 1 lines carry the inline list).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal, get_args

import orjson

__all__ = [
    "ERROR_CLASSES",
    "GAPS_FILE",
    "RECORDS_FILE",
    "RECORD_FIELDS",
    "ErrorClass",
    "RequestRecord",
    "TokenSource",
    "dump_record",
    "json_lines",
    "load_record",
    "read_records",
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
    asked_prompt_tokens: int | None = None
    flow_id: str | None = None
    step_index: int | None = None
    cached_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error_class is None


RECORD_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(RequestRecord))
RECORDS_FILE: Final = "records.jsonl"
GAPS_FILE: Final = "chunk_gaps.f32"


def dump_record(record: RequestRecord, sample: Mapping[str, Any] | None = None) -> bytes:
    """One JSON line (with trailing newline) for a record, ``chunk_gaps`` inline (the wire form). A record chosen as
    a sample carries it under ``"sample"`` (:func:`loadtest.rundir.samples.sample_extras`); the writer of the run
    directory moves it to ``samples.jsonl``."""
    # not dataclasses.asdict: it deep-copies every gap (≈ 60 µs for 64 gaps); orjson writes a tuple as a list
    line = {name: getattr(record, name) for name in RECORD_FIELDS}
    if sample is not None:
        line["sample"] = sample
    return orjson.dumps(line) + b"\n"


def _record(raw: dict[str, Any]) -> RequestRecord:
    values: dict[str, Any] = {name: raw.get(name) for name in RECORD_FIELDS}
    values["attempt"] = values["attempt"] or 0
    gaps = values["chunk_gaps"]
    values["chunk_gaps"] = tuple(gaps) if gaps is not None else None
    return RequestRecord(**values)


def load_record(line: bytes | str) -> RequestRecord:
    """Parse one JSON line (the wire form) back into a record; unknown keys are ignored, missing optional keys
    become None."""
    return _record(orjson.loads(line))


def json_lines(path: Path) -> Iterator[Any]:
    """The JSON values of a file written a line at a time (``records.jsonl``, ``flows.jsonl``), blank lines skipped;
    an unterminated last line that is not JSON — a crash mid-write — ends the file, any other bad line raises."""
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                if line.endswith(b"\n"):
                    raise
                return  # the unterminated last line of a crashed run


def read_records(run_dir: Path) -> Iterator[RequestRecord]:
    """The records of a run directory in file order, ``chunk_gaps`` joined back from ``chunk_gaps.f32`` (as Python
    floats holding the stored float32 values). A partial last line (a crash mid-write) is skipped; a record whose
    gaps are not all in the side file gets ``chunk_gaps = None``. Reads format 1 (inline gaps) too."""
    gaps_path = run_dir / GAPS_FILE
    side = gaps_path.read_bytes() if gaps_path.exists() else b""
    for raw in json_lines(run_dir / RECORDS_FILE):
        offset, count = raw.get("gap_offset"), raw.get("gap_count")
        if count is not None:
            ok = offset is not None and offset >= 0 and count >= 0 and (offset + count) * 4 <= len(side)
            raw["chunk_gaps"] = struct.unpack_from(f"<{count}f", side, offset * 4) if ok else None
        yield _record(raw)
