"""Read a run directory into typed, raw-valued tables. Pure: no live runner, only files.

Derived per-request metrics (seconds; ``docs/metrics.md`` has the definitions):

==================== =====================================================================
``ttft``              ``first_token_at − started_at``
``ttft_from_intended````first_token_at − scheduled_at`` (includes the generator's own delay)
``e2e``               ``ended_at − started_at``
``tpot``              ``(e2e − ttft) / (output_tokens − 1)``; NaN when output_tokens ≤ 1 or no TTFT
``lag``               ``started_at − scheduled_at``
``ok``                ``error_class`` is null
==================== =====================================================================

NaN marks "undefined" inside a frame; summaries turn it into ``None`` before anything is shown. Text columns with
few distinct values (stage, class, error class, ...) are categoricals; ``error_detail`` and ``server_request_id``
are Python strings.

``records.jsonl`` is parsed by Arrow's multithreaded JSON reader against the record schema, so ``chunk_gaps`` stays
one flat float64 buffer with offsets (an Arrow ``list<double>`` column) instead of a Python list per request; see
:func:`flat_gaps`. A file Arrow refuses (a corrupt line in the middle) is read line by line instead, skipping and
counting the bad lines; a partial last line (a crash mid-write) is skipped and counted on either path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.json as pa_json  # type: ignore[import-untyped]

from loadtest.errors import ConfigError

__all__ = ["RunData", "flat_gaps", "load_records", "load_run", "with_metrics"]

_FLOAT_COLS = ("scheduled_at", "started_at", "first_token_at", "last_token_at", "ended_at", "retry_after_s")
_INT_COLS = (
    "seq",
    "status",
    "prompt_tokens",
    "output_tokens",
    "client_output_tokens",
    "max_tokens",
    "attempt",
)
_STR_COLS = (
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
)
_FREE_TEXT_COLS = ("error_detail", "server_request_id")
_GAPS_TYPE = pa.list_(pa.float64())
_SCHEMA = pa.schema(
    [(c, pa.float64()) for c in _FLOAT_COLS]
    + [(c, pa.int64()) for c in _INT_COLS]
    + [(c, pa.string()) for c in _STR_COLS]
    + [("chunk_gaps", _GAPS_TYPE)]
)


@dataclass(frozen=True, slots=True)
class RunData:
    """A finished (or interrupted) run as read from disk."""

    run_dir: Path
    manifest: dict[str, Any]
    records: pd.DataFrame
    skipped_lines: int


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


def _read_arrow(path: Path) -> tuple[pa.Table, int]:
    """Arrow's JSON reader over slices of about 128 MB cut at line ends, so that its working memory is one
    slice's, not the file's; each slice is still parsed by several threads (2 MB blocks)."""
    length, skipped = _complete_length(path)
    options = {
        "read_options": pa_json.ReadOptions(block_size=2 << 20),
        "parse_options": pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore"),
    }
    tables = []
    rest = b""
    with path.open("rb") as fh:
        left = length
        while left > 0:
            chunk = fh.read(min(_CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            data = rest + chunk
            cut = data.rfind(b"\n") + 1 if left > 0 else len(data)
            rest = data[cut:]
            if cut:
                table = pa_json.read_json(pa.BufferReader(memoryview(data)[:cut]), **options)
                tables.append(table.combine_chunks())  # one chunk per slice, not one per 2 MB block
    if not tables:
        return _SCHEMA.empty_table(), skipped
    return _one_gaps_buffer(tables), skipped


def _one_gaps_buffer(tables: list[pa.Table]) -> pa.Table:
    """Concatenate the slices' tables, moving every ``chunk_gaps`` value into one float64 buffer (slice by slice,
    so the old and new buffers never both exist whole): :func:`flat_gaps` then returns views, not copies."""
    lengths, nulls = [], []
    for table in tables:
        chunk = table.column("chunk_gaps").chunk(0)
        lengths.append(np.diff(chunk.offsets.to_numpy()))
        nulls.append(chunk.is_null().to_numpy(zero_copy_only=False))
    counts = np.concatenate(lengths).astype("int64")
    values = np.empty(int(counts.sum()), dtype="float64")
    pos = 0
    for i, table in enumerate(tables):
        chunk = table.column("chunk_gaps").chunk(0)
        offsets = chunk.offsets.to_numpy()
        child = chunk.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]  # noqa: PD011
        values[pos : pos + child.size] = child
        pos += child.size
        tables[i] = table.drop_columns(["chunk_gaps"])
    big = values.size >= 2**31  # past int32 offsets: a large list
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))), type=pa.int64() if big else pa.int32())
    make = pa.LargeListArray.from_arrays if big else pa.ListArray.from_arrays
    gaps = make(offsets, pa.array(values), mask=pa.array(np.concatenate(nulls)))
    return pa.concat_tables(tables).append_column("chunk_gaps", pa.chunked_array([gaps]))


def _read_lines(path: Path) -> tuple[pa.Table, int]:
    """The tolerant path: line by line, a line that is not a JSON object is skipped and counted."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                skipped += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                skipped += 1
    columns: dict[str, pa.Array] = {}
    for f in _SCHEMA:
        values = [r.get(f.name) for r in rows]
        if f.type == pa.int64():
            values = [None if v is None else int(v) for v in values]
        elif f.type == pa.float64():
            values = [None if v is None else float(v) for v in values]
        columns[f.name] = pa.array(values, type=f.type)
    return pa.table(columns, schema=_SCHEMA), skipped


