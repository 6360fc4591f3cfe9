"""Shared fixtures. The helpers the tests share (``run_cli``, ``refused``, ``only_run_dir``, hand-built runs, …) are
plain functions in ``tests/helpers.py``."""

from __future__ import annotations

import pytest

from tests.helpers import free_port


@pytest.fixture
def port() -> int:
    return free_port()
