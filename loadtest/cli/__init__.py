"""The ``loadtest`` command: option parsing and one-line errors; each command in its own module."""

from loadtest.cli.group import cli, main

__all__ = ["cli", "main"]
