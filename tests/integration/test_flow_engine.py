"""The engine's side of Python scenarios against the simulator: a failed call ends its flow ``failed`` (or is
caught), a retried call keeps its step's place, a token-rate stage counts flows' tokens, a scenario's own mistakes
(a call in ``on_start``, one step name for two kinds) are one line naming the file and line, and a flow — or a
request — still running when its stage's drain times out is cut, not carried into the next stage; Ctrl-C keeps
every call; a sweep paces flows; and a conversation's later turns come sooner by the modelled prefill of the
prefix they share with the turns before."""

from __future__ import annotations

import itertools
import signal
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import orjson
import pytest

from loadtest.client.records import RequestRecord, read_records
from loadtest.model.roofline import prefill_s
from loadtest.rundir import FlowRecord, read_events, read_flows
from loadtest.sim import SimConfig, SimServer
from loadtest.sim.prefix import BLOCK_SIZE
from tests.helpers import only_run_dir, run_cli, start_cli

pytestmark = pytest.mark.slow

FLAKY = """
from loadtest.flows import CallFailed, FlowUser, task


class Flaky(FlowUser):
    @task
    def flow(self) -> None:
        try:
            self.chat("first " * 30, max_tokens=4, name="tolerant")
        except CallFailed:
            pass  # this step may fail: the flow goes on
        self.chat("second " * 30, max_tokens=4, name="strict")
"""


def scenario(tmp_path: Path, module: str, toml: str) -> Path:
    (tmp_path / "flow.py").write_text(module)
    path = tmp_path / "s.toml"
    path.write_text('[python]\nmodule = "flow.py"\n' + toml)
    return path


def run(path: Path, out: Path, *args: str, code: int = 0) -> tuple[Path, str]:
    proc = run_cli("run", str(path), "--out", str(out), "--quiet", *args, timeout=120)
    assert proc.returncode == code, proc.stderr[-2000:]
    return only_run_dir(out), proc.stderr


def joined(run_dir: Path) -> tuple[list[FlowRecord], dict[str, list[RequestRecord]]]:
    """The flows and each one's records in start order; every record belongs to a flow line."""
    flows = list(read_flows(run_dir))
    calls: dict[str, list[RequestRecord]] = defaultdict(list)
    for record in read_records(run_dir):
        assert record.flow_id is not None
        calls[record.flow_id].append(record)
    assert set(calls) <= {f.flow_id for f in flows}
    for records in calls.values():
        records.sort(key=lambda r: r.started_at)
    return flows, calls


def test_a_failed_call_ends_its_flow_unless_the_task_catches_it(tmp_path: Path) -> None:
    path = scenario(tmp_path, FLAKY, "[simulator]\nfaults = {http_500 = 0.3}\n[load]\nconcurrency = [2]\n")
    run_dir, _ = run(path, tmp_path / "out", "--duration", "3s")
    flows, calls = joined(run_dir)
    outcomes = Counter(f.outcome for f in flows)
    assert outcomes["failed"] > 0 and outcomes["ok"] > 0 and set(outcomes) <= {"ok", "failed", "cancelled"}
    for f in flows:
        records = calls[f.flow_id]
        assert [r.step_index for r in records] == list(range(f.calls))
        assert [r.request_class for r in records] == ["tolerant", "strict"][: f.calls]
        if f.outcome == "failed":  # only the strict step ends a flow; the tolerant one's failure was caught
            assert records[-1].request_class == "strict" and records[-1].error_class == "server_error"
            assert f.error_detail is not None and f.error_detail.startswith(
                "step 'strict' failed: server_error"
            )
        elif f.outcome == "ok":
            assert records[-1].ok
            ok = [r for r in records if r.ok]
            assert f.prompt_tokens == sum(r.prompt_tokens or 0 for r in ok)
            assert f.output_tokens == sum(r.output_tokens or 0 for r in ok) == 4 * len(ok)
    assert any(
        not calls[f.flow_id][0].ok and f.outcome == "ok" for f in flows
    )  # caught, and the flow went on


