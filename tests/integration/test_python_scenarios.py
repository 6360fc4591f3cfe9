"""Python scenarios end to end (``docs/scenarios-python.md``): the three shipped flows run by name against the
simulator and their records join their ``flows.jsonl`` lines exactly; a master with two workers merges the flows;
an open-loop arrival is one flow; a module's mistakes are one line (before the load for a syntax error or an
exception while it is imported; a warning while the run goes on for an exception in a task)."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from analysis.flow_data import join_check, read_flow_calls, read_flow_table
from loadtest.rundir.flows import FlowRecord, read_flows
from loadtest.runner.simproc import SimulatorProcess
from tests.helpers import only_run_dir, refused, run_cli

Steps = list[dict[str, Any]]


def run_flows(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    """``loadtest run ARGS --quiet`` from ``tmp_path`` (a directory that is not the repository); its run directory."""
    out = tmp_path / "runs"
    proc = run_cli("run", *args, "--quiet", "--out", str(out), env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(out)


def joined(run_dir: Path) -> list[tuple[FlowRecord, Steps]]:
    """Each flow line with its calls' first attempts in ``started_at`` order, after checking that the join is exact:
    flow ids unique, every record in a flow that has a line, the calls numbered ``0 .. calls-1`` in the order they
    started, in the flow's stage, and the flow's token counts the sums of its calls'."""
    flows = list(read_flows(run_dir))
    ids = [f.flow_id for f in flows]
    assert flows and len(set(ids)) == len(ids)
    steps: dict[str, Steps] = {i: [] for i in ids}
    for line in (run_dir / "records.jsonl").read_bytes().splitlines():
        record = orjson.loads(line)
        assert record["flow_id"] in steps, record  # no record without its flow's line
        if record["attempt"] == 0:
            steps[record["flow_id"]].append(record)
    out = []
    for flow in flows:
        calls = sorted(steps[flow.flow_id], key=lambda r: r["started_at"])
        assert [r["step_index"] for r in calls] == list(range(flow.calls)), flow
        assert {r["stage"] for r in calls} <= {flow.stage}
        if all(r["error_class"] is None for r in calls):
            assert flow.prompt_tokens == sum(r["prompt_tokens"] for r in calls)
            assert flow.output_tokens == sum(r["output_tokens"] for r in calls)
        out.append((flow, calls))
    table = read_flow_table(run_dir)  # and the analysis's own join check agrees
    assert join_check(table, read_flow_calls(run_dir, table)).is_exact
    return out


def names(calls: Steps) -> list[str]:
    return [r["request_class"] for r in calls]


def grows(calls: Steps) -> bool:
    """Each call's prompt holds the previous call's prompt and answer, and more."""
    return all(
        b["prompt_tokens"] > a["prompt_tokens"] + a["output_tokens"] for a, b in itertools.pairwise(calls)
    )


# -- the shipped flows ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_conversation_turns_resend_the_history(tmp_path: Path) -> None:
    run_dir = run_flows(
        tmp_path, "conversation", "-c", "3", "-d", "2s", env={"LOADTEST_TURN_THINK_S": "0.05-0.2"}
    )
    flows = joined(run_dir)
    assert all(f.outcome == "ok" and f.user == "Conversation" for f, _ in flows)
    assert all(2 <= f.calls <= 5 and names(calls) == ["turn"] * f.calls for f, calls in flows)
    assert all(grows(calls) for _, calls in flows)  # the answer and a new user turn, turn after turn
    assert len({f.calls for f, _ in flows}) > 1  # turns drawn per flow


@pytest.mark.slow
def test_conversation_from_the_shipped_jsonl(tmp_path: Path) -> None:
    """``LOADTEST_CONVERSATIONS`` by a name found next to the module: its conversations' turns are what is sent."""
    shipped = Path(__file__).resolve().parents[2] / "scenarios" / "flows" / "conversations.jsonl"
    turns = {len(orjson.loads(line)["turns"]) for line in shipped.read_bytes().splitlines()}
    run_dir = run_flows(
        tmp_path,
        "conversation",
        "-c",
        "2",
        "-d",
        "1s",
        env={"LOADTEST_CONVERSATIONS": "conversations.jsonl", "LOADTEST_TURN_THINK_S": "0"},
    )
    flows = joined(run_dir)
    assert all(f.outcome == "ok" and f.calls in turns and grows(calls) for f, calls in flows)
    sent = [orjson.loads(line) for line in (run_dir / "samples.jsonl").read_bytes().splitlines()]
    text = orjson.dumps(sent).decode()
    assert any(t in text for line in shipped.read_text().splitlines() for t in orjson.loads(line)["turns"])


