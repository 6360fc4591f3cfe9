"""A Python scenario's flows as read for the analysis: the lines of ``flows.jsonl`` (:class:`FlowTable`), the
columns of the request records that carry a ``flow_id`` (:class:`FlowCalls`), and whether the two join
(:class:`FlowJoin`). Pure: files in, arrays out; what a flow's figures are is :mod:`analysis.flows`'.

Memory: ``flows.jsonl`` is held as a few arrays (one entry per flow: 100,000 flows are a few MB); of the records only
the columns a flow needs are read (:data:`CALL_COLUMNS`), row group by row group from the columnar copy
(:mod:`analysis.columnar`; from the JSON when the copy cannot be written), and only the rows with a ``flow_id`` are
kept. The flow id becomes the index of the flow's line (:func:`pyarrow.compute.index_in`), so no Python string is
made per record.

**The join check.** Each flow line says how many calls the flow made (``calls``); its records' first attempts
(``attempt = 0``; a retry after a 429 is an extra record of the same step) must carry the ``step_index`` values
``0 … calls − 1``, each once, and, in the order they started, in that order. A flow is

``missing``     when some step in ``0 … calls − 1`` has no first attempt among the records;
``extra``       when a first attempt's ``step_index`` is beyond ``calls − 1``, absent, or repeated;
``disordered``  when every step is there once but they did not start in step order;

(a flow may be missing and extra at once), and **joined exactly** otherwise. A record whose ``flow_id`` has no
line is an **orphan**: its flow had not ended when the run stopped (a crash, a kill), or its line was lost. Nothing
is dropped silently: every count is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.columnar import open_cache
from analysis.jsonl import RECORD_SCHEMA, read_slices
from loadtest.client.records import RECORDS_FILE
from loadtest.errors import ConfigError
from loadtest.rundir import Manifest, read_manifest
from loadtest.rundir.flows import FLOWS_FILE, read_flows

__all__ = [
    "CALL_COLUMNS",
    "FlowCalls",
    "FlowJoin",
    "FlowTable",
    "has_flows",
    "join_check",
    "no_flows",
    "read_flow_calls",
    "read_flow_table",
]

CALL_COLUMNS: Final = (
    "flow_id",
    "step_index",
    "attempt",
    "stage",
    "request_class",
    "started_at",
    "first_token_at",
    "ended_at",
    "error_class",
    "prompt_tokens",
    "cached_tokens",
)
_TEXT = ("flow_id", "stage", "request_class", "error_class")
_EXAMPLES = 5  # flow ids that did not join, kept to name in a report


@dataclass(frozen=True, slots=True)
class FlowTable:
    """``flows.jsonl`` as columns, one entry per line in file order (:class:`loadtest.rundir.flows.FlowRecord`'s
    fields; text columns as object arrays, ``error_detail`` and ``where`` with None)."""

    flow_id: np.ndarray
    stage: np.ndarray
    outcome: np.ndarray
    error_detail: np.ndarray
    where: np.ndarray
    started_at: np.ndarray
    ended_at: np.ndarray
    calls: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.flow_id.size)


def has_flows(run_dir: Path, manifest: Manifest | None = None) -> bool:
    """Whether the run is a Python scenario's: its spec names one, or it wrote ``flows.jsonl``."""
    manifest = manifest if manifest is not None else read_manifest(run_dir)
    return manifest.spec.python is not None or (run_dir / FLOWS_FILE).exists()


def no_flows(what: str, run_dir: Path | None = None, instead: str = "") -> ConfigError:
    """The one refusal of a flow figure asked of a run without flows (:func:`has_flows`), in one line: ``what`` asked
    for it (a flag, or what it is for), ``run_dir`` is the run (else "the run"), ``instead`` what to give instead."""
    run = str(run_dir) if run_dir is not None else "the run"
    return ConfigError(
        f"{what}: {run} has no flows (flows are a Python scenario's: no [python] in its spec, no {FLOWS_FILE}; "
        "docs/scenarios-python.md)" + (f"; {instead}" if instead else "")
    )