def test_a_retried_call_keeps_its_steps_place(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        FLAKY,
        '[simulator]\nfaults = {http_429 = 0.3}\n[retry]\npolicy = "retry-after"\nmax_wait = "50ms"\n'
        "max_retries = 5\n[load]\nconcurrency = [2]\n",
    )
    run_dir, _ = run(path, tmp_path / "out", "--duration", "3s")
    flows, calls = joined(run_dir)
    retried = 0
    for f in flows:
        records = calls[f.flow_id]
        firsts = [r.step_index for r in records if r.attempt == 0]
        assert firsts == list(range(f.calls))
        for r in records:
            if r.attempt > 0:  # a retry: the same step, the attempt before it a 429
                retried += 1
                before = [p for p in records if p.step_index == r.step_index and p.attempt == r.attempt - 1]
                assert len(before) == 1 and before[0].error_class == "rate_limited"
    assert retried > 0


def test_a_token_rate_stage_counts_the_tokens_of_flows(tmp_path: Path) -> None:
    module = (
        "from loadtest.flows import FlowUser, task\n\n\nclass Two(FlowUser):\n    @task\n    def flow(self):\n"
        '        self.chat("a " * 40, max_tokens=10, name="one")\n'
        '        self.chat("b " * 80, max_tokens=30, name="two")\n'
    )
    path = scenario(tmp_path, module, "flow_tokens = [500, 100]\n[load]\ntokens_per_min = [30000]\n")
    run_dir, _ = run(path, tmp_path / "out", "--duration", "4s")
    flows, _ = joined(run_dir)
    ok = [f for f in flows if f.outcome == "ok"]
    assert len(ok) >= 2 and all(f.output_tokens == 40 for f in ok)
    (end,) = [e for e in read_events(run_dir) if e["event"] == "stage_end"]
    # the controller's expectation per arrival: the prior (2 flows of 500 + 100 tokens) and every ok flow
    n = len(ok)
    e_in = (2 * 500 + sum(f.prompt_tokens for f in ok)) / (2 + n)
    e_out = (2 * 100 + sum(f.output_tokens for f in ok)) / (2 + n)
    assert end["expected_input"] == pytest.approx(e_in) and end["expected_output"] == pytest.approx(e_out)
    assert end["final_rate"] == pytest.approx(30000 / 60 / (e_in + e_out))
    assert end["flows"] == len(flows)


def test_a_step_of_two_kinds_or_a_body_that_cannot_be_sent_is_the_scenarios_error(tmp_path: Path) -> None:
    module = (
        "from loadtest.flows import FlowUser, task\n\n\n"
        "class Mixed(FlowUser):\n"
        "    @task\n    def flow(self):\n"
        '        self.chat("hello", max_tokens=4, name="same")\n'
        '        self.embed("hello", name="same")\n\n\n'
        "class Unsendable(FlowUser):\n"
        "    @task\n    def flow(self):\n"
        '        self.chat("hello", max_tokens=4, name="odd", seed={1, 2})\n'
    )
    path = scenario(tmp_path, module, "[load]\nconcurrency = [4]\n")
    run_dir, stderr = run(path, tmp_path / "out", "--duration", "2s")
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: scenario error")]
    assert any("flow.py:8: ValueError: step 'same' is already a chat step" in w for w in warnings), stderr
    assert any("flow.py:14: TypeError: " in w and "(in Unsendable.flow;" in w for w in warnings), stderr
    assert "Traceback" not in stderr and "Traceback" not in (run_dir / "engine.log").read_text()
    flows, calls = joined(run_dir)
    mixed = [f for f in flows if f.user == "Mixed"]
    assert mixed and all(f.outcome == "error" and f.where == "flow.py:8" and f.calls == 1 for f in mixed)
    assert all(calls[f.flow_id][0].request_class == "same" for f in mixed)
    # a body that cannot be built is no step: no record, and the flow's calls say so (its join stays exact)
    odd = [f for f in flows if f.user == "Unsendable"]
    assert odd and all(f.outcome == "error" and f.calls == 0 and f.flow_id not in calls for f in odd)
    events = [orjson.dumps(e) for e in read_events(run_dir) if e["event"] == "scenario_error"]
    assert events and all(b"flow.py:" in e for e in events)


def test_a_user_that_cannot_start_stops_the_run_with_one_line(tmp_path: Path) -> None:
    module = (
        "from loadtest.flows import FlowUser, task\n\n\n"
        "class Early(FlowUser):\n"
        "    def on_start(self):\n"
        '        self.chat("too early", max_tokens=4)\n'
        "\n    @task\n    def flow(self):\n        pass\n"
    )
    path = scenario(tmp_path, module, "[load]\nconcurrency = [2]\n")
    run_dir, stderr = run(path, tmp_path / "out", "--duration", "5s", code=2)
    (error,) = [line for line in stderr.splitlines() if line.startswith("loadtest: error:")]
    assert "flow.py:6: RuntimeError: self.chat() outside a task" in error and "(in Early.on_start)" in error
    assert "a user could not start" in error
    assert "Traceback" not in stderr and "Traceback" not in (run_dir / "engine.log").read_text()
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    assert manifest["status"] == "failed" and manifest["failure"]["kind"] == "scenario"
    assert not list(read_flows(run_dir))


