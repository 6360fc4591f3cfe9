"""The price and quota table ``loadtest plan`` costs with. User-editable TOML; the shipped one
(``scenarios/prices/example.toml``) holds examples and published figures, each with its source.

Top level: ``label``, ``usd_per_dbu`` (the one $/DBU every DBU figure is priced at; ``usd_per_dbu_source`` says
where it comes from), and the one GPU-hour basis that
estimated provisioned-throughput rates are priced from — ``dbu_per_gpu_hour`` given outright, or
``gpu_hour_from = "<architecture>"``, whose entry's published chunk (``throughput_chunk_size`` and
``dbu_per_chunk_hour``) the planner turns into DBUs per GPU-hour through the model (:mod:`analysis.cost_basis`).

Per architecture (``[models."<architecture>"]``) or for all (``[models.default]``):

* pay-per-token prices and quotas (``ppt_input_per_million``, ``ppt_output_per_million``, ``itpm``, ``otpm``,
  ``qph``, ``qps``) — an architecture's entry falls back to ``default`` field by field (:meth:`PriceBook.resolve`
  says which fields came from where); ``"none"`` says "not applicable here", so nothing falls back;
* the provisioned-throughput figures of that architecture's hardware (``throughput_chunk_size``,
  ``dbu_per_chunk_hour``, ``model_unit_tokens_per_s``, ``dbu_per_model_unit_hour``) — per architecture only, never
  in ``default`` (one chunk size or one price for every model is what made costs meaningless across them); what a
  table leaves out the model estimates;
* ``source``: where the entry's figures come from, shown with the plan.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import unknown_name

__all__ = [
    "HARDWARE_FIELDS",
    "SHARED_FIELDS",
    "PriceBook",
    "PriceEntry",
    "Resolved",
    "load_prices",
]

# fields an architecture takes from [models.default] when it does not set them
SHARED_FIELDS = (
    "ppt_input_per_million",
    "ppt_output_per_million",
    "itpm",
    "otpm",
    "qph",
    "qps",
)
# figures of one architecture's hardware: never shared through default
HARDWARE_FIELDS = (
    "throughput_chunk_size",
    "dbu_per_chunk_hour",
    "model_unit_tokens_per_s",
    "dbu_per_model_unit_hour",
)
_QUOTAS = ("itpm", "otpm", "qph", "qps")
_POSITIVE = ("throughput_chunk_size", "model_unit_tokens_per_s")
_RENAMED = {
    "pt_per_chunk_hour": "dbu_per_chunk_hour (and usd_per_dbu at the top of the table)",
    "pt_per_model_unit_hour": "dbu_per_model_unit_hour (and usd_per_dbu at the top of the table)",
}


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One ``[models.X]`` table. ``none``: the fields written as ``"none"`` (explicitly not applicable)."""

    ppt_input_per_million: float | None = None
    ppt_output_per_million: float | None = None
    itpm: int | None = None
    otpm: int | None = None
    qph: int | None = None
    qps: int | None = None
    throughput_chunk_size: float | None = None
    dbu_per_chunk_hour: float | None = None
    model_unit_tokens_per_s: float | None = None
    dbu_per_model_unit_hour: float | None = None
    source: str | None = None
    none: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Resolved:
    """An architecture's figures after the fallback: the merged entry, and which fields came from ``default``
    (empty when the architecture has no entry of its own: then ``own`` is False and everything shared is default's)."""

    entry: PriceEntry
    own: bool
    from_default: tuple[str, ...]

    def note(self, architecture: str) -> str | None:
        """One line saying where a partial entry's other pay-per-token figures came from, or None (no entry, or
        an entry that sets none of them: then they are all default's, as for an architecture without one)."""
        entry = self.entry
        if not self.own or all(
            name in self.from_default or (getattr(entry, name) is None and name not in entry.none)
            for name in SHARED_FIELDS
        ):
            return None
        if self.from_default:
            return f'{", ".join(self.from_default)} from [models.default] ([models."{architecture}"] leaves them out)'
        return None


@dataclass(frozen=True, slots=True)
class PriceBook:
    label: str
    entries: Mapping[str, PriceEntry]
    source: str | None = None
    usd_per_dbu: float | None = None
    usd_per_dbu_source: str | None = None
    dbu_per_gpu_hour: float | None = None
    gpu_hour_from: str | None = None

    def resolve(self, architecture: str) -> Resolved:
        """The architecture's entry, its unset shared fields taken from ``default`` (``"none"`` stops that)."""
        default = self.entries.get("default", PriceEntry())
        own = self.entries.get(architecture)
        if own is None:
            shared = {name: getattr(default, name) for name in SHARED_FIELDS}
            return Resolved(replace(PriceEntry(), **shared, source=default.source), False, ())
        taken = {
            name: getattr(default, name)
            for name in SHARED_FIELDS
            if getattr(own, name) is None and name not in own.none and getattr(default, name) is not None
        }
        return Resolved(replace(own, **taken), True, tuple(taken))

    def get(self, architecture: str) -> PriceEntry:
        return self.resolve(architecture).entry


def _number(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value)
    )


