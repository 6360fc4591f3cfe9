"""``loadtest analyze`` and ``loadtest report`` on a Python scenario's run, as a user runs them: the flow section
in the table, the JSON and the page; nothing of it for a run without flows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import (
    FLOW_ERROR,
    FLOW_SLO,
    flow_example,
    jsonl,
    records,
    run_cli,
    write_flow_run,
    write_run,
)


def test_analyze_prints_the_flows_after_the_capacity(tmp_path: Path) -> None:
    recs, flows = flow_example()
    run = write_flow_run(tmp_path / "run", recs, flows, FLOW_SLO)
    proc = run_cli("analyze", str(run))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("binding limit:") < out.index("\n\nflows (flow latency:") < out.index("validity:")
    assert (
        "    s1: flow_e2e_p95 5.70 s (limit ≤ 5.00 s): broken; 95 % CI from 3.00 s, no upper bound; over 3 flows\n"
        in out
    )
    assert f"    1× my_flow.py:42: {FLOW_ERROR}\n" in out
    assert "  join check: 5 of 6 flows joined their records exactly; 1 lack a step's record;" in out


def test_analyze_json_has_the_flows(tmp_path: Path) -> None:
    recs, flows = flow_example()
    run = write_flow_run(tmp_path / "run", recs, flows, FLOW_SLO)
    proc = run_cli("analyze", str(run), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    flows_json = json.loads(proc.stdout)["flows"]
    (stage,) = flows_json["stages"]
    assert stage["outcomes"] == {"ok": 3, "failed": 1, "error": 1, "cancelled": 1}
    assert (stage["good"], stage["attainment"], stage["meets"]) == (2, 0.4, False)
    assert flows_json["join"]["missing"] == 1 and flows_json["join"]["is_exact"] is False
    assert [s["step"] for s in flows_json["steps"]] == ["embed", "turn", "answer"]


def test_a_run_without_flows_says_nothing_of_flows(tmp_path: Path) -> None:
    run = write_run(tmp_path, jsonl(records()))
    table = run_cli("analyze", str(run))
    assert table.returncode == 0, table.stderr
    assert "flows" not in table.stdout
    as_json = run_cli("analyze", str(run), "--format", "json")
    assert "flows" not in json.loads(as_json.stdout)


def test_report_has_the_flow_section(tmp_path: Path) -> None:
    recs, flows = flow_example()
    run = write_flow_run(tmp_path / "run", recs, flows, FLOW_SLO)
    proc = run_cli("report", str(run))
    assert proc.returncode == 0, proc.stderr
    page = (run / "report.html").read_text()
    assert '<section id="r0-flows"><h3>Flows</h3>' in page and FLOW_ERROR not in page
