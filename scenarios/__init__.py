"""Scenario files (TOML) shipped with the tool, and their loader."""

__all__: list[str] = []