def _hint(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"


def _entry(name: str, table: object, where: str) -> PriceEntry:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    allowed = [f.name for f in fields(PriceEntry) if f.name != "none"]
    values: dict[str, object] = {}
    none: set[str] = set()
    for key, value in table.items():
        if key in _RENAMED:
            raise ConfigError(
                f"{where}: {key} is gone: give {_RENAMED[key]}, so that every row is on one basis"
            )
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}'{_hint(key, sorted(allowed))}")
        if name == "default" and key in HARDWARE_FIELDS:
            raise ConfigError(
                f'{where}: {key} describes one architecture\'s hardware: give it under [models."<architecture>"] '
                "(the model estimates it for the others)"
            )
        if key == "source":
            if not isinstance(value, str):
                raise ConfigError(f"{where}: source must be a string, got {value!r}")
            values[key] = value
            continue
        if value == "none":
            if key in HARDWARE_FIELDS:
                raise ConfigError(f'{where}: {key} = "none": leave it out, and the model estimates it')
            none.add(key)
            continue
        if key in _QUOTAS:
            ok, what = _number(value) and isinstance(value, int) and value > 0, "a positive integer"
        elif key in _POSITIVE:
            ok, what = _number(value) and value > 0, "a number > 0"
        else:  # a price or a DBU rate
            ok, what = _number(value) and value >= 0, "a number ≥ 0"
        if not ok:
            raise ConfigError(f'{where}: {key} must be {what} (or "none"), got {value!r}')
        values[key] = value
    return PriceEntry(**values, none=frozenset(none))  # type: ignore[arg-type]


def _check_kind(name: str, entry: PriceEntry, where: str) -> None:
    """Chunk figures only for token-band architectures, model-unit figures only for model-unit ones; a chunk's
    DBUs only with the chunk size they were published for."""
    bands = ARCHITECTURES[name].provisioning == "tokens_band"
    wrong = ("model_unit_tokens_per_s", "dbu_per_model_unit_hour") if bands else HARDWARE_FIELDS[:2]
    for key in wrong:
        if getattr(entry, key) is not None:
            kind = "token bands" if bands else "model units"
            raise ConfigError(f"{where}: {key} does not apply: {name} is sized in {kind}")
    if entry.dbu_per_chunk_hour is not None and entry.throughput_chunk_size is None:
        raise ConfigError(
            f"{where}: dbu_per_chunk_hour needs the throughput_chunk_size it was published for (a DBU rate for the "
            "model's estimated chunk would price a different slice of a GPU)"
        )


def load_prices(path: Path) -> PriceBook:
    """A price/quota table (see the module docstring). Quotas are positive integers, prices and DBU rates numbers
    ≥ 0, chunk sizes and model-unit rates numbers > 0, any of them ``"none"``; an unknown model name or key is an
    error, not ignored."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read price table {path}: {exc}") from None
    top = ["label", "models", "usd_per_dbu", "usd_per_dbu_source", "dbu_per_gpu_hour", "gpu_hour_from"]
    for key in raw:
        if key not in top:
            raise ConfigError(f"{path}: unknown key '{key}'{_hint(key, top)}")
    label = raw.get("label", path.name)
    for key in ("label", "usd_per_dbu_source", "gpu_hour_from"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{path}: {key} must be a string, got {raw[key]!r}")
    for key in ("usd_per_dbu", "dbu_per_gpu_hour"):
        if key in raw and not (_number(raw[key]) and raw[key] > 0):
            raise ConfigError(f"{path}: {key} must be a number > 0, got {raw[key]!r}")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{path}: [models] must be a table of tables")
    entries: dict[str, PriceEntry] = {}
    for name, table in models.items():
        where = f'{path}: [models."{name}"]'
        if name != "default" and name not in ARCHITECTURES:
            raise unknown_name("architecture", name, ["default", *sorted(ARCHITECTURES)], where)
        entry = _entry(name, table, where)
        if name != "default":
            _check_kind(name, entry, where)
        entries[name] = entry
    anchor = raw.get("gpu_hour_from")
    if anchor is not None:
        if "dbu_per_gpu_hour" in raw:
            raise ConfigError(f"{path}: give dbu_per_gpu_hour or gpu_hour_from, not both")
        given = entries.get(anchor)
        arch = ARCHITECTURES.get(anchor)
        if arch is None or arch.kind != "decoder" or arch.provisioning != "tokens_band":
            raise ConfigError(
                f'{path}: gpu_hour_from = "{anchor}" must name a generative model sized in token bands (its '
                "published chunk is what a GPU-hour is derived from)"
            )
        if given is None or given.throughput_chunk_size is None or given.dbu_per_chunk_hour is None:
            raise ConfigError(
                f'{path}: gpu_hour_from = "{anchor}" needs [models."{anchor}"] with throughput_chunk_size and '
                "dbu_per_chunk_hour (a published chunk and its DBUs)"
            )
    return PriceBook(
        label=label,
        entries=entries,
        source=str(path),
        usd_per_dbu=raw.get("usd_per_dbu"),
        usd_per_dbu_source=raw.get("usd_per_dbu_source"),
        dbu_per_gpu_hour=raw.get("dbu_per_gpu_hour"),
        gpu_hour_from=anchor,
    )
