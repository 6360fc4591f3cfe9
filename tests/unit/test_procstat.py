"""A child process's own peak memory, not its parent's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.engine.procstat import peak_rss_mb

CHILD = (
    "import resource; from loadtest.engine.procstat import peak_rss_mb; "
    "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_child_reports_its_own_peak_not_the_parents() -> None:
    ballast = bytearray(400 * 1024 * 1024)  # touched: 400 MB resident in this (the parent) process
    ballast[::4096] = b"x" * len(ballast[::4096])
    assert peak_rss_mb() > 400
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    own, inherited = (float(v) for v in out.split())
    del ballast
    assert own < 150  # an interpreter and one small module
    assert inherited > 400  # what ru_maxrss says on Linux: the parent's high-water mark carried across exec
