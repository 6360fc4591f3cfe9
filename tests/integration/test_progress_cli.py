"""`loadtest run`'s live progress on stderr against the embedded simulator: full lines in a log, one line rewritten
in place on a terminal (a pseudo-terminal here), and nothing with --quiet."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from loadtest.runner.live import INTERVAL_ENV
from tests.helpers import ROOT, run_cli

pytestmark = pytest.mark.slow

RUN = ("run", "-c", "2", "-d", "3s", "--prompt-tokens", "64", "--max-tokens", "16")
LINE = re.compile(
    r"  stage 1/1 concurrency@2 \ds/3s(?: draining \ds)? · (\d+) req, (\d+) errors, 0 429s"
    r" · (?:– |[\d.,]+ )req/s · (?:– |[\d.,]+ )out tok/s · TTFT p50 (?:–|[\d.,]+ ms)"
)
STAGE_END = re.compile(r"  concurrency@2: (\d+) requests")


def test_a_log_gets_a_full_line_every_interval(tmp_path: Path) -> None:
    proc = run_cli(*RUN, "--out", str(tmp_path), env={INTERVAL_ENV: "500ms"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    live = [m for line in lines if (m := LINE.fullmatch(line))]
    assert len(live) >= 4, proc.stderr  # 3 s of load, a line every 0.5 s
    assert "\r" not in proc.stderr
    (end,) = [m for line in lines if (m := STAGE_END.fullmatch(line))]
    counts = [int(m.group(1)) for m in live]
    assert counts == sorted(counts) and counts[-1] <= int(end.group(1))
    assert all(int(m.group(2)) == 0 for m in live)
    assert "stage 1/1" not in proc.stdout  # the tables' stream has no progress


def test_quiet_prints_the_results_only(tmp_path: Path) -> None:
    proc = run_cli(*RUN, "--quiet", "--out", str(tmp_path), env={INTERVAL_ENV: "200ms"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("stage ") and "concurrency@2" in proc.stdout


def test_a_terminal_gets_one_line_rewritten_and_wiped_before_other_lines(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    with subprocess.Popen(
        [sys.executable, "-m", "loadtest", *RUN, "--out", str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
    ) as proc:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        assert proc.wait(timeout=60) == 0
    os.close(primary)
    screen = b"".join(chunks).decode().replace("\r\n", "\n")
    assert "stage 1/1" not in stdout
    lines = screen.split("\n")
    end_at = next(i for i, line in enumerate(lines) if "concurrency@2: " in line)
    drawn = lines[end_at].split("\r")
    assert sum(bool(LINE.fullmatch(d)) for d in drawn) >= 2, drawn  # live lines drawn over one another
    # wiped before the stage's end is printed, not left half-overwritten
    assert STAGE_END.fullmatch(visible(lines[end_at]).rstrip(" ")), lines[end_at]
    assert visible(lines[-1]).strip(" ") == "", lines[-1]  # nothing left on the line the tables would follow


def visible(line: str) -> str:
    """What a terminal shows of a line written with carriage returns: each part overwrites from column 0."""
    shown = ""
    for part in line.split("\r"):
        shown = part + shown[len(part) :]
    return shown