def read_flow_table(run_dir: Path) -> FlowTable:
    """The run's ``flows.jsonl`` (:func:`loadtest.rundir.flows.read_flows`; empty without the file);
    :class:`~loadtest.errors.ConfigError` naming the line that cannot be read."""
    cols: dict[str, list[Any]] = {name: [] for name in FlowTable.__dataclass_fields__}
    try:
        for flow in read_flows(run_dir):
            for name, values in cols.items():
                values.append(getattr(flow, name))
    except ValueError as exc:  # a line that is not JSON, not at the end (there: a crash's, skipped)
        line = len(cols["flow_id"]) + 1
        raise ConfigError(f"{run_dir / FLOWS_FILE}: line {line} cannot be read ({exc})") from None
    text = ("flow_id", "stage", "outcome", "error_detail", "where")
    out: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        if name in text:
            out[name] = np.array(values, dtype=object) if values else np.empty(0, dtype=object)
        elif name in ("calls", "prompt_tokens", "output_tokens"):
            out[name] = np.array([v or 0 for v in values], dtype="int64")
        else:
            out[name] = np.array(values, dtype="float64")
    return FlowTable(**out)


@dataclass(frozen=True, slots=True)
class FlowCalls:
    """The records that carry a ``flow_id``, in file order, as arrays: ``flow`` the index of the flow's line in the
    :class:`FlowTable` (−1 for an orphan), ``orphan`` the orphan's flow among ``orphan_ids`` (−1 when joined);
    ``step_index`` −1 where absent; ``stage`` and ``step`` (the ``request_class``: a flow's call is named by its
    step) as codes into ``stages`` and ``steps`` (−1 where absent); NaN where a time or token count is absent."""

    flow: np.ndarray
    orphan: np.ndarray
    orphan_ids: tuple[str, ...]
    step_index: np.ndarray
    attempt: np.ndarray
    stage: np.ndarray
    stages: tuple[str, ...]
    step: np.ndarray
    steps: tuple[str, ...]
    started_at: np.ndarray
    first_token_at: np.ndarray
    ended_at: np.ndarray
    ok: np.ndarray
    prompt_tokens: np.ndarray
    cached_tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.flow.size)


def _record_tables(path: Path) -> Iterator[pa.Table]:
    """The flow columns of ``records.jsonl``, a row group (or a JSON slice) at a time, only rows with a flow id."""
    if not path.exists():
        return
    cache = open_cache(path)
    if cache is not None:
        tables: Iterator[pa.Table] = (
            cache.file.read_row_group(i, columns=list(CALL_COLUMNS)) for i in range(cache.file.num_row_groups)
        )
    else:  # a directory that cannot be written: from the JSON
        tables = (table.select(list(CALL_COLUMNS)) for table, _ in read_slices(path))
    for table in tables:
        table = table.filter(pc.is_valid(table.column("flow_id")))
        if len(table):
            for (
                name
            ) in _TEXT:  # the cache's dictionaries differ between row groups: plain strings to concatenate
                if pa.types.is_dictionary(table.schema.field(name).type):
                    at = table.schema.get_field_index(name)
                    table = table.set_column(at, name, table.column(name).cast(pa.string()))
            yield table


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...]]:
    encoded = pc.dictionary_encode(column.combine_chunks())
    names = tuple(str(v) for v in encoded.dictionary.to_pylist())
    return pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype("int64"), names


def _numbers(table: pa.Table, name: str, dtype: str, missing: float) -> np.ndarray:
    column = table.column(name).combine_chunks().cast(pa.float64())
    values: np.ndarray = pc.fill_null(column, missing).to_numpy(zero_copy_only=False).astype(dtype)
    return values


