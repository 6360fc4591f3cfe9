"""The columnar copy of ``records.jsonl``: ``records.cache.parquet`` beside it, written once, read by every analysis
after.

``records.jsonl`` (with ``chunk_gaps.f32``) stays the source of truth; ``records.cache.parquet`` is a cache of its
parse: the table :func:`analysis.jsonl.read_slices` gives (the record schema, format 2's ``gap_offset`` /
``gap_count``, format 1's inline gaps), lines skipped left out, their count kept. The chunk gaps themselves are not
copied: they stay in ``chunk_gaps.f32``, already a flat binary column. The first analysis of a run writes it
(``loadtest run`` analyses its run at the end, so normally the run's own command): slice by slice, so its memory is
one slice's (about 128 MB of JSON), into a temporary name renamed into place when complete.

A cache is used only when its metadata names the records file's current size and modification time and this module's
cache format (:data:`CACHE_FORMAT`), and its columns are the record schema's; otherwise (the run was still being
written, a file copied over, an older cache) it is written again. A run directory that cannot be written (read-only)
is read from the JSON each time, as before there was a cache. Row groups hold :data:`ROW_GROUP` rows, so a stage's
records are read without the rest of the run (:mod:`analysis.scan`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from analysis.jsonl import FREE_TEXT_COLS, RECORD_SCHEMA, STR_COLS, read_slices
from loadtest.rundir import RECORDS_CACHE

__all__ = ["CACHE_FORMAT", "ROW_GROUP", "Cache", "open_cache", "write_cache"]

CACHE_FORMAT: Final = "2"  # bump it whenever analysis/jsonl.py parses or types a column differently
ROW_GROUP: Final = 65_536
_KEY = b"loadtest.records_cache"
_TEXT = [c for c in STR_COLS if c not in FREE_TEXT_COLS]  # few distinct values: dictionary-encoded


class Cache:
    """An opened, current ``records.cache.parquet``: its file, and how many lines of ``records.jsonl`` it left out."""

    def __init__(self, path: Path, skipped: int) -> None:
        self.path = path
        self.skipped = skipped
        self.file = pq.ParquetFile(path, read_dictionary=_TEXT)

    @property
    def rows(self) -> int:
        return int(self.file.metadata.num_rows)


def _stamp(records: Path) -> dict[bytes, bytes]:
    st = records.stat()
    return {
        _KEY: CACHE_FORMAT.encode(),
        b"source_size": str(st.st_size).encode(),
        b"source_mtime_ns": str(st.st_mtime_ns).encode(),
    }


def _current(cache: Path, records: Path) -> Cache | None:
    """The cache if it exists and matches ``records`` (see the module docstring), else None."""
    try:
        found = Cache(cache, 0)
        meta = found.file.metadata.metadata or {}
        found.skipped = int(meta.get(b"skipped", b"-1"))
    except (OSError, ValueError, pa.ArrowException):
        return None
    if found.skipped < 0 or any(meta.get(k) != v for k, v in _stamp(records).items()):
        return None
    if found.file.schema_arrow.names != RECORD_SCHEMA.names:  # written before the record gained a field
        return None
    return found


def write_cache(records: Path, cache: Path) -> Cache:
    """Write ``cache`` from ``records`` slice by slice (a temporary name, renamed when complete); OSError when the
    directory cannot be written."""
    stamp = _stamp(records)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    skipped = 0
    try:
        with pq.ParquetWriter(tmp, RECORD_SCHEMA, compression="none", use_dictionary=_TEXT) as writer:
            for table, bad in read_slices(records):
                skipped += bad
                writer.write_table(table, row_group_size=ROW_GROUP)
            writer.add_key_value_metadata({**stamp, b"skipped": str(skipped).encode()})
        if _stamp(records) != stamp:  # written to while read: the next reader writes it again
            tmp.unlink()
            raise OSError("records.jsonl changed while its columnar copy was written")
        os.replace(tmp, cache)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Cache(cache, skipped)


def open_cache(records: Path) -> Cache | None:
    """The current ``records.cache.parquet`` beside ``records`` (written first when missing or stale), or None when it
    cannot be written."""
    cache = records.with_name(RECORDS_CACHE)
    found = _current(cache, records)
    if found is not None:
        return found
    try:
        return write_cache(records, cache)
    except OSError:
        return None
