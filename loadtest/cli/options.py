"""Option parsing shared by the CLI's commands."""

from __future__ import annotations

from typing import Any

from loadtest.errors import ConfigError

__all__ = ["numbers", "seconds"]


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
