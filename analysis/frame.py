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

``records.jsonl`` is parsed by Arrow's multithreaded JSON reader against the record schema (:mod:`analysis.jsonl`),
once: the first analysis writes the parsed table to ``records.cache.parquet`` beside it, and later ones read that
columnar copy (:mod:`analysis.columnar`; ``records.jsonl`` stays the source of truth). ``chunk_gaps`` becomes one
flat buffer with offsets (an Arrow list column) instead of a Python list per request; see :func:`flat_gaps`. In a
format 2 run directory the lines carry ``gap_offset`` / ``gap_count`` into the float32 side file ``chunk_gaps.f32``
(:mod:`loadtest.client.records`): when the offsets follow row order, as the recorder writes them, the column's
values are one view of that file; otherwise (a skipped line, orphan gaps) they are gathered run by run, and a record
whose gaps are not all in the file gets null gaps. Format 1 lines carry the gaps inline (float64); a file is one
format or the other (any non-null ``gap_count`` means format 2). A slice of the file Arrow refuses (a corrupt line
in the middle) is read line by line instead, skipping and counting the bad lines; a partial last line (a crash
mid-write) is skipped and counted on either path. A line whose fields have the wrong JSON type (a string where a
number belongs) is skipped and counted too, and so is a record without a stage label: it belongs to no stage, so
every per-stage figure would have to leave it out anyway (:func:`load_run`); a record without a request class is
kept as class ``(unnamed)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.columnar import Cache, open_cache
from analysis.jsonl import (
    FLOAT_COLS,
    FREE_TEXT_COLS,
    INT_COLS,
    RECORD_SCHEMA,
    STR_COLS,
    read_slices,
)
from loadtest.errors import ConfigError, RunInvalid
from loadtest.rundir import GAPS_FILE, RECORDS_FILE, Manifest, read_manifest

__all__ = [
    "RECORD_SCHEMA",
    "SKIPPED_LINES",
    "UNNAMED_CLASS",
    "RunData",
    "flat_gaps",
    "load_records",
    "load_run",
    "require_records",
    "with_metrics",
]

UNNAMED_CLASS = "(unnamed)"  # the class of a record that names none (records not written by this tool)
SKIPPED_LINES = "record line(s) skipped (unreadable, a field of the wrong type, or no stage)"


@dataclass(frozen=True, slots=True)
class RunData:
    """A finished (or interrupted) run as read from disk."""

    run_dir: Path
    manifest: Manifest
    records: pd.DataFrame
    skipped_lines: int


def one_gaps_buffer(tables: list[pa.Table]) -> pa.Table:
    """Concatenate the slices' tables, moving every inline ``chunk_gaps`` value into one float64 buffer (slice by
    slice, so the old and new buffers never both exist whole): :func:`flat_gaps` then returns views, not copies."""
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
    gaps = _list_array(counts, values, np.concatenate(nulls))
    return pa.concat_tables(tables).append_column("chunk_gaps", pa.chunked_array([gaps]))


def _list_array(lengths: np.ndarray, values: np.ndarray, nulls: np.ndarray) -> pa.Array:
    """An Arrow list array over ``values`` (not copied) with ``lengths`` per row (0 where ``nulls``)."""
    big = values.size >= 2**31  # past int32 offsets: a large list
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))), type=pa.int64() if big else pa.int32())
    make = pa.LargeListArray.from_arrays if big else pa.ListArray.from_arrays
    return make(offsets, pa.array(values), mask=pa.array(nulls))


def _side_gaps(table: pa.Table, path: Path) -> pa.Table:
    """:func:`side_gaps` with the side file at ``path`` memory-mapped (when the table needs it)."""
    if table.column("gap_count").null_count == len(table):
        return table  # format 1, or no gaps at all
    size = path.stat().st_size // 4 if path.exists() else 0  # whole float32 elements
    side = np.memmap(path, dtype="<f4", mode="r", shape=(size,)) if size else np.empty(0, dtype="<f4")
    return side_gaps(table, side)


