"""``records.jsonl`` → Arrow tables of the record schema, slice by slice (the source of truth for
:mod:`analysis.frame` and the columnar copy :mod:`analysis.columnar` writes).

In a format 2 run directory the lines carry ``gap_offset`` / ``gap_count`` into ``chunk_gaps.f32``; format 1 lines
carry the gaps inline (float64, the ``chunk_gaps`` list column). Joining the side file's gaps is the reader's
(:func:`analysis.frame.side_gaps`).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]

__all__ = [
    "FLOAT_COLS",
    "FREE_TEXT_COLS",
    "GAP_REF_COLS",
    "INT_COLS",
    "RECORD_SCHEMA",
    "STR_COLS",
    "read_slices",
]

FLOAT_COLS = ("scheduled_at", "started_at", "first_token_at", "last_token_at", "ended_at", "retry_after_s")
INT_COLS = (
    "seq",
    "status",
    "prompt_tokens",
    "output_tokens",
    "client_output_tokens",
    "max_tokens",
    "attempt",
    "asked_prompt_tokens",
    "step_index",
    "cached_tokens",
)
STR_COLS = (
    "run_id",
    "stage",
    "request_class",
    "endpoint",
    "worker",
    "error_class",
    "error_detail",
    "token_source",
    "finish_reason",
    "server_request_id",
    "flow_id",
)
FREE_TEXT_COLS = ("error_detail", "server_request_id", "flow_id")
GAP_REF_COLS = ("gap_offset", "gap_count")  # format 2: where the record's gaps are in chunk_gaps.f32
_GAPS_TYPE = pa.list_(pa.float64())  # format 1: inline lists
RECORD_SCHEMA = pa.schema(
    [(c, pa.float64()) for c in FLOAT_COLS]
    + [(c, pa.int64()) for c in INT_COLS + GAP_REF_COLS]
    + [(c, pa.string()) for c in STR_COLS]
    + [("chunk_gaps", _GAPS_TYPE)]
)  # RequestRecord's fields (tests/unit/test_rundir.py holds the two in step), and format 2's gap references


def _complete_length(path: Path) -> tuple[int, int]:
    """(bytes up to and including the last newline, 1 if a non-empty unparsable tail follows it else 0)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        pos = size
        tail = b""
        while pos > 0:
            step = min(pos, 1 << 16)
            fh.seek(pos - step)
            tail = fh.read(step) + tail
            pos -= step
            cut = tail.rfind(b"\n")
            if cut >= 0:
                end = pos + cut + 1
                rest = tail[cut + 1 :]
                break
        else:
            end, rest = 0, tail
    if not rest.strip():
        return size, 0
    try:
        orjson.loads(rest)
    except orjson.JSONDecodeError:
        return end, 1
    return size, 0


_CHUNK_BYTES = 128 << 20
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)  # not on Windows


def read_slices(path: Path) -> Iterator[tuple[pa.Table, int]]:
    """``(table, lines skipped)`` per slice of ``records.jsonl``, in file order; the tables have
    :data:`RECORD_SCHEMA` and one chunk each.

    Arrow's JSON reader runs over slices of about 128 MB cut at line ends, so that its working memory is one
    slice's, not the file's; each slice is still parsed by several threads (2 MB blocks). The file is memory-mapped
    (no copy into Python bytes) and each slice's pages are let go once parsed, so they leave the RSS too. A slice
    Arrow refuses (a corrupt line, a field of the wrong type) is read line by line instead, skipping and counting
    the bad lines; a partial last line (a crash mid-write) is skipped and counted, with the last slice."""
    length, tail = _complete_length(path)
    if length == 0:
        yield RECORD_SCHEMA.empty_table(), tail
        return
    options = {
        "read_options": pa_json.ReadOptions(block_size=2 << 20),
        "parse_options": pa_json.ParseOptions(
            explicit_schema=RECORD_SCHEMA, unexpected_field_behavior="ignore"
        ),
    }
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_READ) as mm:
        pos = 0
        while pos < length:
            end = mm.rfind(b"\n", pos, pos + _CHUNK_BYTES) + 1 if pos + _CHUNK_BYTES < length else length
            if end <= pos:  # a line longer than a slice
                end = mm.find(b"\n", pos + _CHUNK_BYTES) + 1 or length
            skipped = tail if end == length else 0
            with memoryview(mm)[pos:end] as view:
                try:
                    table = pa_json.read_json(pa.BufferReader(pa.py_buffer(view)), **options)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    table, bad = _read_lines(view)
                    skipped += bad
            if (
                _DONTNEED is not None
            ):  # the parsed pages are the file's: dropping them from the map loses nothing
                mm.madvise(_DONTNEED, 0, end - end % mmap.PAGESIZE)
            yield table.combine_chunks(), skipped  # one chunk per slice, not one per 2 MB block
            pos = end


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fits(row: Any) -> bool:
    """A JSON object whose known fields have the record schema's types (missing or null ones are fine)."""
    if not isinstance(row, dict):
        return False
    for f in RECORD_SCHEMA:
        v = row.get(f.name)
        if v is None:
            continue
        if f.type == pa.string():
            ok = isinstance(v, str)
        elif f.type == pa.int64():
            ok = _number(v) and -(2**63) <= v < 2**63 and float(v).is_integer()
        elif f.type == pa.float64():
            ok = _number(v)
        else:  # chunk_gaps
            ok = isinstance(v, list) and all(g is None or _number(g) for g in v)
        if not ok:
            return False
    return True


def _read_lines(text: memoryview) -> tuple[pa.Table, int]:
    """The tolerant path: line by line, a line that is not a JSON object of the record's types is skipped and
    counted."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for line in bytes(text).split(b"\n"):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            row = None
        if _fits(row):
            rows.append(row)
        else:
            skipped += 1
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA), skipped
