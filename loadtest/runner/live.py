"""``loadtest run``'s live progress line on stderr (stdout carries the tables), drawn from
:class:`loadtest.runner.progress.RunProgress`.

On a terminal, one line rewritten in place about once a second: a carriage return, the new text, and spaces over
what is left of the old one — no escape sequences, so it works on any terminal, and no library: a line of text
is all it is (rich's ``Live`` would own the console and want every other write to go through it). The line is cut
to the terminal's width, dropping whole parts from the end, because a line that wraps cannot be rewritten. Any
other line (a stage's end) first wipes the live line, so nothing is left half-overwritten; the live line comes back
on the next tick. Not on a terminal (CI logs, a file): a full line every :data:`LOG_INTERVAL_S` seconds, or every
``LOADTEST_PROGRESS_INTERVAL`` (a duration: ``10``, ``30s``, ``500ms``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from loadtest.client.clock import Clock
from loadtest.errors import ConfigError
from loadtest.runner.progress import RunProgress, describe
from loadtest.spec.runspec import RunSpec, parse_duration

__all__ = ["INTERVAL_ENV", "LOG_INTERVAL_S", "TTY_INTERVAL_S", "LiveLine", "fit", "watch"]

TTY_INTERVAL_S = 1.0
LOG_INTERVAL_S = 10.0
INTERVAL_ENV = "LOADTEST_PROGRESS_INTERVAL"  # the interval when not on a terminal
_INDENT = "  "  # as the stage-end lines
_SEP = " · "


def fit(parts: Sequence[str], width: int | None) -> str:
    """``parts`` joined, indented, with the last parts left out until it fits ``width`` characters (the first is
    cut if it alone does not fit); ``None``: no limit."""
    text = _INDENT + parts[0]
    for part in parts[1:]:
        if width is not None and len(text) + len(_SEP) + len(part) > width:
            break
        text += _SEP + part
    return text if width is None else text[:width]


def _width(stream: TextIO) -> int:
    """The terminal's columns; 80 when it does not say (a pseudo-terminal may answer 0)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80
    return columns if columns > 0 else 80


class LiveLine:
    """The progress line on ``stream`` (see the module docstring). ``tty``: rewrite one line in place, else write
    full lines; ``interval_s``: how often; ``width``: the terminal's width, asked on each draw (a resize)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool,
        interval_s: float,
        clock: Clock = time.monotonic,
        width: Callable[[], int] | None = None,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.interval_s = interval_s
        self.clock = clock
        self.width = width
        self._shown = 0  # characters of the line on screen (terminal)
        self._due = clock()
        self._broken = False

    @classmethod
    def for_stderr(cls, environ: Mapping[str, str] = os.environ) -> LiveLine:
        tty = sys.stderr.isatty()
        interval = TTY_INTERVAL_S if tty else LOG_INTERVAL_S
        if not tty and environ.get(INTERVAL_ENV):
            try:
                interval = parse_duration(environ[INTERVAL_ENV])
            except ValueError as exc:
                raise ConfigError(f"{INTERVAL_ENV}: {exc}") from None
        return cls(sys.stderr, tty=tty, interval_s=interval, width=lambda: _width(sys.stderr))

    def begin(self) -> None:
        """Start the schedule: on a terminal the first line now, else after one interval."""
        self._due = self.clock() + (0.0 if self.tty else self.interval_s)

    def due(self) -> bool:
        return not self._broken and self.clock() >= self._due

    def show(self, parts: Sequence[str]) -> None:
        """Draw the line now and schedule the next one."""
        self._due = self.clock() + self.interval_s
        if not self.tty:
            self._write(fit(parts, None) + "\n")
            return
        text = fit(parts, self.width() - 1 if self.width is not None else None)  # the last column would wrap
        self._write("\r" + text + " " * (self._shown - len(text)))
        self._shown = len(text)

    def clear(self) -> None:
        """Wipe the line from the terminal (nothing to do otherwise); the next tick draws it again."""
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0
            self._due = self.clock()

    def echo_through(self, echo: Callable[[str], None]) -> Callable[[str], None]:
        """``echo`` that wipes the live line first, so a line printed during the run stands on its own."""

        def echo_line(line: str) -> None:
            self.clear()
            echo(line)

        return echo_line

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: the run goes on without the line
            self._broken = True


def watch(live: LiveLine, spec: RunSpec, run_dir: Path, clock: Clock | None = None) -> Callable[[], None]:
    """A tick for :func:`loadtest.runner.run.execute_run`: read what the engine appended and, when due, draw (not
    between a stage's end and the next stage's start: the stage's end line stands alone)."""
    progress = RunProgress(spec, run_dir, clock)
    live.begin()

    def tick() -> None:
        progress.poll()
        if live.due():
            snapshot = progress.snapshot()
            if snapshot.phase == "done":  # the stage's end line says it: nothing more until the next stage
                live.clear()
            else:
                live.show(describe(snapshot))

    return tick
