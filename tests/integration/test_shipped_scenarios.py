"""`loadtest run scenarios/X.toml` runs each shipped scenario against its simulator (shortened: 1 s stages of at
most 40 requests, answers of at most 32 tokens). The Python scenarios' (a ``[python]`` table: their module says what
each call sends, so no ``--max-tokens``) are run and checked flow by flow in ``test_python_scenarios.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import load_run
from loadtest.spec.scenario import load_scenario
from tests.helpers import ROOT, only_run_dir, run_cli

pytestmark = pytest.mark.slow

SHIPPED = [p for p in sorted((ROOT / "scenarios").glob("*.toml")) if load_scenario(p).python is None]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_each_shipped_scenario_runs(path: Path, tmp_path: Path) -> None:
    scenario = load_scenario(path)
    proc = run_cli(
        "run",
        str(path),
        "--duration",
        "1s",
        "--max-requests",
        "40",
        "--max-concurrency",
        "64",
        "--max-tokens",  # short answers: each stage's in-flight requests drain in well under a second
        "32",
        "--out",
        str(tmp_path),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    data = load_run(only_run_dir(tmp_path))
    assert data.manifest.status == "complete"
    labels = {s.label for s in data.manifest.stages or ()}
    assert labels == {s.label for s in scenario.stages}
    df = data.records
    assert len(df) > 0 and df["ok"].mean() > 0.9, df["error_detail"].value_counts().head(3).to_dict()
    assert set(df["request_class"]) <= {c.name for c in scenario.classes}
