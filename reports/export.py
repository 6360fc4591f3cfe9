"""A run's raw records as one table for notebooks and BI tools (``loadtest export``): Parquet or CSV.

One row per record line of ``records.jsonl`` that the analysis reads (:func:`analysis.load_run`: lines it skips are
left out here too), in file order. Columns, in this order (``docs/metrics.md`` has the definitions):

* every field of the record (:class:`loadtest.client.records.RequestRecord`) but ``chunk_gaps``, as written: times
  in epoch seconds, counts, texts;
* the derived per-request metrics, in seconds: ``ok``, ``ttft_s``, ``ttft_from_intended_s``, ``tpot_s``, ``e2e_s``,
  ``lag_s``;
* the chunk gaps summarised per request: ``gap_count`` (0 without gaps), ``itl_mean_s``, ``itl_p50_s``,
  ``itl_p99_s`` (linear interpolation over the request's own gaps) and ``itl_max_s``;
* Parquet only: ``chunk_gaps``, the gaps themselves as ``list<float32>`` (the precision they are stored with), null
  for a record without gaps.

An undefined value is null (an empty field in CSV), never NaN. Text columns are plain strings (no dictionary type).
The schema's metadata says ``loadtest.export`` (:data:`EXPORT_VERSION`, the layout) and ``loadtest.run_id``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from analysis import RunData, flat_gaps, request_itl_percentile
from loadtest.client.records import RECORD_FIELDS

__all__ = [
    "DERIVED_COLUMNS",
    "EXPORT_FORMATS",
    "EXPORT_VERSION",
    "ITL_COLUMNS",
    "ExportFormat",
    "export_table",
    "write_export",
]

ExportFormat = Literal["parquet", "csv"]
EXPORT_FORMATS: Final[tuple[ExportFormat, ...]] = ("parquet", "csv")
DERIVED_COLUMNS: Final = {  # export name: the analysis frame's column
    "ok": "ok",
    "ttft_s": "ttft",
    "ttft_from_intended_s": "ttft_from_intended",
    "tpot_s": "tpot",
    "e2e_s": "e2e",
    "lag_s": "lag",
}
ITL_COLUMNS: Final = ("gap_count", "itl_mean_s", "itl_p50_s", "itl_p99_s", "itl_max_s")
EXPORT_VERSION: Final = 1  # the table's layout, in the schema's metadata as "loadtest.export"
_ROWS_PER_BLOCK: Final = 100_000  # per-request ITL percentiles a block of rows at a time (bounded memory)


def _column(series: pd.Series) -> pa.Array:
    """One frame column as Arrow: NaN and NA as null, categoricals as plain strings."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return pa.array(series.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    if series.dtype == object:
        return pa.array(series.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    if isinstance(series.dtype, pd.Int64Dtype):
        return pa.array(series.array, type=pa.int64())
    if series.dtype == bool:
        return pa.array(series.to_numpy(), type=pa.bool_())
    return pa.array(series.to_numpy(dtype="float64"), type=pa.float64(), from_pandas=True)


def _itl_blocks(values: np.ndarray, lengths: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    for start in range(0, lengths.size, _ROWS_PER_BLOCK):
        end = min(start + _ROWS_PER_BLOCK, lengths.size)
        part, counts = values[offsets[start] : offsets[end]], lengths[start:end]
        has = counts > 0
        mean = np.full(counts.size, np.nan)
        peak = np.full(counts.size, np.nan)
        if has.any():
            firsts = (offsets[start:end] - offsets[start])[has]
            mean[has] = np.add.reduceat(part, firsts, dtype="float64") / counts[has]
            peak[has] = np.maximum.reduceat(part, firsts)
        p50, p99 = request_itl_percentile(part, counts, (50, 99))
        yield mean, p50, p99, peak


def _itl_columns(gaps: pd.Series) -> dict[str, pa.Array]:
    values, lengths = flat_gaps(gaps)
    blocks = list(_itl_blocks(values, lengths))
    out: dict[str, pa.Array] = {"gap_count": pa.array(lengths, type=pa.int64())}
    for i, name in enumerate(ITL_COLUMNS[1:]):
        column = np.concatenate([b[i] for b in blocks]) if blocks else np.empty(0)
        out[name] = pa.array(column, type=pa.float64(), from_pandas=True)
    return out


def _gaps_column(gaps: pd.Series) -> pa.ChunkedArray:
    """The ``chunk_gaps`` column as ``list<float32>`` (format 1's inline float64 gaps rounded to float32)."""
    if isinstance(gaps.dtype, pd.ArrowDtype):
        column = pa.chunked_array(gaps.array._pa_array)
    else:
        rows = [list(g) if isinstance(g, list | tuple | np.ndarray) else None for g in gaps]
        column = pa.chunked_array([pa.array(rows, type=pa.list_(pa.float64()))])
    return column.cast(pa.list_(pa.float32()))


def export_table(data: RunData, fmt: ExportFormat) -> pa.Table:
    """The run's records as the export's table (see the module docstring); ``chunk_gaps`` for Parquet only."""
    frame = data.records
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in RECORD_FIELDS:
        if name != "chunk_gaps":
            columns[name] = _column(frame[name])
    for name, source in DERIVED_COLUMNS.items():
        columns[name] = _column(frame[source])
    columns.update(_itl_columns(frame["chunk_gaps"]))
    if fmt == "parquet":
        columns["chunk_gaps"] = _gaps_column(frame["chunk_gaps"])
    metadata = {"loadtest.export": str(EXPORT_VERSION), "loadtest.run_id": data.manifest.run_id}
    return pa.table(columns, metadata=metadata)


def write_export(table: pa.Table, fmt: ExportFormat, sink: str | IO[bytes]) -> None:
    """Write ``table`` to ``sink`` (a path or a binary stream): Parquet (zstd, row groups of 131,072 rows) or CSV
    (a header line, nulls empty)."""
    if fmt == "parquet":
        # row groups of 128 Ki rows: the writer holds one group's encoded pages, not the whole file's (1.36 → 1.00 GB
        # peak for a million records); a dictionary only for the text columns (not worth building for gap values)
        strings = [field.name for field in table.schema if field.type == pa.string()]
        pq.write_table(table, sink, compression="zstd", row_group_size=1 << 17, use_dictionary=strings)
    else:
        pa_csv.write_csv(table, sink)
