"""``loadtest gate`` and ``loadtest run --gate`` against the simulator, as a CI job runs them: an A/A pair passes, a
server 20 % slower per token fails with 99 naming the metric, an SLO out of reach fails, a run that could not offer
its load is invalid (98), and mistakes are one line with exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
import xmlschema

from tests.helpers import only_run_dir, refused, run_cli, write_flow_stages

SCHEMA = Path(__file__).parents[1] / "unit" / "data" / "junit-10.xsd"
# 8 users of 16-token answers for 4 s: ~200 requests, enough to bound a p95 at √95 % in each run
SCENARIO = """\
name = "gate"
[[classes]]
name = "chat"
prompt_tokens = 64
output_tokens = 16
[classes.slo]
ttft_p95 = "800ms"
tpot_p50 = "40ms"
[load]
concurrency = [8]
duration = "4s"
"""


def simulated_run(root: Path, name: str, seed: int, slowdown: float | None = None) -> Path:
    scenario = root / f"{name}.toml"
    text = SCENARIO + (f"[simulator]\nslowdown = {slowdown}\n" if slowdown else "")
    scenario.write_text(text)
    proc = run_cli("run", str(scenario), "--seed", str(seed), "--out", str(root / name), "-q")
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(root / name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    return {
        "base": simulated_run(root, "base", seed=1),
        "again": simulated_run(root, "again", seed=2),
        "slow": simulated_run(root, "slow", seed=1, slowdown=1.2),
    }


def test_two_runs_with_different_seeds_pass_against_each_other(runs: dict[str, Path]) -> None:
    proc = run_cli("gate", str(runs["again"]), "--baseline", str(runs["base"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "gate: PASS — 5 check(s) passed" in proc.stdout
    )  # the scenario's 2 SLOs and the 3 default comparisons


def test_a_server_20_percent_slower_per_token_fails_with_99_naming_the_metric(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    junit, summary = tmp_path / "gate.xml", tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    proc = run_cli(
        "gate",
        str(runs["slow"]),
        "--baseline",
        str(runs["base"]),
        "--max-regression",
        "tpot_p50:+10%",
        "--junit",
        str(junit),
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    refused(proc, 99, "gate failed: tpot_p50:+10% [concurrency@8]")
    # the simulator's steps are exactly 1.2× longer; what the client adds to each gap is not (measured +18.6 to
    # +21.1 % on this machine)
    change = re.search(r"tpot_p50:\+10%\s+concurrency@8\s+\S+ ms\s+\S+ ms\s+\+([0-9.]+) %", proc.stdout)
    assert change is not None and 15.0 < float(change.group(1)) < 25.0, proc.stdout
    xml = junit.read_text()
    xmlschema.XMLSchema(str(SCHEMA)).validate(xml)
    assert 'failures="1"' in xml and 'name="tpot_p50:+10% [concurrency@8]"' in xml
    md = summary.read_text()
    assert md.startswith("earlier step\n### ❌ loadtest gate: FAIL")  # appended, not overwritten


def test_an_slo_out_of_reach_fails(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    proc = run_cli(
        "gate", str(runs["base"]), "--slo", "ttft_p50<1ms", "--slo", "error_rate<1%", "--json", str(out)
    )
    refused(proc, 99, "gate failed: ttft_p50<1ms [concurrency@8]")
    body = orjson.loads(out.read_bytes())
    assert body["verdict"] == "fail"
    assert [(c["text"], c["verdict"]) for c in body["checks"]] == [
        ("ttft_p50<1ms", "fail"),
        ("error_rate<1%", "pass"),
    ]


def test_a_run_that_could_not_offer_its_open_loop_rate_is_invalid(tmp_path: Path) -> None:
    # 200 requests/s into at most one in flight: almost every arrival waits for the one user
    proc = run_cli(
        "run",
        "-r",
        "200",
        "--max-concurrency",
        "1",
        "-d",
        "2s",
        "--max-tokens",
        "16",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    gated = run_cli("gate", str(only_run_dir(tmp_path)), "--slo", "tpot_p50<1s")
    refused(gated, 98, "the run is invalid, neither a pass nor a fail", "the planned load was not offered")
    assert "gate: INVALID" in gated.stdout


def test_run_gate_runs_and_gates_in_one_step(runs: dict[str, Path], tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(SCENARIO)
    proc = run_cli(
        "run", str(scenario), "--seed", "3", "--out", str(tmp_path / "out"), "-q", "--gate",
        "--slo", "ttft_p95<800ms", "--slo", "concurrency@8:error_rate<1%", "--baseline", str(runs["base"]),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the classes' SLOs (the scenario's tpot_p50, the flag's ttft_p95), the stage's error rate, 3 comparisons
    assert "report: " in proc.stdout and proc.stdout.rstrip().endswith("gate: PASS — 6 check(s) passed")
    assert "chat:tpot_p50<40ms" in proc.stdout and "chat:ttft_p95<800ms" in proc.stdout
    slow = run_cli(
        "run", str(scenario), "--out", str(tmp_path / "slow"), "-q", "--gate", "--slo", "tpot_p50<5ms",
    )  # fmt: skip
    refused(slow, 99, "gate failed: chat:tpot_p50<5ms [concurrency@8]")  # the flag became the class's SLO


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slo", "ttft_p95<800"], "give the limit a unit, e.g. ttft_p95<800ms"),
        (["--slo", "ttft_p95 800ms"], "--slo takes [SCOPE:]METRIC<LIMIT"),
        (["--slo", "chta:ttft_p95<1s"], "'chta' is neither a class (chat) nor a stage (concurrency@8)"),
        (["--max-regression", "tpot_p50:+10%"], "--max-regression needs --baseline RUN"),
        (
            ["--baseline", "BASE", "--max-regression", "tpot_p50:10%"],
            "--max-regression takes [SCOPE:]METRIC:±N%",
        ),
        (["--baseline", "BASE", "--max-regression", "tpot_p50:+ten%"], "the change is a signed percentage"),
        (["--baseline", "BASE", "--noise-floor", "lots"], "--noise-floor takes [METRIC:]N%"),
        (["--baseline", "nope"], "no run directory at nope"),
    ],
)
def test_gate_mistakes_are_one_line_and_exit_2(runs: dict[str, Path], args: list[str], message: str) -> None:
    args = [str(runs["base"]) if a == "BASE" else a for a in args]
    refused(run_cli("gate", str(runs["again"]), *args), 2, message)


def test_a_baseline_without_the_stage_is_a_usage_error(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("run", "-c", "2", "-d", "1s", "--max-tokens", "8", "--out", str(tmp_path), "-q")
    assert proc.returncode == 0, proc.stderr
    other = only_run_dir(tmp_path)
    refused(
        run_cli("gate", str(runs["base"]), "--baseline", str(other)),
        2,
        "stage 'concurrency@8' is not in the baseline",
        "its stages: concurrency@2",
    )


def test_noise_floors_measured_from_a_a_runs_are_used_with_their_baseline(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    floors = tmp_path / "noise.json"
    proc = run_cli("noise", str(runs["base"]), str(runs["again"]), "-o", str(floors))
    assert proc.returncode == 0, proc.stderr
    body = orjson.loads(floors.read_bytes())
    assert body["runs"] == [runs["base"].name, runs["again"].name] and body["stages"] == ["concurrency@8"]
    assert set(body["floors"]) >= {"ttft_p95", "tpot_p50", "output_tok_per_s"}
    gated = run_cli("gate", str(runs["again"]), "--baseline", str(runs["base"]), "--noise", str(floors))
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert f"noise floor: measured from 2 A/A runs ({floors})" in gated.stdout
    refused(
        run_cli(
            "gate",
            str(runs["again"]),
            "--baseline",
            str(runs["base"]),
            "--noise",
            str(runs["base"] / "manifest.json"),
        ),
        2,
        "is not a noise-floor file",
    )


def test_a_saturated_engine_is_invalid_not_a_pass(tmp_path: Path) -> None:
    # the test hook burns the engine's CPU in 50 ms slices: every timing it takes is late by up to that much
    proc = run_cli(
        "run", "-c", "4", "-d", "3s", "--max-tokens", "16", "--out", str(tmp_path), "-q",
        env={"LOADTEST_TEST_ENGINE_BURN_MS": "50"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    gated = run_cli("gate", str(only_run_dir(tmp_path)), "--slo", "tpot_p50<1s")
    refused(gated, 98, "the generator did not keep up", "engine saturated")
    assert "gate: INVALID" in gated.stdout


def test_run_gate_refuses_a_baseline_without_its_stages_before_the_load(tmp_path: Path) -> None:
    baseline = Path(__file__).parents[2] / "examples" / "ci" / "baseline"
    proc = run_cli(
        "run", "-c", "2", "-d", "1s", "--out", str(tmp_path / "out"), "--gate", "--baseline", str(baseline)
    )
    refused(proc, 2, "it has no stage 'concurrency@2' (its stages: concurrency@8)")
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_run_is_not_its_own_baseline(runs: dict[str, Path]) -> None:
    refused(run_cli("gate", str(runs["base"]), "--baseline", str(runs["base"])), 2, "is the run being gated")


def test_the_gate_judges_a_python_scenarios_flows(runs: dict[str, Path], tmp_path: Path) -> None:
    # a hand-built flow run: 100 ok flows of 0.1 … 10.0 s (p95 9.505 s, its interval [9.0 s, 10.0 s]) in s1
    run = write_flow_stages(tmp_path / "flows", {"s1": 1.0}, {"flow_e2e_p95": 10.0})
    junit = tmp_path / "gate.xml"
    proc = run_cli("gate", str(run), "--slo", "flow_e2e_p95<9s", "--junit", str(junit))
    refused(proc, 99, "gate failed: flow_e2e_p95<9s [s1]")
    assert re.search(
        r"flow_e2e_p95<9s\s+s1\s+9,505 ms\s+\[9,000 ms, 10,000 ms\]\s+≤ 9,000 ms\s+FAIL", proc.stdout
    )
    xmlschema.XMLSchema(str(SCHEMA)).validate(junit.read_text())
    assert 'name="flow_e2e_p95&lt;9s [s1]"' in junit.read_text()
    own = run_cli("gate", str(run))  # no --slo: the scenario's flow SLO, 10 s
    assert own.returncode == 0 and "flow_e2e_p95<10000ms" in own.stdout, own.stdout + own.stderr
    refused(
        run_cli("gate", str(runs["again"]), "--slo", "flow_e2e_p95<10s"),
        2,
        "--slo 'flow_e2e_p95<10s': the run has no flows",
    )
