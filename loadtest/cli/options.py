"""Option parsing and file writing shared by the CLI's commands."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtest.errors import ConfigError

__all__ = ["numbers", "seconds", "write_atomically"]


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
