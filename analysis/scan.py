"""A run analysed out of core: stage by stage from the columnar copy of its records, so that memory follows the
biggest stage, not the run (a 3-hour soak at 1,000 req/s is 10.8 M records).

:func:`open_scan` reads the manifest and, from ``records.cache.parquet`` (:mod:`analysis.columnar`, written first when
missing), only the stage column: where each stage's rows are. :func:`summarize_scan` then reads one stage at a time —
its row groups, its rows, its chunk gaps from the memory-mapped ``chunk_gaps.f32`` (whose pages are let go after
each stage) — and computes what :func:`analysis.summary.summarize_stages`, :func:`~analysis.summary.summarize_classes`
(by stage, too) and :func:`analysis.capacity.capacity_from_run` compute on the whole frame, with the same functions on
the stage's frame: every figure of a stage depends on that stage's rows only.

A class over the whole run is the exception: its figures pool its rows of every stage. Counts and token sums add up
(the token sums are sums of integers, exact in float64); its TTFT, TPOT, E2E and lag values are kept (8 bytes a
request each) and pooled in file order, so their percentiles and means are those of the whole frame. Its chunk gaps
(64 per streamed request: 2.2 GB at 10 M records) are gathered in file order as well when there are at most
:data:`IN_MEMORY_GAPS` of them — the same values in the same order as the whole frame's, so the same result to the
bit — and otherwise go through :class:`analysis.selection.ExactPercentiles` (a count per stage in this pass, a second
pass over the side file): the same percentiles and maximum, the mean up to rounding. So does a class whose stages'
rows interleave in the file (the recorder writes a stage's records before the next stage's) — pooled per stage, its
means could differ from the whole frame's in the last bits; its percentiles do not.

Format 1 run directories (gaps inline in the JSON, before 2026-11-26) are read the same way, their classes' gaps
always gathered in memory.
"""

from __future__ import annotations

import itertools
import mmap
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from analysis.capacity import (
    DEFAULT_MAX_ERROR_SHARE,
    CapacityResult,
    capacity_of_points,
    stage_metas,
    usable_records,
    with_flow_checks,
)
from analysis.columnar import Cache, open_cache, write_cache
from analysis.flows import flow_slo_checks
from analysis.frame import (
    UNNAMED_CLASS,
    name_classes,
    read_cache,
    side_gaps,
    to_frame,
    with_metrics,
)
from analysis.goodput import class_slos, good_mask
from analysis.pooled import PooledClass, StageColumns, gap_pieces
from analysis.selection import ExactPercentiles, grouped_counts
from analysis.server_metrics import binding_evidence, server_metrics_of
from analysis.stage_points import StagePoint, stage_point
from analysis.summary import PERCENTILES, StageSummary, percentiles, summarize_classes, summarize_stages
from loadtest.errors import ConfigError
from loadtest.rundir import GAPS_FILE, RECORDS_CACHE, RECORDS_FILE, Manifest, StageWindow, read_manifest

__all__ = ["IN_MEMORY_GAPS", "RunScan", "ScanResult", "open_scan", "summarize_scan"]