def test_a_flow_outliving_its_stages_drain_is_cut_and_the_next_stage_starts_clean(tmp_path: Path) -> None:
    module = (
        "import time\n\nfrom loadtest.flows import FlowUser, task\n\n\nclass Long(FlowUser):\n    @task\n"
        "    def flow(self):\n"
        "        for _ in range(40):\n"
        '            self.chat("x " * 20, max_tokens=4, name="step")\n'
        "            time.sleep(0.1)\n"
    )
    path = scenario(
        tmp_path, module, '[load]\nconcurrency = [2, 1]\nduration = "1s"\ndrain_timeout = "500ms"\n'
    )
    run_dir, _ = run(path, tmp_path / "out")
    flows, calls = joined(run_dir)
    ends = {e["stage"]: e for e in read_events(run_dir) if e["event"] == "stage_end"}
    windows = {e["stage"]: e["t"] for e in read_events(run_dir) if e["event"] == "stage_start"}
    first = [f for f in flows if f.stage == "concurrency@2"]
    # a flow lasts ≥ 4 s: both of the first stage's flows were cut when its 0.5 s drain ran out
    assert len(first) == 2 and all(f.outcome == "cancelled" for f in first)
    assert all(f.error_detail is not None and "drain timed out" in f.error_detail for f in first)
    assert ends["concurrency@2"]["cut"] == 2 and ends["concurrency@2"]["drained"]
    for (
        f
    ) in first:  # none of their calls started after the next stage did; only a call in flight is cancelled
        assert max(r.started_at for r in calls[f.flow_id]) < windows["concurrency@1"]
        assert all(r.ok for r in calls[f.flow_id][:-1])
        assert [r.step_index for r in calls[f.flow_id]] == list(range(f.calls))


def test_a_request_outliving_its_stages_drain_is_cancelled_too(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        "[simulator]\nfaults = {stall = 1.0, stall_seconds = 20}\n[[classes]]\nprompt_tokens = 20\noutput_tokens = 8\n"
        '[load]\nconcurrency = [2, 1]\nduration = "1s"\ndrain_timeout = "500ms"\n'
    )
    run_dir, _ = run(path, tmp_path / "out", code=3)  # no request succeeded: every one stalled
    ends = {e["stage"]: e for e in read_events(run_dir) if e["event"] == "stage_end"}
    starts = {e["stage"]: e["t"] for e in read_events(run_dir) if e["event"] == "stage_start"}
    first = [r for r in read_records(run_dir) if r.stage == "concurrency@2"]
    # every request stalls 20 s: the first stage's two were cut when its 0.5 s drain ran out, not carried on
    assert [r.error_class for r in first] == ["cancelled", "cancelled"]
    assert all(r.ended_at < starts["concurrency@1"] for r in first)
    assert ends["concurrency@2"]["cut"] == 2 and ends["concurrency@2"]["drained"]


