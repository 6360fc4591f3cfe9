"""The CI examples docs/ci.md shows work as written: the shell script gates the shipped ci-gate scenario on the
simulator against the committed baseline run, and the GitHub Actions workflow in the docs is the file in
examples/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import xmlschema

from tests.helpers import ROOT

SCHEMA = ROOT / "tests" / "unit" / "data" / "junit-10.xsd"


def test_the_workflow_in_the_docs_is_the_example_file() -> None:
    docs = (ROOT / "docs" / "ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", docs, flags=re.S)
    assert blocks == [(ROOT / "examples" / "ci" / "github-actions.yml").read_text()]


def test_the_committed_baseline_is_a_valid_run_of_the_ci_scenario() -> None:
    from analysis import load_run
    from analysis.validity import validity_of
    from loadtest.spec.scenario import load_scenario

    data = load_run(ROOT / "examples" / "ci" / "baseline")
    assert data.manifest.name == "ci-gate" and data.manifest.status == "complete"
    # still a run of the shipped scenario: the same classes, SLOs and stages (refresh it when the scenario changes)
    scenario = load_scenario(ROOT / "scenarios" / "ci-gate.toml")
    assert [(c.name, dict(c.slo)) for c in data.manifest.spec.request_classes] == [
        (c.name, dict(c.slo)) for c in scenario.classes
    ]
    assert data.manifest.stage_order == [s.label for s in scenario.stages]
    assert not validity_of(data).invalid
    noise = orjson.loads((ROOT / "examples" / "ci" / "baseline" / "noise.json").read_bytes())
    assert len(noise["runs"]) >= 3 and noise["stages"] == ["concurrency@8"]


def test_the_shell_script_gates_the_scenario_against_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "gate-out"
    proc = subprocess.run(
        ["sh", str(ROOT / "examples" / "ci" / "gate.sh")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LOADTEST": f"{sys.executable} -m loadtest", "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("performance gate: passed")
    assert "gate: PASS" in proc.stdout and "noise floor: measured from" in proc.stdout
    xmlschema.XMLSchema(str(SCHEMA)).validate((out / "gate.xml").read_text())
    assert orjson.loads((out / "gate.json").read_bytes())["verdict"] == "pass"
    assert (out / "gate.md").read_text().startswith("### ✅ loadtest gate: PASS")
    assert (out / "report.html").stat().st_size > 10_000