IN_MEMORY_GAPS = 1 << 26  # a class's chunk gaps gathered in memory up to this many (256 MB of float32)
_PASS_GAPS = 1 << 23  # gaps per piece of the second pass over the side file
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
# a stage's frame: the columns the summaries, goodput and capacity read (and the derived metrics need)
_COLUMNS = [
    "stage",
    "request_class",
    "scheduled_at",
    "started_at",
    "first_token_at",
    "ended_at",
    "error_class",
    "error_detail",
    "retry_after_s",
    "prompt_tokens",
    "output_tokens",
    "client_output_tokens",
    "token_source",
    "gap_offset",
    "gap_count",
    "chunk_gaps",
]
_REFS = ("gap_offset", "gap_count")


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What :func:`summarize_scan` computed: as ``summarize_stages``, ``summarize_classes`` (over the run, then by
    stage) and ``capacity_from_run`` give them for the whole frame."""

    stages: tuple[StageSummary, ...]
    classes: tuple[StageSummary, ...]
    classes_by_stage: tuple[StageSummary, ...]
    capacity: CapacityResult | None


class RunScan:
    """A run directory opened for a stage-by-stage analysis (see the module docstring)."""

    def __init__(self, run_dir: Path, manifest: Manifest, cache: Cache | None) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.cache = cache
        self.skipped_lines = cache.skipped if cache is not None else 0
        self._rows: dict[str, np.ndarray] = {}  # stage → its rows in the cache, ascending; first row's order
        self.class_gaps: dict[str, int] = {}  # class → chunk gaps of its successful records (format 2)
        self._group_start = np.zeros(1, dtype="int64")
        gaps = run_dir / GAPS_FILE
        size = gaps.stat().st_size // 4 * 4 if gaps.exists() else 0
        self._map: mmap.mmap | None = None
        self._side = np.empty(0, dtype="<f4")
        if size:
            with gaps.open("rb") as fh:
                self._map = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ)
            self._side = np.frombuffer(self._map, dtype="<f4")
        if cache is not None and cache.rows:
            self._index(cache)

    def _index(self, cache: Cache) -> None:
        groups = cache.file.metadata
        sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
        self._group_start = np.concatenate(([0], np.cumsum(sizes))).astype("int64")
        table = read_cache(cache, columns=["stage", "request_class", "error_class", "gap_count"])
        stage = table.column("stage").unify_dictionaries().combine_chunks()
        if isinstance(stage.type, pa.DictionaryType):
            labels, codes = stage.dictionary.to_pylist(), pc.fill_null(stage.indices, -1).to_numpy()
        else:  # an empty file
            labels, codes = [], np.full(len(stage), -1)
        self.skipped_lines += int((codes < 0).sum())
        found = {}
        for code in range(len(labels)):
            rows = np.flatnonzero(codes == code)
            if rows.size:
                found[str(labels[code])] = rows.astype("int32" if rows[-1] < 2**31 else "int64")
        self._rows = dict(sorted(found.items(), key=lambda kv: int(kv[1][0])))
        # each class's chunk gaps over the run (successful records with a stage), to choose how to pool them
        kept = table.filter(
            pc.and_(pc.is_valid(table.column("stage")), pc.is_null(table.column("error_class")))
        )
        classes = pc.fill_null(kept.column("request_class").cast(pa.string()), UNNAMED_CLASS)
        totals = (
            pa.table({"c": classes, "n": kept.column("gap_count")}).group_by("c").aggregate([("n", "sum")])
        )
        self.class_gaps = {
            str(c): int(n or 0)
            for c, n in zip(totals.column("c").to_pylist(), totals.column("n_sum").to_pylist(), strict=True)
        }
        del table, stage, codes, kept, classes, totals
        pa.default_memory_pool().release_unused()

    @property
    def stages(self) -> list[str]:
        """The stages' labels in order of their first record."""
        return list(self._rows)

    @property
    def requests(self) -> int:
        """Records with a stage (the rows of ``load_run``'s frame)."""
        return sum(rows.size for rows in self._rows.values())

    def stage_frame(self, label: str) -> pd.DataFrame:
        """The stage's records as ``load_run`` gives them (its rows of the whole frame, in order), with the columns
        the analysis reads (:data:`_COLUMNS`)."""
        assert self.cache is not None
        rows = self._rows[label]
        groups = np.unique(np.searchsorted(self._group_start, rows, side="right") - 1)
        table = read_cache(self.cache, groups.tolist(), columns=_COLUMNS)
        local = rows - self._group_start[groups[0]]
        if (
            np.array_equal(groups, np.arange(groups[0], groups[-1] + 1))
            and local[-1] - local[0] + 1 == rows.size
        ):
            table = table.slice(int(local[0]), rows.size)
        else:
            starts = self._group_start[groups]
            before = np.concatenate(([0], np.cumsum(np.diff(self._group_start)[groups])[:-1]))
            at = np.searchsorted(starts, rows, side="right") - 1
            table = table.take(pa.array(rows - starts[at] + before[at]))
        return name_classes(with_metrics(to_frame(side_gaps(table, self._side))))

    @property
    def interleaved(self) -> bool:
        """Whether some stage's records lie between another stage's first and last."""
        spans = sorted((int(rows[0]), int(rows[-1])) for rows in self._rows.values())
        return any(b[0] < a[1] for a, b in itertools.pairwise(spans))

    @property
    def refinable(self) -> bool:
        """Whether the chunk gaps can be read again by reference (format 2: a side file)."""
        return self._side.size > 0

    @property
    def side(self) -> np.ndarray:
        """``chunk_gaps.f32``'s values, memory-mapped."""
        return self._side

    def side_offset(self, values: np.ndarray) -> int | None:
        """Where ``values`` starts in the side file (in values) when it is a view of it, else None."""
        if not self._side.size or values.dtype != self._side.dtype or values.strides != (4,):
            return None
        base, at = self._side.__array_interface__["data"][0], values.__array_interface__["data"][0]
        inside = base <= at and at + values.nbytes <= base + self._side.nbytes
        return (at - base) // 4 if inside else None

    def release(self) -> None:
        """Let go of the side file's pages read so far (they are the file's: nothing is lost)."""
        if self._map is not None and _DONTNEED is not None:
            self._map.madvise(_DONTNEED)

    def gap_refs(self, label: str, classes: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{class: (offsets, counts)}`` into the side file of the successful records of each of ``classes`` in
        stage ``label`` that have all their gaps there, in row order (for :meth:`ExactPercentiles.refine`)."""
        assert self.cache is not None
        rows = self._rows[label]
        groups = np.unique(np.searchsorted(self._group_start, rows, side="right") - 1)
        table = read_cache(
            self.cache, groups.tolist(), columns=["stage", "request_class", "error_class", *_REFS]
        )
        stage = pc.fill_null(pc.equal(table.column("stage").cast(pa.string()), label), False)
        table = table.filter(pc.and_(stage, pc.is_null(table.column("error_class"))))
        named = pc.fill_null(table.column("request_class").cast(pa.string()), UNNAMED_CLASS).to_numpy(
            zero_copy_only=False
        )
        offset = pc.fill_null(table.column("gap_offset"), -1).to_numpy()
        count = pc.fill_null(table.column("gap_count"), -1).to_numpy()
        has = (count >= 0) & (offset >= 0) & (offset + count <= self._side.size)
        out = {}
        for cls in classes:
            sel = has & (named == cls)
            out[cls] = (offset[sel], count[sel])
        return out

    def gaps_at(self, offsets: np.ndarray, counts: np.ndarray) -> Iterator[np.ndarray]:
        """The side file's values at ``offsets`` / ``counts``, in pieces of about ``_PASS_GAPS`` values."""
        ends = offsets + counts
        start = 0
        while start < offsets.size:
            stop = int(np.searchsorted(np.cumsum(counts[start:]), _PASS_GAPS)) + start + 1
            first, end = offsets[start:stop], ends[start:stop]
            jumps = np.flatnonzero(first[1:] != end[:-1]) + 1
            bounds = [0, *jumps.tolist(), first.size]
            runs = [self._side[first[a] : end[b - 1]] for a, b in itertools.pairwise(bounds)]
            yield runs[0] if len(runs) == 1 else np.concatenate(runs)
            self.release()
            start = stop


def open_scan(run_dir: Path) -> RunScan:
    """Open ``run_dir`` for :func:`summarize_scan`: its manifest, and where each stage's records are (the columnar
    copy is written first when missing or stale; a run directory that cannot be written gets one in a temporary
    directory, deleted with the scan)."""
    if not run_dir.is_dir():
        raise ConfigError(f"no run directory at {run_dir}")
    manifest = read_manifest(run_dir)
    records = run_dir / RECORDS_FILE
    if not records.exists():
        return RunScan(run_dir, manifest, None)
    cache = open_cache(records)
    if cache is None:
        tmp = Path(tempfile.mkdtemp(prefix="loadtest-scan-"))
        try:
            cache = write_cache(records, tmp / RECORDS_CACHE)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ConfigError(f"cannot read {records}: {exc}") from exc
        scan = RunScan(run_dir, manifest, cache)
        weakref.finalize(scan, shutil.rmtree, tmp, True)
        return scan
    return RunScan(run_dir, manifest, cache)


def _row_pieces(
    cols: StageColumns, row_group: np.ndarray, per_piece: int = 1 << 16
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(gaps, their group)`` of the stage's rows, ``per_piece`` rows at a time (views of its gaps)."""
    for a in range(0, row_group.size, per_piece):
        b = min(a + per_piece, row_group.size)
        yield cols.gaps[cols.offsets[a] : cols.offsets[b]], np.repeat(row_group[a:b], cols.lengths[a:b])


def _count_stage(
    cols: StageColumns, classes: np.ndarray, exact: Mapping[str, ExactPercentiles]
) -> tuple[dict[str, float | None], np.ndarray]:
    """The stage's ITL percentiles, counting the chunk gaps of the ``exact`` classes on the way (pass 1, one pass
    for all of them and the stage); and each row's group (the index of its class among ``exact``, −1 for others
    and failed rows), for the classes' second pass.

    At most :data:`IN_MEMORY_GAPS` of the stage's successful records' gaps are selected in memory as
    :func:`analysis.summary.summarize_stages` does (the same result); more go through :class:`ExactPercentiles`."""
    values, lengths, ok = cols.gaps, cols.lengths, cols.ok
    row_group = np.full(ok.size, -1, dtype="int8")
    row_group[ok] = len(exact)  # successful, of a class gathered in memory: the stage's only
    for i, name in enumerate(exact):
        row_group[ok & (classes == name)] = i
    big = int(lengths[ok].sum()) > IN_MEMORY_GAPS
    stage = ExactPercentiles(PERCENTILES) if big else None
    if exact or big:
        targets = list(exact.values())
        for span, groups in _row_pieces(cols, row_group):
            upper, n, sums = grouped_counts(span, groups, len(targets) + 1)
            for i, target in enumerate(targets):
                target.add(upper[i], n[i], sums[i])
            if stage is not None:
                stage.add(upper.sum(axis=0), n.sum(), sums.sum())
    if stage is not None:
        for piece in gap_pieces(values, lengths, ok, cols.offsets):
            stage.refine(piece)
        return stage.result(), row_group
    gaps = values.copy() if not lengths[~ok].any() else values[np.repeat(ok, lengths)]
    return percentiles(gaps, in_place=True), row_group  # as stored (float32): the same selection and mean


@dataclass(frozen=True, slots=True)
class _Refs:
    """Where a stage's gaps are in the side file, for the classes' second pass: from ``start`` on, ``lengths`` per
    row, each row's group (:func:`_count_stage`) and the classes the groups stand for."""

    start: int
    lengths: np.ndarray
    row_group: np.ndarray
    names: tuple[str, ...]


def _refine(scan: RunScan, ref: _Refs, pooled: Mapping[str, PooledClass]) -> None:
    offsets = np.concatenate(([0], np.cumsum(ref.lengths, dtype="int64")))
    side = scan.side[ref.start : ref.start + int(offsets[-1])]
    per_piece = 1 << 16
    for a in range(0, ref.lengths.size, per_piece):
        b = min(a + per_piece, ref.lengths.size)
        span = side[offsets[a] : offsets[b]]
        groups = np.repeat(ref.row_group[a:b], ref.lengths[a:b])
        for i, name in enumerate(ref.names):
            pooled[name].refine(span[groups == i])


def _stage_point(
    frame: pd.DataFrame,
    label: str,
    meta: StageWindow,
    slos: Mapping[str, Mapping[str, float]],
    max_error_share: float,
) -> StagePoint | None:
    usable, good = usable_records(frame, slos)
    return stage_point(label, usable, good, slos, meta, max_error_share) if len(usable) else None


def summarize_scan(
    scan: RunScan,
    slos: Mapping[str, Mapping[str, float]] | None = None,
    order: Sequence[str] = (),
    by_stage: bool = True,
    capacity: bool = True,
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
) -> ScanResult:
    """Per-stage and per-class summaries (with goodput when ``slos`` are given; by stage too with ``by_stage``)
    and, with ``capacity``, the capacity of the run against its manifest's class SLOs — in one pass over the
    stages (see the module docstring)."""
    run_slos = class_slos(scan.manifest.spec.request_classes)
    manifest_stages = scan.manifest.stages or scan.manifest.stage_order
    metas = {m.label: m for m in stage_metas(manifest_stages, scan.stages)}
    stage_sums: dict[str, StageSummary] = {}
    per_class: dict[str, list[StageSummary]] = {}
    points: dict[str, StagePoint] = {}
    pooled: dict[str, PooledClass] = {}
    firsts: dict[str, float] = {}
    refs: dict[str, _Refs | None] = {}
    interleaved = scan.interleaved
    pool = ThreadPoolExecutor(max_workers=1)
    for label in scan.stages:
        frame = scan.stage_frame(label)
        cols = StageColumns(frame)
        classes = frame["request_class"].to_numpy(dtype=object)
        names = sorted(set(classes))
        for name in names:
            if name not in pooled:
                big = scan.class_gaps.get(name, 0) > IN_MEMORY_GAPS
                pooled[name] = PooledClass(name, exact=scan.refinable and (big or interleaved))
        exact = {n: ex for n in names if (ex := pooled[n].exact) is not None}
        # the gaps' selection (NumPy, which lets go of the GIL) on the other core while the rest is computed
        counting = pool.submit(_count_stage, cols, classes, exact)
        (summary,) = summarize_stages(frame, slos=slos, itl=False)
        if capacity:
            point = _stage_point(frame, label, metas[label], run_slos, max_error_share)
            if point is not None:
                points[label] = point
        good = good_mask(frame, slos) if slos is not None else None
        for name in names:
            pooled[name].add(cols, classes == name, good, summary.duration_s)
        firsts[label] = frame["started_at"].min()
        if by_stage:
            per_class[label] = summarize_classes(frame, slos=slos, by_stage=True)
        itl, row_group = counting.result()
        stage_sums[label] = replace(summary, itl=itl)
        if exact:
            start = scan.side_offset(cols.gaps)
            refs[label] = (
                _Refs(start, cols.lengths.astype("int32"), row_group, tuple(exact))
                if start is not None
                else None
            )
        del frame, cols, summary
        scan.release()
        pa.default_memory_pool().release_unused()
    pool.shutdown()
    for label, ref in refs.items():  # the second pass of the classes counted in the first
        if (
            ref is not None
        ):  # the stage's gaps were one run of the side file: read it again, row piece by piece
            _refine(scan, ref, pooled)
        else:
            wanted = {name: acc for name, acc in pooled.items() if acc.needs_second_pass}
            for name, (offsets, counts) in scan.gap_refs(label, wanted).items():
                for piece in scan.gaps_at(offsets, counts):
                    wanted[name].refine(piece)
        scan.release()
    stage_order = [s for s in order if s in stage_sums] + [
        s for s in pd.Series(firsts, dtype="float64").sort_values().index if s not in order
    ]
    cap = None
    if capacity:
        try:
            flows, unread = flow_slo_checks(scan.run_dir, scan.manifest), None
        except (
            ConfigError
        ) as exc:  # the report says why (its flows section); its verdict says what it left out
            flows, unread = {}, f"; the flow SLO is not judged: the flows could not be read ({exc})"
        kept = with_flow_checks([points[m] for m in metas if m in points], flows)
        cap = capacity_of_points(kept, run_slos, max_error_share)
        if unread:
            cap = replace(cap, basis=cap.basis + unread)
        server = server_metrics_of(scan.run_dir, scan.manifest.stages or ())
        evidence = binding_evidence(server, [p.stage for p in cap.points])
        if evidence:
            cap = replace(cap, server_evidence=evidence)
    return ScanResult(
        stages=tuple(stage_sums[s] for s in stage_order),
        classes=tuple(pooled[name].summary() for name in sorted(pooled)),
        classes_by_stage=tuple(s for label in stage_order for s in per_class.get(label, ())),
        capacity=cap,
    )
