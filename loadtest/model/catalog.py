"""Looking up a GPU profile or a catalogued architecture by name: the one place that checks such a name and the one
wording a user sees when it is wrong (``unknown GPU 'h200' for --gpu; known: a100, h100``)."""

from __future__ import annotations

import difflib
from typing import Final

from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES, Architecture
from loadtest.model.hardware import GPUS, GpuProfile

__all__ = [
    "DATABRICKS_NAMES",
    "architecture",
    "architecture_of_entity",
    "check_architecture",
    "check_gpu",
    "databricks_entity",
    "gpu",
    "unknown_name",
]

# Databricks' names for the catalog's architectures: first the model under Unity Catalog's ``system.ai`` schema
# (a served entity's ``entity_name`` is ``system.ai.<this>``), then the pay-per-token endpoint names. Where each
# name comes from, and which are unverified: docs/sources.md ("Databricks model names").
DATABRICKS_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "llama-3.3-70b": ("meta_llama_v3_3_70b_instruct", "databricks-meta-llama-3-3-70b-instruct"),
    "llama-3.1-8b": ("meta_llama_v3_1_8b_instruct", "databricks-meta-llama-3-1-8b-instruct"),
    "llama-3.1-70b": ("meta_llama_v3_1_70b_instruct", "databricks-meta-llama-3-1-70b-instruct"),
    "llama-3.1-405b": (
        "meta_llama_v3_1_405b_instruct",
        "meta_llama_v3_1_405b_instruct_fp8",
        "databricks-meta-llama-3-1-405b-instruct",
    ),
    "llama-3.2-1b": ("meta_llama_v3_2_1b_instruct",),
    "llama-3.2-3b": ("meta_llama_v3_2_3b_instruct",),
    "llama-3-8b": ("meta_llama_3_8b_instruct",),
    "llama-3-70b": ("meta_llama_3_70b_instruct", "databricks-meta-llama-3-70b-instruct"),
    "llama-2-7b": ("llama_2_7b_chat_hf",),
    "llama-2-13b": ("llama_2_13b_chat_hf",),
    "llama-2-70b": ("llama_2_70b_chat_hf", "databricks-llama-2-70b-chat"),
    "mistral-7b": ("mistral_7b_instruct_v0_2",),
    "mixtral-8x7b": ("mixtral_8x7b_instruct_v0_1", "databricks-mixtral-8x7b-instruct"),
    "dbrx": ("dbrx_instruct", "databricks-dbrx-instruct"),
    "mpt-7b": ("mpt_7b_instruct", "databricks-mpt-7b-instruct"),
    "mpt-30b": ("mpt_30b_instruct", "databricks-mpt-30b-instruct"),
    "llama-4-maverick": ("llama-4-maverick", "databricks-llama-4-maverick"),
    "gpt-oss-120b": ("gpt-oss-120b", "databricks-gpt-oss-120b"),
    "gpt-oss-20b": ("gpt-oss-20b", "databricks-gpt-oss-20b"),
    "gemma-3-12b": ("gemma-3-12b", "databricks-gemma-3-12b"),
    "gte-large": ("gte_large_en_v1_5", "databricks-gte-large-en"),
    "bge-large": ("bge_large_en_v1_5", "databricks-bge-large-en"),
}


def _model_part(name: str) -> str:
    """The model of a Unity Catalog name (``catalog.schema.model``), or the name itself."""
    name = name.strip()
    return name.split(".", 2)[2] if name.count(".") >= 2 else name


def _normal(name: str) -> str:
    """A Databricks name compared loosely: the model part of a Unity Catalog name, lower case, ``_`` and ``.``
    as ``-``."""
    return _model_part(name).lower().replace("_", "-").replace(".", "-")


_BY_DATABRICKS_NAME: Final[dict[str, str]] = {
    _normal(alias): key for key, aliases in DATABRICKS_NAMES.items() for alias in aliases
}


def unknown_name(kind: str, name: object, known: list[str], where: str | None = None) -> ConfigError:
    """``unknown KIND 'NAME'[ for WHERE] (did you mean 'X'?); known: A, B, C`` as a :class:`ConfigError`."""
    text = str(name)
    close = [k for k in known if k.lower() == text.lower()] or difflib.get_close_matches(text, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    place = f" for {where}" if where else ""
    return ConfigError(f"unknown {kind} {name!r}{place}{hint}; known: {', '.join(known)}")


def check_architecture(key: object, where: str | None = None) -> str:
    """``key`` if it names a catalogued architecture, else the one-line error; ``where`` names the option or file."""
    if isinstance(key, str) and key in ARCHITECTURES:
        return key
    raise unknown_name("architecture", key, sorted(ARCHITECTURES), where)


def check_gpu(key: object, where: str | None = None) -> str:
    """``key`` if it names a catalogued GPU profile, else the one-line error."""
    if isinstance(key, str) and key in GPUS:
        return key
    raise unknown_name("GPU", key, sorted(GPUS), where)


def architecture(key: object, where: str | None = None) -> Architecture:
    return ARCHITECTURES[check_architecture(key, where)]


def gpu(key: object, where: str | None = None) -> GpuProfile:
    return GPUS[check_gpu(key, where)]


def databricks_entity(key: str) -> str:
    """The Unity Catalog name a served entity of architecture ``key`` has (``system.ai.…``)."""
    aliases = DATABRICKS_NAMES.get(key)
    return f"system.ai.{aliases[0] if aliases else key}"


def architecture_of_entity(name: str, where: str, *, served: bool = True) -> str:
    """The catalog architecture a Databricks served entity or endpoint name stands for: a ``system.ai`` model
    (``system.ai.meta_llama_v3_3_70b_instruct``), a pay-per-token endpoint name
    (``databricks-meta-llama-3-3-70b-instruct``) or a catalog key; else the one-line error, naming ``where`` it
    came from (``WHERE serves NAME, which is not …``; with ``served=False``, ``WHERE is not …``)."""
    for candidate in (name, _model_part(name)):
        if candidate in DATABRICKS_NAMES:
            return candidate
    key = _BY_DATABRICKS_NAME.get(_normal(name))
    if key is not None:
        return key
    subject = f"{where} serves {name!r}, which is" if served else f"{where} is"
    raise ConfigError(
        f"{subject} not a model the architecture catalog knows (it knows Databricks' "
        f"system.ai models for: {', '.join(sorted(DATABRICKS_NAMES))}): plan a custom model with --arch instead"
    )
