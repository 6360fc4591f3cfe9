"""Exact percentiles of more float32 values than memory holds: two passes over them, piece by piece.

Each float32 maps to a 32-bit key that sorts as the values do (the sign bit flipped for positives, every bit for
negatives), so the k-th smallest value is the value of the k-th smallest key. The first pass counts keys by their
upper 16 bits (65,536 counters) and sums the values; that names, for each order statistic wanted, the bin it lies in
and its rank within the bin. The second pass counts the lower 16 bits of the keys in those few bins only, which
gives each order statistic's key exactly — no value is kept, whatever the number of values or how many are equal.

The result is :func:`analysis.summary.percentiles`'s, computed the same way from the same order statistics (numpy's
"linear" method, in float64): the percentiles and the maximum are identical; the mean is the float64 sum of the
pieces' float64 sums, so it may differ from an in-memory mean in the last bits (summation order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ExactPercentiles", "grouped_counts"]

_BINS = 1 << 16
_PIECE = 1 << 22  # values per step: bounds the temporaries (keys, bin numbers) to a few tens of MB


def _keys(values: np.ndarray) -> np.ndarray:
    bits = values.astype("<f4", copy=False).view(np.uint32)
    keys: np.ndarray = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return keys


def _upper(values: np.ndarray) -> np.ndarray:
    """The keys' upper 16 bits. For values ≥ 0 (chunk gaps, nearly always) they are the bits' own upper 16 with the
    sign bit set: one shift instead of the whole key."""
    bits = values.astype("<f4", copy=False).view(np.uint32)
    upper = bits >> np.uint32(16)
    if int(upper.max(initial=0)) >= 0x8000:  # a negative value: the full key
        return _keys(values) >> np.uint32(16)
    return upper | np.uint32(0x8000)


def _value(key: int) -> float:
    bits = key ^ 0x80000000 if key & 0x80000000 else ~key & 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view("<f4")[0])


class ExactPercentiles:
    """Feed every piece to :meth:`count` (pass 1), then every piece again, in any order, to :meth:`refine` (pass
    2); :meth:`result` gives ``{"p50": …, "mean": …, "max": …}``. NaN values are left out, as
    :func:`analysis.summary.percentiles` does."""

    def __init__(self, qs: Sequence[int]) -> None:
        self.qs = tuple(qs)
        self.n = 0
        self.total = 0.0
        self._nan = False
        self._upper = np.zeros(_BINS, dtype="int64")
        self._lower: dict[int, np.ndarray] = {}
        self._wanted: dict[int, tuple[int, int]] = {}  # rank → (upper bin, rank within the bin)
        self._lut: np.ndarray | None = None

    def _clean(self, values: np.ndarray, check: bool) -> np.ndarray:
        if check and np.isnan(values).any():
            self._nan = True
            kept: np.ndarray = values[~np.isnan(values)]
            return kept
        return values

    def count(self, values: np.ndarray) -> None:
        for start in range(0, values.size, _PIECE):
            piece = values[start : start + _PIECE]
            total = float(np.add.reduce(piece, dtype="float64"))
            if total != total:  # a NaN among them (or an infinity of each sign): leave the NaNs out
                piece = self._clean(piece, True)
                total = float(np.add.reduce(piece, dtype="float64"))
            if piece.size == 0:
                continue
            self.n += int(piece.size)
            self.total += total
            self._upper += np.bincount(_upper(piece), minlength=_BINS)

    def add(self, upper: np.ndarray, n: int, total: float) -> None:
        """Pass 1 done elsewhere (:func:`grouped_counts`): ``n`` values, their sum and their upper-bin counts."""
        self._upper += upper
        self.n += int(n)
        self.total += float(total)

    def _ranks(self) -> np.ndarray:
        pos = np.asarray(self.qs, dtype="float64") / 100.0 * (self.n - 1)
        lo = np.floor(pos).astype("int64")
        return np.unique(np.concatenate((lo, np.minimum(lo + 1, self.n - 1), [self.n - 1])))

    def _plan(self) -> None:
        if self._wanted or self.n == 0:
            return
        before = np.concatenate(([0], np.cumsum(self._upper)))
        for rank in self._ranks():
            upper = int(np.searchsorted(before, rank, side="right")) - 1
            self._wanted[int(rank)] = (upper, int(rank - before[upper]))
            self._lower.setdefault(upper, np.zeros(_BINS, dtype="int64"))
        self._lut = np.full(_BINS, len(self._lower), dtype="uint8")  # upper bin → its place among the wanted
        self._lut[list(self._lower)] = np.arange(len(self._lower))

    def refine(self, values: np.ndarray) -> None:
        self._plan()
        if self._lut is None:
            return
        bins = list(self._lower)
        for start in range(0, values.size, _PIECE):
            piece = self._clean(values[start : start + _PIECE], self._nan)
            place = self._lut[_upper(piece)]
            wanted = np.flatnonzero(place < len(bins))
            if wanted.size == 0:
                continue
            low = _keys(piece[wanted]) & np.uint32(0xFFFF)
            found = np.bincount(place[wanted].astype("int64") * _BINS + low, minlength=len(bins) * _BINS)
            for i, bin_ in enumerate(bins):
                self._lower[bin_] += found[i * _BINS : (i + 1) * _BINS]

    def _order_statistic(self, rank: int) -> float:
        upper, within = self._wanted[rank]
        lower = int(np.searchsorted(np.cumsum(self._lower[upper]), within, side="right"))
        return _value((upper << 16) | lower)

    def result(self) -> dict[str, float | None]:
        if self.n == 0:
            return {**{f"p{q}": None for q in self.qs}, "mean": None, "max": None}
        self._plan()
        pos = np.asarray(self.qs, dtype="float64") / 100.0 * (self.n - 1)
        lo = np.floor(pos).astype("int64")
        low = np.array([self._order_statistic(int(r)) for r in lo], dtype="float64")
        above = np.array([self._order_statistic(int(min(r + 1, self.n - 1))) for r in lo], dtype="float64")
        found = np.where(pos > lo, low + (pos - lo) * (above - low), low)
        return {
            **{f"p{q}": float(v) for q, v in zip(self.qs, found, strict=True)},
            "mean": self.total / self.n,
            "max": self._order_statistic(self.n - 1),
        }


def grouped_counts(
    values: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 1 of :class:`ExactPercentiles` for several groups at once (value ``i`` belongs to group ``groups[i]``,
    none when negative; NaN values to none): ``(upper-bin counts (n_groups × 65,536), values, sums)`` per group,
    for :meth:`ExactPercentiles.add`."""
    groups = groups.astype("int64")
    nan = np.isnan(values)
    if nan.any():
        groups[nan] = -1
    kept = groups >= 0
    if not kept.all():
        values, groups = values[kept], groups[kept]
    upper = np.bincount(groups * _BINS + _upper(values), minlength=n_groups * _BINS).reshape(n_groups, _BINS)
    sums = np.bincount(groups, weights=values, minlength=n_groups)
    return upper, upper.sum(axis=1), sums
