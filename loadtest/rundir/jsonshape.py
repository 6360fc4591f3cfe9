"""Reading a JSON object field by field with its type checked: a field of the wrong type is one
:class:`~loadtest.errors.ConfigError` line naming the file and the field (``stages[0].label must be a string, got
3``), never a crash later. Used by :mod:`loadtest.rundir.manifest` for what the manifest holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import orjson

from loadtest.errors import ConfigError

__all__ = ["JsonObject"]


def _shown(value: Any) -> str:
    shown = orjson.dumps(value).decode()
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class JsonObject:
    """One JSON object of ``file``, at ``prefix`` (``"spec."``, ``"stages[0]."``) inside it."""

    __slots__ = ("file", "prefix", "raw")

    def __init__(self, raw: Mapping[str, Any], file: Path, prefix: str = "") -> None:
        self.raw, self.file, self.prefix = raw, file, prefix

    def fail(self, name: str, what: str, value: Any) -> NoReturn:
        raise ConfigError(f"{self.file}: {name} must be {what}, got {_shown(value)}")

    def _get(self, key: str, required: bool) -> Any:
        value = self.raw.get(key)
        if value is None and required:
            if key in self.raw:
                self.fail(self.prefix + key, "given", None)
            raise ConfigError(f"{self.file}: {self.prefix}{key} is missing")
        return value

    def has(self, key: str) -> bool:
        return key in self.raw

    def number(self, key: str, *, required: bool = False) -> float | None:
        value = self._get(key, required)
        if value is not None and not _number(value):
            self.fail(self.prefix + key, "a number", value)
        return value  # type: ignore[no-any-return]  # as written: an int stays an int

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self._get(key, required)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            self.fail(self.prefix + key, "an integer", value)
        return value

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is not None and not isinstance(value, str):
            self.fail(self.prefix + key, "a string", value)
        return value

    def flag(self, key: str, *, required: bool = False) -> bool | None:
        value = self._get(key, required)
        if value is not None and not isinstance(value, bool):
            self.fail(self.prefix + key, "true or false", value)
        return value

    def obj(self, key: str, *, required: bool = False) -> JsonObject | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(self.prefix + key, "an object", value)
        return JsonObject(value, self.file, f"{self.prefix}{key}.")

    def objects(self, key: str, *, required: bool = False) -> list[JsonObject] | None:
        """A list of objects (each one checked)."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, list):
            self.fail(self.prefix + key, "a list", value)
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(f"{self.prefix}{key}[{i}]", "an object", item)
            out.append(JsonObject(item, self.file, f"{self.prefix}{key}[{i}]."))
        return out

    def texts(self, key: str, *, required: bool = False) -> tuple[str, ...] | None:
        """A list of strings."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(self.prefix + key, "a list of strings", value)
        return tuple(value)

    def text_map(self, key: str, *, required: bool = False, nullable: bool = False) -> dict[str, Any] | None:
        """An object of strings (``nullable``: or nulls)."""
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(
            isinstance(v, str) or (nullable and v is None) for v in value.values()
        ):
            self.fail(self.prefix + key, "an object of strings", value)
        return dict(value)
