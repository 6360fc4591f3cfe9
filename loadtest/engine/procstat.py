"""What this process costs: its peak resident memory.

``getrusage(RUSAGE_SELF).ru_maxrss`` is the wrong figure for a process started by ``subprocess`` on Linux: the kernel
carries the high-water mark of the forked image (the parent's memory, e.g. the CLI with pandas and pyarrow loaded)
across ``execve`` into the new program's ``ru_maxrss``. ``VmHWM`` in ``/proc/self/status`` belongs to the current
address space and starts afresh at ``execve``, so it is this program's own peak.
"""

from __future__ import annotations

import resource

__all__ = ["peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` where ``/proc`` has it, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