def _to_frame(table: pa.Table) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for col in _FLOAT_COLS:
        data[col] = table.column(col).to_numpy().astype("float64", copy=False)
    for col in _INT_COLS:
        data[col] = pd.array(table.column(col).to_pandas(), dtype="Int64")
    for col in _STR_COLS:
        if col in _FREE_TEXT_COLS:
            data[col] = table.column(col).to_pandas().astype("object")
        else:  # few distinct values: a categorical holds one Python string per value, not per row
            data[col] = table.column(col).dictionary_encode().to_pandas()
    data["chunk_gaps"] = pd.arrays.ArrowExtensionArray(table.column("chunk_gaps"))
    frame = pd.DataFrame(data)
    frame["attempt"] = frame["attempt"].fillna(0)
    return frame


def load_records(path: Path) -> tuple[pd.DataFrame, int]:
    """Parse ``records.jsonl``; a partial last line (crash mid-write) is skipped and counted, never fatal."""
    if not path.exists():
        return with_metrics(_to_frame(_SCHEMA.empty_table())), 0
    try:
        table, skipped = _read_arrow(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table, skipped = _read_lines(path)
    return with_metrics(_to_frame(table)), skipped


def _flat_chunk(arr: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets).astype("int64")
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    if lengths[nulls].any():  # a null slot that owns values (not from the JSON reader): copy without them
        lengths[nulls] = 0
        return arr.flatten().to_numpy(zero_copy_only=False).astype("float64", copy=False), lengths
    child = arr.values.to_numpy(zero_copy_only=False)  # noqa: PD011 (an Arrow array, not pandas)
    return child[offsets[0] : offsets[-1]].astype("float64", copy=False), lengths


def flat_gaps(gaps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, lengths)``: every row's chunk gaps back to back as one float64 array, and each row's count
    (0 for a null or empty list). Fast for the Arrow list column :func:`load_records` builds; also accepts an
    object column of lists or tuples (hand-built frames)."""
    if isinstance(gaps.dtype, pd.ArrowDtype):
        parts = [_flat_chunk(chunk) for chunk in pa.chunked_array(gaps.array._pa_array).chunks]
        if len(parts) <= 1:
            return parts[0] if parts else (np.empty(0, dtype="float64"), np.zeros(0, dtype="int64"))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    rows = [row if isinstance(row, (list, tuple, np.ndarray)) else () for row in gaps]
    lengths = np.fromiter((len(r) for r in rows), dtype="int64", count=len(rows))
    values = np.fromiter((g for r in rows for g in r), dtype="float64", count=int(lengths.sum()))
    return values, lengths


def with_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived per-request columns (see module docstring)."""
    out = frame
    out["ok"] = out["error_class"].isna()
    out["ttft"] = out["first_token_at"] - out["started_at"]
    out["ttft_from_intended"] = out["first_token_at"] - out["scheduled_at"]
    out["e2e"] = out["ended_at"] - out["started_at"]
    out["lag"] = out["started_at"] - out["scheduled_at"]
    tokens = out["output_tokens"].astype("float64")
    decode = out["e2e"] - out["ttft"]
    out["tpot"] = (decode / (tokens - 1.0)).where(tokens > 1.0)
    return out


def load_run(run_dir: Path) -> RunData:
    """Read ``manifest.json`` and ``records.jsonl`` from a run directory."""
    if not run_dir.is_dir():
        raise ConfigError(f"no run directory at {run_dir}")
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no manifest.json)")
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError:
        raise ConfigError(f"{manifest_path} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise ConfigError(f"{manifest_path} is not a run manifest (not a JSON object)")
    records, skipped = load_records(run_dir / "records.jsonl")
    return RunData(run_dir=run_dir, manifest=manifest, records=records, skipped_lines=skipped)
