"""Scenario files (TOML) shipped with the tool, and where to find them after ``pip install``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SHIPPED_DIR", "find_shipped"]

SHIPPED_DIR = Path(__file__).resolve().parent


def find_shipped(name: str) -> Path | None:
    """The shipped scenario ``name`` (``chat``, ``chat.toml`` or ``scenarios/chat.toml``), or None."""
    stem = Path(name).name.removesuffix(".toml")
    path = SHIPPED_DIR / f"{stem}.toml"
    return path if path.is_file() else None
