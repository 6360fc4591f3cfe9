"""What the big-run benchmarks share: write the synthetic run once, then measure it in a fresh child process per
repeat (so that each repeat's peak RSS and imports are its own). Light on purpose: the measured children import it
too, and it imports nothing they would not."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ensure_run", "repeat_in_children"]

GAPS_FILE = "chunk_gaps.f32"  # loadtest.client.records.GAPS_FILE, not imported: see the module docstring


def ensure_run(run_dir: Path, records: int, write: Callable[[Path, int], None]) -> None:
    """Write the synthetic run with ``write(run_dir, records)`` unless it is there, and say what was written."""
    if (run_dir / "manifest.json").exists():
        return
    t0 = time.perf_counter()
    write(run_dir, records)
    size = (run_dir / "records.jsonl").stat().st_size
    side = (run_dir / GAPS_FILE).stat().st_size
    took = time.perf_counter() - t0
    print(
        f"generated {records:,} records (records.jsonl {size / 1e9:.2f} GB, {GAPS_FILE} {side / 1e9:.2f} GB)"
        f" in {took:.0f} s"
    )


def repeat_in_children(script: str, argv: Sequence[str], repeat: int) -> None:
    """Run ``python script *argv`` ``repeat`` times, each a fresh process with a fixed hash seed, printing what
    each measured."""
    import os

    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, script, *argv],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        print(out.stdout.strip())
