"""A forecast's hourly load: a named shape (``flat``, ``business-hours``, ``diurnal``) or a CSV of tokens or requests
per hour over a day, a week or any number of hours, repeated over a month by the planner.

A profile is each hour's mean load as a share of the busiest hour's (the busiest is 1). The planner scales it by
the forecast peak; a CSV also gives the peak itself (its busiest hour) when no ``--peak-*`` is given. The load within
an hour is taken as flat at the hour's mean: bursts inside an hour are what the headroom is for.

Shapes (hour 0 is midnight, a week starts on Monday):

* ``flat``: 24 hours at 1.
* ``business-hours``: a week; 09:00–17:00 on weekdays at 1, every other hour at 0.05.
* ``diurnal``: 24 hours, ``0.55 + 0.45·cos(2π(h − 14)/24)``: 1 at 14:00, 0.1 at 02:00.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from loadtest.errors import ConfigError

__all__ = ["MAX_HOURS", "SHAPES", "LoadProfile", "read_profile", "shape"]

MAX_HOURS: Final[int] = 744  # a 31-day month
SHAPES: Final[tuple[str, ...]] = ("flat", "business-hours", "diurnal")


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """``shares``: each hour's mean load over the busiest hour's. ``peak``: the busiest hour of a CSV, in its
    ``unit`` per hour (None for a named shape)."""

    name: str
    shares: tuple[float, ...]
    peak: float | None = None
    unit: Literal["tokens", "requests"] | None = None

    @property
    def hours(self) -> int:
        return len(self.shares)

    @property
    def mean_share(self) -> float:
        return sum(self.shares) / len(self.shares)


def shape(name: str) -> LoadProfile:
    """A named shape (see the module docstring)."""
    if name == "flat":
        return LoadProfile(name, (1.0,) * 24)
    if name == "business-hours":
        day = tuple(1.0 if 9 <= h < 17 else 0.05 for h in range(24))
        return LoadProfile(name, day * 5 + (0.05,) * 48)
    if name == "diurnal":
        return LoadProfile(
            name, tuple(0.55 + 0.45 * math.cos(2 * math.pi * (h - 14) / 24) for h in range(24))
        )
    raise ConfigError(f"unknown profile shape '{name}': give one of {', '.join(SHAPES)} or a CSV file")


def read_profile(path: Path) -> LoadProfile:
    """A CSV with a header and one row per hour: a ``tokens`` or a ``requests`` column (that hour's total, ≥ 0,
    finite; the header's case and a UTF-8 byte-order mark do not matter), other columns (``hour``, a date)
    ignored; 1 to 744 rows, at least one above 0. A row with more fields than the header is an error (a
    ``1,000`` unquoted would otherwise read as 1)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read profile {path}: {exc}") from None
    unit: Literal["tokens", "requests"]
    if "tokens" in header and "requests" not in header:
        unit = "tokens"
    elif "requests" in header and "tokens" not in header:
        unit = "requests"
    else:
        raise ConfigError(
            f"{path}: give a header with a 'tokens' or a 'requests' column (per hour), one row per hour"
        )
    if not 1 <= len(rows) <= MAX_HOURS:
        raise ConfigError(
            f"{path}: {len(rows)} hours; a profile has 1 to {MAX_HOURS} (a day, a week, a month)"
        )
    column = header.index(unit)
    values = []
    for line, row in rows:
        if len(row) > len(header):
            raise ConfigError(
                f"{path}:{line}: {len(row)} fields under a {len(header)}-column header (quote numbers with "
                "thousands separators, or drop the separators)"
            )
        text = row[column].strip() if column < len(row) else ""
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{path}:{line}: {unit} must be a finite number ≥ 0, got {text!r}")
        values.append(value)
    peak = max(values)
    if peak <= 0:
        raise ConfigError(f"{path}: every hour is 0: nothing to plan for")
    return LoadProfile(str(path), tuple(v / peak for v in values), peak, unit)
