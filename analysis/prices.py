"""The price and quota table ``loadtest plan`` costs with: per architecture (or ``default``), pay-per-token prices,
provisioned-throughput prices, chunk sizes and model-unit rates, and pay-per-token quotas. User-editable TOML; the
shipped one (``scenarios/prices/example.toml``) holds examples, labelled as such."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import unknown_name

__all__ = ["PriceBook", "PriceEntry", "load_prices"]


@dataclass(frozen=True, slots=True)
class PriceEntry:
    ppt_input_per_million: float | None = None
    ppt_output_per_million: float | None = None
    pt_per_chunk_hour: float | None = None
    pt_per_model_unit_hour: float | None = None
    throughput_chunk_size: float | None = None
    model_unit_tokens_per_s: float | None = None
    itpm: int | None = None
    otpm: int | None = None
    qph: int | None = None
    qps: int | None = None


@dataclass(frozen=True, slots=True)
class PriceBook:
    label: str
    entries: Mapping[str, PriceEntry]
    source: str | None = None

    def get(self, architecture: str) -> PriceEntry:
        return self.entries.get(architecture, self.entries.get("default", PriceEntry()))


def load_prices(path: Path) -> PriceBook:
    """A price/quota table: ``label = "..."`` and one ``[models."<architecture>"]`` table per model (or
    ``default``) with any of the :class:`PriceEntry` fields. Quotas are positive integers, prices numbers ≥ 0,
    chunk sizes and model-unit rates numbers > 0; an unknown model name or key is an error, not ignored."""
    import difflib

    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read price table {path}: {exc}") from None

    def hint(key: str, known: list[str]) -> str:
        close = difflib.get_close_matches(key, known, n=1)
        return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"

    for key in raw:
        if key not in ("label", "models"):
            raise ConfigError(f"{path}: unknown key '{key}'{hint(key, ['label', 'models'])}")
    label = raw.get("label", path.name)
    if not isinstance(label, str):
        raise ConfigError(f"{path}: label must be a string, got {label!r}")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{path}: [models] must be a table of tables")
    allowed = set(PriceEntry.__dataclass_fields__)
    entries: dict[str, PriceEntry] = {}
    for name, table in models.items():
        where = f'{path}: [models."{name}"]'
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key in table:
            if key not in allowed:
                raise ConfigError(f"{where}: unknown key '{key}'{hint(key, sorted(allowed))}")
        if name != "default" and name not in ARCHITECTURES:
            raise unknown_name("architecture", name, ["default", *sorted(ARCHITECTURES)], where)
        for key, value in table.items():
            number = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and math.isfinite(value)
            )
            if key in ("itpm", "otpm", "qph", "qps"):
                ok, what = number and isinstance(value, int) and value > 0, "a positive integer"
            elif key in ("throughput_chunk_size", "model_unit_tokens_per_s"):
                ok, what = number and value > 0, "a number > 0"
            else:  # a price
                ok, what = number and value >= 0, "a number ≥ 0"
            if not ok:
                raise ConfigError(f"{where}: {key} must be {what}, got {value!r}")
        entries[name] = PriceEntry(**table)
    return PriceBook(label=label, entries=entries, source=str(path))
