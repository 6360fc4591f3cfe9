"""Option parsing and file writing shared by the CLI's commands."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from loadtest.errors import ConfigError

__all__ = [
    "MAX_PEAK_RPS",
    "MAX_PEAK_TPM",
    "Bounded",
    "Processes",
    "abort_after",
    "numbers",
    "seconds",
    "write_atomically",
]

# Forecasts beyond these are typing mistakes, not plans: 10 billion tokens a minute is ~170 million tokens a second,
# a million requests a second 5,000 times a workspace's provisioned-throughput QPS limit (docs/plan.md)
MAX_PEAK_TPM = 1e10
MAX_PEAK_RPS = 1e6


class Bounded(click.ParamType[float, Any]):
    """A finite number in ``(low, high]`` (``[low, high]`` with ``low_open=False``): NaN, infinities and absurd
    magnitudes are a usage error (one line, exit 2), not a crash or a row of ``$inf``."""

    name = "number"

    def __init__(self, low: float, high: float, low_open: bool = True) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        above = number > self.low if self.low_open else number >= self.low
        if not above or number > self.high:
            bracket = "(" if self.low_open else "["
            self.fail(f"{value} is outside {bracket}{self.low:g}, {self.high:g}]", param, ctx)
        return number


class Processes(click.ParamType[int | str, Any]):
    """``--processes``: a whole number ≥ 1 or ``auto`` (:func:`loadtest.spec.processes.parse_processes`); anything
    else is a usage error (one line, exit 2)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        from loadtest.spec.processes import parse_processes

        try:
            return parse_processes(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def numbers(values: tuple[str, ...], flag: str, kind: type[int] | type[float]) -> tuple[Any, ...]:
    """Repeatable, comma-separated positive numbers: ``-c 1,4 -c 16`` → (1, 4, 16)."""
    found: list[Any] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                number = kind(part)
            except ValueError:
                raise ConfigError(f"{flag} takes positive numbers, got {part!r}") from None
            if number <= 0:
                raise ConfigError(f"{flag} takes positive numbers, got {part!r}")
            found.append(number)
    return tuple(found)


def seconds(value: str | None, flag: str) -> float | None:
    from loadtest.spec.runspec import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def abort_after(value: str | None, flag: str) -> float | None:
    """A dead-endpoint limit (``--abort-after``): None when not given, 0.0 for ``off`` (or 0), else seconds."""
    from loadtest.spec.runspec import parse_abort_after

    if value is None:
        return None
    try:
        found = parse_abort_after(value)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc} (or off)") from None
    return 0.0 if found is None else found


def server_metrics(value: str | None, flag: str) -> str | None:
    """``--server-metrics``: None when not given (the scenario's ``[load] server_metrics`` then, else ``auto``),
    else ``auto``, ``off`` or an http(s) URL."""
    from loadtest.spec.runspec import parse_server_metrics

    if value is None:
        return None
    try:
        return parse_server_metrics(value)
    except ValueError as exc:
        raise ConfigError(f"{flag} {exc}") from None


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file beside ``target`` and rename it into place, so that an interrupted write
    never leaves half a file; the file gets the usual permissions (0666 less the umask). A file that cannot be
    written is one line (exit 2)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
