"""Checks shared by the scenario's tables: unknown keys (with a did-you-mean hint), tables, durations, positive
numbers. Each raises a one-line :class:`ConfigError` naming where in the scenario the mistake is."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from loadtest.errors import ConfigError
from loadtest.spec.runspec import parse_duration

__all__ = ["check_keys", "duration", "positive", "table"]


def check_keys(table: dict[str, Any], allowed: Collection[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def table(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    return raw


def duration(raw: Any, where: str) -> float:
    try:
        return parse_duration(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def positive(raw: Any, where: str, *, integer: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise ConfigError(f"{where} must be a positive number, got {raw!r}")
    if integer and int(raw) != raw:
        raise ConfigError(f"{where} must be a whole number, got {raw!r}")
    return float(raw)