def side_gaps(table: pa.Table, side: np.ndarray) -> pa.Table:
    """Format 2: the ``chunk_gaps`` column from ``gap_offset`` / ``gap_count`` and the float32 side file's values
    ``side``. Rows whose gaps follow one another in the file (all of them, normally) share one view of it; the
    values are copied only where the offsets jump. A record whose gaps are missing or run past the end of the file
    gets null gaps."""
    if table.column("gap_count").null_count == len(table):
        return table  # format 1, or no gaps at all
    size = side.size
    offset = pc.fill_null(table.column("gap_offset"), -1).to_numpy()
    count = pc.fill_null(table.column("gap_count"), -1).to_numpy()
    has = (count >= 0) & (offset >= 0) & (offset + count <= size)
    first, end = offset[has], offset[has] + count[has]
    if first.size == 0:
        values = side[:0]
    else:
        jumps = np.flatnonzero(first[1:] != end[:-1]) + 1  # rows whose gaps do not follow the previous row's
        runs = [side[first[a] : end[b - 1]] for a, b in itertools.pairwise([0, *jumps, first.size])]
        values = runs[0] if len(runs) == 1 else np.concatenate(runs)
    gaps = _list_array(np.where(has, count, 0), values.astype("float32", copy=False), ~has)
    return table.drop_columns(["chunk_gaps"]).append_column("chunk_gaps", pa.chunked_array([gaps]))


def to_frame(table: pa.Table) -> pd.DataFrame:
    """The frame of a records table (:data:`RECORD_SCHEMA`'s columns, or some of them; gaps joined), without the
    derived metrics (:func:`with_metrics`)."""
    data: dict[str, Any] = {}
    names = set(table.column_names)
    for col in FLOAT_COLS:
        if col in names:
            data[col] = table.column(col).to_numpy().astype("float64", copy=False)
    for col in INT_COLS:
        if col in names:
            ints = table.column(col)
            data[col] = pd.arrays.IntegerArray(pc.fill_null(ints, 0).to_numpy(), ints.is_null().to_numpy())
    for col in STR_COLS:
        if col not in names:
            continue
        if col in FREE_TEXT_COLS:
            data[col] = table.column(col).to_pandas().astype("object")
        else:  # few distinct values: a categorical holds one Python string per value, not per row
            cat = table.column(col).dictionary_encode().to_pandas().array
            # categories as Python strings, not Arrow ones: to_numpy(dtype=object) is then a plain take (7× faster)
            data[col] = pd.Categorical.from_codes(cat.codes, pd.Index(cat.categories, dtype=object))
    data["chunk_gaps"] = pd.arrays.ArrowExtensionArray(table.column("chunk_gaps"))
    frame = pd.DataFrame(data, copy=False)
    if "attempt" in frame:
        frame["attempt"] = frame["attempt"].fillna(0)
    return frame


def load_records(path: Path, gaps: bool = True, request_ids: bool = True) -> tuple[pd.DataFrame, int]:
    """Parse ``records.jsonl`` (and ``chunk_gaps.f32`` beside it) — through its columnar copy
    ``records.cache.parquet`` (:mod:`analysis.columnar`), written first when missing or stale; a partial last line
    (crash mid-write) is skipped and counted, never fatal. Without ``gaps`` every record's ``chunk_gaps`` is null
    (none are read); without ``request_ids`` the frame has no ``server_request_id`` column (a Python string a
    record: the largest column of a big run's frame)."""
    if not path.exists():
        return with_metrics(to_frame(RECORD_SCHEMA.empty_table())), 0
    names = [
        c
        for c in RECORD_SCHEMA.names
        if (gaps or c != "chunk_gaps") and (request_ids or c != "server_request_id")
    ]
    cache = open_cache(path)
    if cache is not None:
        table, skipped = read_cache(cache, columns=names), cache.skipped
    else:  # a directory that cannot be written: from the JSON, as before there was a cache
        slices = list(read_slices(path))
        table, skipped = one_gaps_buffer([t for t, _ in slices]), sum(n for _, n in slices)
        table = table.select(names)
    if gaps:
        table = _side_gaps(table, path.parent / GAPS_FILE)
    else:
        table = table.append_column(
            "chunk_gaps", pa.nulls(len(table), RECORD_SCHEMA.field("chunk_gaps").type)
        )
    frame = with_metrics(to_frame(table))
    del table  # the Arrow columns, now in the frame; then hand what Arrow's allocator kept back to the system
    pa.default_memory_pool().release_unused()
    return frame, skipped


