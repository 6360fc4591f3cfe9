"""scenarios/cold-start.toml against the simulator with second-long delays: the idle stage lets it scale to zero,
the burst's first requests get 503 with Retry-After until the cold start is over, and analyze measures it; with a
dead-endpoint bound shorter than the cold start the same run stops (why the scenario sets abort_after)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from analysis import load_run
from tests.helpers import ROOT, only_run_dir, run_cli

pytestmark = pytest.mark.slow

COLD_S = 2.0
USERS = 16
# first token after the cold start: the users come back after Retry-After (rounded up to whole seconds, never
# before the replica is up), then one prefill; a loaded 2-core machine adds scheduling delay
TOLERANCE_S = 1.0


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return orjson.dumps(value).decode()  # a JSON string is a TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def scenario(tmp_path: Path, cold_start_s: float) -> Path:
    """The shipped scenario with second-long delays, 503s during the cold start, a 6 s burst of short requests."""
    raw = tomllib.loads((ROOT / "scenarios" / "cold-start.toml").read_text())
    raw["simulator"].update(
        scale_down_after_s=1.0,
        cold_start_s=cold_start_s,
        cold_start_reply="503",
        scale_out_s=0.25,
        max_batch=4,
    )
    idle, burst = raw["load"]["stages"]
    raw["load"]["stages"] = [idle, {**burst, "concurrency": USERS, "duration": "6s"}]
    raw["classes"][0]["output_tokens"] = (
        32  # short requests: one-second bins, a plateau in the burst's 2nd half
    )
    lines = [f"{k} = {toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict | list)]
    lines.append("[simulator]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in raw["simulator"].items()))
    for cls in raw["classes"]:
        lines.append("[[classes]]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in cls.items()))
    lines.append("[load]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in raw["load"].items()))
    path = tmp_path / "cold-start.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_cold_start_is_measured_first_success_after_the_scale_up_errors_before_it(tmp_path: Path) -> None:
    path = scenario(tmp_path, COLD_S)
    proc = run_cli("run", str(path), "--out", str(tmp_path / "runs"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "idle stages last 2s against the simulator" in proc.stderr  # 35 min written, scale-down 1 s + 1 s
    assert "cold start: burst after 2 s idle — first success after" in proc.stdout
    run = only_run_dir(tmp_path / "runs")
    data = load_run(run)
    assert [s.label for s in data.manifest.spec.stages] == ["idle", "burst"]
    analyzed = run_cli("analyze", str(run), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    (cs,) = orjson.loads(analyzed.stdout)["cold_starts"]
    assert cs["stage"] == "burst" and cs["after"] == "idle"
    assert COLD_S <= cs["first_token_s"] <= COLD_S + TOLERANCE_S
    assert cs["first_success_s"] >= cs["first_token_s"]
    # every user's first request came while the endpoint was at zero: one 503 each, then Retry-After waited out
    assert cs["first_request"]["outcome"] == "HTTP 503"
    assert cs["errors_before_first_success"] == {"HTTP 503": USERS}
    assert cs["errors"] == USERS and cs["errors_settled"]
    assert cs["errors_settled_s"] <= cs["first_success_s"] + cs["bin_s"]
    assert cs["bin_s"] == 1.0 and cs["plateau"] > 0
    assert COLD_S < cs["time_to_90pct_s"] < cs["window_s"]
    assert 'id="r0-cold-start"' in (run / "report.html").read_text()
    validity = orjson.loads(analyzed.stdout)["validity"]
    steady = [i for i in validity["items"] if i["label"] == "steady state"]
    assert steady and steady[0]["doubtful"] and steady[0]["text"].startswith("burst follows an idle stage")


def test_a_dead_endpoint_bound_shorter_than_the_cold_start_stops_the_run(tmp_path: Path) -> None:
    """Every request answers 503 for the whole cold start (3 s: the users, waiting Retry-After at most 2 s, come
    back before it is over and get 503 again): with --abort-after under it the run stops (exit 3), which is why
    the scenario sets abort_after far above any cold start."""
    path = scenario(tmp_path, 3.0)
    proc = run_cli("run", str(path), "--abort-after", "1s", "--out", str(tmp_path / "runs"), timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "every one answered with a 5xx" in proc.stderr
    data = load_run(only_run_dir(tmp_path / "runs"))
    assert data.manifest.status == "failed"
    assert data.manifest.failure is not None and data.manifest.failure.kind == "server_error"