@pytest.mark.slow
def test_rag_embeds_then_answers_one_flow_per_arrival(tmp_path: Path) -> None:
    """Open loop (``--rate``): each arrival is one flow, ``embed`` then ``answer`` with the retrieved passages."""
    run_dir = run_flows(tmp_path, "rag-flow", "-r", "4", "--arrival", "constant", "-d", "2s")
    flows = joined(run_dir)
    assert all(f.outcome == "ok" and names(calls) == ["embed", "answer"] for f, calls in flows)
    assert all(calls[1]["prompt_tokens"] > 4 * 60 for _, calls in flows)  # 4 passages of 60+ words
    ends = [orjson.loads(line) for line in (run_dir / "events.jsonl").read_bytes().splitlines()]
    (end,) = [e for e in ends if e["event"] == "stage_end"]
    assert end["arrivals"] == end["flows"] == len(flows) == 8
    assert all(f.scheduled_at == calls[0]["scheduled_at"] for f, calls in flows)  # the arrival's instant


@pytest.mark.slow
def test_agent_plans_rounds_then_answers(tmp_path: Path) -> None:
    flows = joined(run_flows(tmp_path, "agent", "-c", "4", "-d", "2s"))
    assert all(f.outcome == "ok" for f, _ in flows)
    assert all(names(calls) == ["plan"] * (f.calls - 1) + ["answer"] for f, calls in flows)
    assert len({f.calls for f, _ in flows}) > 1  # rounds drawn per flow
    assert all(grows(calls) for _, calls in flows)  # each plan and tool result stays in the context


@pytest.mark.slow
def test_a_master_and_two_workers_merge_the_flows(tmp_path: Path) -> None:
    flows = joined(run_flows(tmp_path, "rag-flow", "--processes", "2", "-c", "4", "-d", "2s"))
    assert len({f.worker for f, _ in flows}) == 2
    assert all(f.flow_id.startswith(f"{f.worker}/") for f, _ in flows)
    assert all(names(calls) == ["embed", "answer"] for _, calls in flows)


# -- a module's mistakes ------------------------------------------------------------------------------------------


def module(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("from loadtest.flows import FlowUser, constant, task\n\n" + textwrap.dedent(body))
    return path


def test_a_syntax_error_is_one_line_before_any_load(tmp_path: Path) -> None:
    path = module(
        tmp_path, "typo.py", "class U(FlowUser):\n    @task\n    def t(self) -> None\n        pass\n"
    )
    proc = run_cli("run", str(path), "-c", "1", "-d", "1s", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    refused(proc, 2, "typo.py:5: SyntaxError")
    assert not (tmp_path / "runs").exists()


def test_an_exception_while_imported_is_one_line_and_no_load(tmp_path: Path) -> None:
    path = module(tmp_path, "lookup.py", 'TABLE: dict[str, int] = {}\nLIMIT = TABLE["limit"]\n')
    out = tmp_path / "runs"
    proc = run_cli("run", str(path), "-c", "1", "-d", "1s", "--quiet", "--out", str(out), cwd=tmp_path)
    refused(proc, 2, "lookup.py:4: KeyError: 'limit'")
    assert (only_run_dir(out) / "records.jsonl").read_bytes() == b""


def test_a_missing_conversations_file_is_one_line(tmp_path: Path) -> None:
    args = ("-c", "1", "-d", "1s", "--quiet", "--out", str(tmp_path / "runs"))
    env = {"LOADTEST_CONVERSATIONS": "nowhere.jsonl"}
    proc = run_cli("run", "conversation", *args, env=env, cwd=tmp_path)
    refused(
        proc, 2, "conversation.py:", "FileNotFoundError: LOADTEST_CONVERSATIONS=nowhere.jsonl: no such file"
    )


@pytest.mark.slow
def test_a_task_that_raises_ends_its_flow_and_the_run_goes_on(tmp_path: Path) -> None:
    """Against a server of its own (``--endpoint``), which also checks that a module declaring no step is
    preflighted (with a chat probe) and not calibrated."""
    path = module(
        tmp_path,
        "flaky.py",
        """\
        class U(FlowUser):
            wait_time = constant(0.05)

            @task
            def t(self) -> None:
                self.chat("Hello", max_tokens=4, name="hello")
                if self.random.random() < 0.5:
                    raise LookupError("no such order")
                self.chat("Goodbye", max_tokens=4, name="bye")
        """,
    )
    out = tmp_path / "runs"
    with SimulatorProcess(["--seed", "1"]) as sim:
        args: Sequence[str] = ("--endpoint", sim.url + "/v1", "-c", "2", "-d", "1500ms", "--out", str(out))
        proc = run_cli("run", str(path), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "prompts:" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: scenario error")]
    assert warnings == [
        "warning: scenario error: flaky.py:10: LookupError: no such order (in U.t; each flow it ends is counted "
        "as a flow error)"
    ]
    flows = joined(only_run_dir(out))
    errors = [(f, calls) for f, calls in flows if f.outcome == "error"]
    fine = [(f, calls) for f, calls in flows if f.outcome == "ok"]
    assert errors and fine and len(errors) + len(fine) == len(flows)
    assert all(f.where == "flaky.py:10" and f.error_detail == "LookupError: no such order" for f, _ in errors)
    assert all(names(calls) == ["hello"] for _, calls in errors)
    assert all(names(calls) == ["hello", "bye"] for _, calls in fine)
    assert all(r["error_class"] is None for _, calls in flows for r in calls)