def read_flow_calls(run_dir: Path, flows: FlowTable) -> FlowCalls:
    """The run's records that carry a ``flow_id`` (:data:`CALL_COLUMNS`), joined to ``flows`` by flow id."""
    parts = list(_record_tables(run_dir / RECORDS_FILE))
    table = pa.concat_tables(parts) if parts else RECORD_SCHEMA.empty_table().select(list(CALL_COLUMNS))
    ids = table.column("flow_id").combine_chunks()
    known = pa.array(flows.flow_id.tolist(), type=pa.string())
    flow = pc.fill_null(pc.index_in(ids, value_set=known), -1).to_numpy(zero_copy_only=False).astype("int64")
    orphan = np.full(flow.size, -1, dtype="int64")
    orphan_ids: tuple[str, ...] = ()
    if (flow < 0).any():
        rows = np.flatnonzero(flow < 0)
        codes, orphan_ids = _codes(pa.chunked_array([ids.take(pa.array(rows))]))
        orphan[rows] = codes
    stage, stages = _codes(table.column("stage"))
    step, steps = _codes(table.column("request_class"))
    calls = FlowCalls(
        flow=flow,
        orphan=orphan,
        orphan_ids=orphan_ids,
        step_index=_numbers(table, "step_index", "int64", -1),
        attempt=_numbers(table, "attempt", "int64", 0),
        stage=stage,
        stages=stages,
        step=step,
        steps=steps,
        started_at=_numbers(table, "started_at", "float64", np.nan),
        first_token_at=_numbers(table, "first_token_at", "float64", np.nan),
        ended_at=_numbers(table, "ended_at", "float64", np.nan),
        ok=table.column("error_class").is_null().to_numpy(zero_copy_only=False).astype(bool),
        prompt_tokens=_numbers(table, "prompt_tokens", "float64", np.nan),
        cached_tokens=_numbers(table, "cached_tokens", "float64", np.nan),
    )
    del (
        table,
        ids,
        parts,
    )  # the Arrow columns, now arrays; hand what Arrow's allocator kept back to the system
    pa.default_memory_pool().release_unused()
    return calls


@dataclass(frozen=True, slots=True)
class FlowJoin:
    """Whether the flow lines and the records join (the module docstring): counts of flow lines, of those joined
    exactly, missing, extra and disordered (a flow may be missing and extra at once), of orphan records and their
    distinct flows; ``examples`` names up to five flows that did not join, in file order."""

    flows: int
    exact: int
    missing: int
    extra: int
    disordered: int
    orphan_records: int
    orphan_flows: int
    examples: tuple[str, ...] = ()

    @property
    def is_exact(self) -> bool:
        """Every flow line joined exactly and every record has its line."""
        return self.exact == self.flows and self.orphan_records == 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["examples"] = list(self.examples)
        out["is_exact"] = self.is_exact
        return out


def join_check(flows: FlowTable, calls: FlowCalls) -> FlowJoin:
    """The join check of ``flows`` against ``calls`` (the module docstring)."""
    n = len(flows)
    expected = flows.calls
    first = (calls.flow >= 0) & (calls.attempt == 0)
    f, step, started = calls.flow[first], calls.step_index[first], calls.started_at[first]
    count = np.bincount(f, minlength=n)
    valid = (step >= 0) & (step < expected[f])
    width = int(expected.max(initial=0)) + 1
    pairs = np.unique(f[valid] * width + step[valid])
    distinct = np.bincount(pairs // width, minlength=n)
    missing = distinct < expected
    extra = count > distinct
    order = np.lexsort((step, started, f))  # by flow, then start (ties in step order)
    fs, ss = f[order], step[order]
    back = (fs[1:] == fs[:-1]) & (ss[1:] <= ss[:-1])
    disordered = np.zeros(n, dtype=bool)
    disordered[fs[1:][back]] = True
    disordered &= ~missing & ~extra
    bad = missing | extra | disordered
    return FlowJoin(
        flows=n,
        exact=int(n - bad.sum()),
        missing=int(missing.sum()),
        extra=int(extra.sum()),
        disordered=int(disordered.sum()),
        orphan_records=int((calls.flow < 0).sum()),
        orphan_flows=len(calls.orphan_ids),
        examples=tuple(str(i) for i in flows.flow_id[np.flatnonzero(bad)[:_EXAMPLES]]),
    )