def read_cache(
    cache: Cache, row_groups: Sequence[int] | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """The cache's table (or some of its row groups and columns), as :func:`analysis.jsonl.read_slices` gave it:
    the text columns with few values come as dictionaries, and format 1's inline gaps in one buffer."""
    names = list(columns) if columns is not None else RECORD_SCHEMA.names
    groups = range(cache.file.num_row_groups) if row_groups is None else row_groups
    table = cache.file.read_row_groups(list(groups), columns=names)
    if "chunk_gaps" in names and table.column("chunk_gaps").null_count < len(table):
        table = one_gaps_buffer([table.combine_chunks()])
    return table


def _flat_chunk(arr: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets).astype("int64")
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    if lengths[nulls].any():  # a null slot that owns values (not from the JSON reader): copy without them
        lengths[nulls] = 0
        return arr.flatten().to_numpy(zero_copy_only=False), lengths
    child = arr.values.to_numpy(zero_copy_only=False)  # noqa: PD011 (an Arrow array, not pandas)
    return child[offsets[0] : offsets[-1]], lengths


def flat_gaps(gaps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, lengths)``: every row's chunk gaps back to back as one array, and each row's count (0 for a null
    or empty list). The values are float32 from a format 2 run (as stored), float64 otherwise; reduce them in
    float64 (``mean(dtype="float64")``). Fast for the Arrow list column :func:`load_records` builds (a view, not a
    copy); also accepts an object column of lists or tuples (hand-built frames)."""
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


def load_run(run_dir: Path, gaps: bool = True, request_ids: bool = True) -> RunData:
    """Read ``manifest.json`` (:func:`loadtest.rundir.read_manifest`: typed, its format and fields checked) and
    ``records.jsonl`` from a run directory (``gaps``, ``request_ids``: :func:`load_records`).

    Records with a wrongly typed field or without a stage label are left out and counted in ``skipped_lines``;
    records without a request class are kept, as class :data:`UNNAMED_CLASS`.
    """
    if not run_dir.is_dir():
        raise ConfigError(f"no run directory at {run_dir}")
    manifest = read_manifest(run_dir)
    records, skipped = load_records(run_dir / RECORDS_FILE, gaps=gaps, request_ids=request_ids)
    no_stage = records["stage"].isna().to_numpy()
    if no_stage.any():
        records = records[~no_stage].reset_index(drop=True)
        skipped += int(no_stage.sum())
    return RunData(run_dir=run_dir, manifest=manifest, records=name_classes(records), skipped_lines=skipped)


def name_classes(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with the records that name no class as class :data:`UNNAMED_CLASS` (foreign records: grouped,
    not dropped)."""
    if records["request_class"].isna().any():
        named = records["request_class"].astype("category")
        records["request_class"] = named.cat.add_categories([UNNAMED_CLASS]).fillna(UNNAMED_CLASS)
    return records


def require_records(data: RunData) -> RunData:
    """``data``, or :class:`RunInvalid` (exit 98) when it has no records: nothing to analyse or plan from."""
    if data.records.empty:
        raise RunInvalid(
            f"invalid run: {data.run_dir} has no records"
            + (f" ({data.skipped_lines} {SKIPPED_LINES})" if data.skipped_lines else "")
        )
    return data
