"""Looking up a GPU profile or a catalogued architecture by name: the one place that checks such a name and the one
wording a user sees when it is wrong (``unknown GPU 'h200' for --gpu; known: a100, h100``)."""

from __future__ import annotations

import difflib

from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES, Architecture
from loadtest.model.hardware import GPUS, GpuProfile

__all__ = ["architecture", "check_architecture", "check_gpu", "gpu", "unknown_name"]


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
