"""How many load processes a run starts on this machine: ``--processes N`` or ``--processes auto``.

The rule for ``auto`` — as many Locust workers as there are cores to spare:

* **usable CPUs** — the CPUs this process may run on (``os.sched_getaffinity``: ``taskset``, a container's cpuset),
  fewer when a cgroup CPU quota allows less (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
  of v1: the quota in whole CPUs, rounded down, at least 1);
* **cores to spare** = usable CPUs − 1 for the CLI (with the Locust master, the progress line and the server-metrics
  scrape, all light) − 1 for the embedded simulator when the run starts one (it is the server: it needs a core of
  its own, or it and the engine distort each other) — never below 0;
* ``auto`` starts that many workers, at least 1 (one process: the engine alone, no master).

The same count of cores to spare is what the generator self-check suggests when an engine ran above half a core
(:mod:`analysis.validity`), from the usable CPUs the run's manifest recorded. The rule is pure
(:func:`spare_cores`, :func:`auto_processes`); :func:`usable_cpus` reads the machine.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "AUTO",
    "auto_processes",
    "cgroup_quota_cpus",
    "describe_auto",
    "parse_processes",
    "spare_cores",
    "usable_cpus",
]

AUTO: Final = "auto"
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")


def parse_processes(value: object) -> int | Literal["auto"]:
    """``--processes``: a whole number ≥ 1, or ``auto`` (any case). Anything else is a ``ValueError`` whose message
    shows the value."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        number = 0
    if number < 1:
        raise ValueError(f"expected a whole number ≥ 1 or 'auto', got {value!r}")
    return number


def spare_cores(usable: int, simulator: bool) -> int:
    """Cores left for load processes: ``usable`` CPUs less one for the CLI and one for an embedded simulator."""
    return max(0, usable - 1 - (1 if simulator else 0))


def auto_processes(usable: int, simulator: bool) -> int:
    """``--processes auto``: one worker per core to spare, at least one process."""
    return max(1, spare_cores(usable, simulator))


def describe_auto(usable: int, simulator: bool) -> str:
    """How ``auto`` counted, for the run's start line: ``"--processes auto: 4 usable CPUs, less 1 for the CLI and 1
    for the simulator"``."""
    less = "1 for the CLI" + (" and 1 for the simulator" if simulator else "")
    return f"--processes auto: {usable} usable CPU{'s' if usable != 1 else ''}, less {less}"


def cgroup_quota_cpus(
    cpu_max: str | None = None, cfs_quota: str | None = None, cfs_period: str | None = None
) -> int | None:
    """The CPUs a cgroup quota allows, rounded down (at least 1), or ``None`` with no quota: from cgroup v2's
    ``cpu.max`` (``"200000 100000"``, or ``"max 100000"`` for none), else v1's ``cpu.cfs_quota_us`` (``-1`` for
    none) and ``cpu.cfs_period_us``. Text that is not a quota counts as none."""
    quota: float | None = None
    period: float | None = None
    try:
        if cpu_max is not None:
            parts = cpu_max.split()
            if parts and parts[0] != "max":
                quota, period = float(parts[0]), float(parts[1]) if len(parts) > 1 else 100_000.0
        elif cfs_quota is not None and cfs_period is not None:
            quota, period = float(cfs_quota), float(cfs_period)
    except ValueError:
        return None
    if quota is None or period is None or quota <= 0 or period <= 0:
        return None
    return max(1, math.floor(quota / period))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: its CPU affinity (``os.cpu_count()`` where there is none), fewer under a
    cgroup CPU quota (read under ``root``)."""
    try:
        found = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        found = os.cpu_count() or 1
    quota = cgroup_quota_cpus(
        _read(root / "cpu.max"),
        _read(root / "cpu" / "cpu.cfs_quota_us"),
        _read(root / "cpu" / "cpu.cfs_period_us"),
    )
    return max(1, min(found, quota) if quota is not None else found)