def test_ctrl_c_keeps_every_call_and_writes_the_flows_in_flight_as_cancelled(tmp_path: Path) -> None:
    module = (
        "import time\n\nfrom loadtest.flows import FlowUser, task\n\n\nclass Long(FlowUser):\n    @task\n"
        "    def flow(self):\n"
        "        for _ in range(30):\n"
        '            self.chat("x " * 20, max_tokens=8, name="step")\n'
        "            time.sleep(0.05)\n"
    )
    (tmp_path / "flow.py").write_text(module)
    with SimServer(SimConfig(architecture="llama-3.1-8b", gpu="h100", seed=3)) as sim:
        proc = start_cli(
            "run", str(tmp_path / "flow.py"), "--endpoint", sim.url + "/v1", "--skip-preflight",
            "-c", "3", "--duration", "60s", "--out", str(tmp_path / "out"),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and sim.stats()["requests_completed"] < 20:
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        sent = sim.stats()["by_path"]["/v1/chat/completions"]
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_dir = only_run_dir(tmp_path / "out")
    flows, calls = joined(run_dir)
    assert sum(len(c) for c in calls.values()) == sent  # every call the server saw is a record
    running = [f for f in flows if f.outcome == "cancelled"]
    assert len(running) == 3 and all(f.calls == len(calls[f.flow_id]) for f in running)
    assert all(f.outcome in ("ok", "cancelled") for f in flows)


def test_a_sweep_of_a_python_scenario_paces_flows(tmp_path: Path) -> None:
    module = (
        "from loadtest.flows import FlowUser, task\n\n\nclass Three(FlowUser):\n    @task\n    def flow(self):\n"
        "        for _ in range(3):\n"
        '            self.chat("x " * 20, max_tokens=8, name="step")\n'
    )
    path = scenario(tmp_path, module, "")
    run_dir, _ = run(path, tmp_path / "out", "--sweep", "2", "--duration", "2s", "--max-concurrency", "4")
    events = read_events(run_dir)
    (plan,) = [e for e in events if e["event"] == "sweep_plan"]
    ends = {e["stage"]: e for e in events if e["event"] == "stage_end"}
    starts = {e["stage"]: e for e in events if e["event"] == "stage_start"}
    flows, _ = joined(run_dir)
    base = [f for f in flows if f.stage == "concurrency@1" and f.outcome == "ok"]
    # the baseline's completed rate is its flows over its 2 s window, not its requests (3 a flow)
    assert plan["baseline_rps"] == pytest.approx(len(base) / 2.0)
    assert ends["concurrency@1"]["records"] >= 3 * len(base)
    rates = [s["target"]["rate"] for s in starts.values() if s["target"]["kind"] == "rate"]
    assert rates and all(plan["baseline_rps"] < r < plan["saturation_rps"] for r in rates)


CONVERSATION = """
from loadtest.flows import FlowUser, task


class Talk(FlowUser):
    @task
    def flow(self) -> None:
        first = f"f{self.random.randrange(10**9)} " + " ".join(f"w{i}" for i in range(599))
        messages = [{"role": "user", "content": first}]
        for turn in range(3):
            reply = self.chat(messages, max_tokens=40, name="turn")
            messages += [reply.message(), {"role": "user", "content": f"and then {turn}?"}]
"""


def test_a_conversations_later_turns_hit_the_prefix_cache_and_come_sooner_by_the_modelled_prefill(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(CONVERSATION)
    config = SimConfig(architecture="llama-3.1-8b", gpu="h100", seed=4)
    dep = config.deployment()
    with SimServer(config) as sim:
        proc = run_cli(
            "run", str(tmp_path / "flow.py"), "--endpoint", sim.url + "/v1", "--skip-preflight", "--quiet",
            "-c", "1", "--duration", "3s", "--out", str(tmp_path / "out"), timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        with httpx.Client(base_url=sim.url, timeout=30) as client:
            rows = {row[0]: row for row in client.get("/sim/timings").json()["first_tokens"]["rows"]}
    flows, calls = joined(only_run_dir(tmp_path / "out"))
    done = [calls[f.flow_id] for f in flows if f.outcome == "ok"]
    assert len(done) >= 3
    measured, modelled = [], []
    for turns in done:
        assert turns[0].prompt_tokens == 600 and turns[0].cached_tokens == 0
        for before, turn in itertools.pairwise(turns):
            assert turn.prompt_tokens is not None and before.prompt_tokens is not None
            # every full block of the previous turn's prompt and answer (the simulator has no template tokens)
            cached = (before.prompt_tokens + 40) // BLOCK_SIZE * BLOCK_SIZE
            assert turn.cached_tokens == cached
            row = rows[turn.server_request_id]
            # one user, one replica: the model's TTFT is one step of the uncached tokens
            assert 0 <= (row[2] - row[1]) - (dep.c0_s + prefill_s(dep, turn.prompt_tokens, cached)) < 1e-3
            assert turn.first_token_at is not None
            measured.append(turn.first_token_at - turn.started_at)
            modelled.append(dep.c0_s + prefill_s(dep, turn.prompt_tokens, cached))
            assert prefill_s(dep, turn.prompt_tokens) - prefill_s(dep, turn.prompt_tokens, cached) > 0.01
    # measured through the flow, within the simulator's HTTP TTFT tolerance (docs/simulator.md: ±10 % + 3 ms)
    expected = statistics.median(modelled)
    assert statistics.median(measured) == pytest.approx(expected, abs=0.10 * expected + 3e-3)
