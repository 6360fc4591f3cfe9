"""Endpoint behaviours a real deployment shows, reproduced by the simulator: external models that reject
stream_options, quota 429s with a retry policy, Databricks' /invocations path with a PAT, and workers that join a
master from elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import load_run
from loadtest.sim import SimConfig, SimServer
from tests.helpers import free_port, only_run_dir, refused, run_cli, start_cli

pytestmark = pytest.mark.slow


def test_rejected_stream_options_are_dropped_and_the_request_sent_again(tmp_path: Path) -> None:
    with SimServer(SimConfig(reject_stream_options=True)) as sim:
        proc = run_cli(
            "run",
            "--endpoint",
            sim.url + "/v1",
            "-c",
            "3",
            "-d",
            "3s",
            "--max-tokens",
            "16",
            "--out",
            str(tmp_path),
        )
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path)
    df = load_run(run_dir).records
    rejected = df[df["status"] == 400]
    assert 1 <= len(rejected) <= 3  # only the requests in flight before the first 400 came back
    assert (rejected["attempt"] == 0).all()
    again = df[df["seq"].isin(rejected["seq"]) & (df["attempt"] == 1)]
    assert len(again) == len(rejected) and again["ok"].all()
    later = df[df["ok"]]
    assert (later["token_source"] == "client").all() and (later["output_tokens"] == 16).all()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "stream_options_rejected" for e in events) == 1


def test_retry_after_policy_retries_429s_after_waiting(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '[[classes]]\nprompt_tokens = 32\noutput_tokens = 8\nslo = {ttft_p95 = "1s"}\n'
        '[load]\nduration = "4s"\nconcurrency = [4]\n'
        '[retry]\npolicy = "retry-after"\nmax_retries = 2\nmax_wait = "1s"\n'
    )
    with SimServer(SimConfig(mode="ppt", qps=3)) as sim:
        proc = run_cli("run", str(scenario), "--endpoint", sim.url + "/v1", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    df = load_run(only_run_dir(tmp_path / "runs")).records
    limited = df[df["error_class"] == "rate_limited"]
    assert len(limited) > 0 and (limited["retry_after_s"] >= 1).all()
    assert df["attempt"].max() >= 1
    assert df["attempt"].max() <= 2  # max_retries
    # each retry started no sooner than min(Retry-After, max_wait) after the 429 before it
    for _, row in df[df["attempt"] >= 1].iterrows():
        before = df[(df["seq"] == row["seq"]) & (df["attempt"] == row["attempt"] - 1)].iloc[0]
        assert before["error_class"] == "rate_limited"
        assert row["started_at"] - before["ended_at"] >= min(before["retry_after_s"], 1.0) - 0.05
    assert "quota: 429s began" in proc.stdout and "queries_per_second" in proc.stdout


def test_databricks_invocations_path_with_a_pat(tmp_path: Path) -> None:
    # the simulator answers any endpoint name, as a workspace serves many: a scenario keeps its real one
    name = "databricks-meta-llama-3-3-70b-instruct"
    with SimServer(SimConfig(api_token="dapi-test-token-123456")) as sim:
        scenario = tmp_path / "s.toml"
        scenario.write_text(
            f'[endpoint]\nhost = "{sim.url}"\nendpoint = "{name}"\npath = "invocations"\n'
            'auth = "pat"\n[[classes]]\noutput_tokens = 8\nslo = {ttft_p95 = "1s"}\n'
            '[load]\nduration = "2s"\nconcurrency = [2]\n'
        )
        env = {"DATABRICKS_TOKEN": "dapi-test-token-123456", "DATABRICKS_HOST": "", "HOME": str(tmp_path)}
        proc = run_cli("run", str(scenario), "--out", str(tmp_path / "runs"), env=env)
        stats = sim.stats()
    assert proc.returncode == 0, proc.stderr
    data = load_run(only_run_dir(tmp_path / "runs"))
    df = data.records
    assert len(df) > 4 and df["ok"].all()
    calibration = data.manifest.spec.prompts
    assert calibration is not None
    probes = sum(f.sent for f in calibration.fits)  # the prompt calibration's requests, before the run
    assert probes == 3  # two probes and the check
    assert (
        stats["by_path"][f"/serving-endpoints/{name}/invocations"] == len(df) + 1 + probes
    )  # + the preflight
    assert b"dapi-test-token-123456" not in b"".join(
        p.read_bytes() for p in only_run_dir(tmp_path / "runs").iterdir()
    )


def test_a_worker_started_elsewhere_joins_the_master(tmp_path: Path) -> None:
    port = free_port()
    with SimServer(SimConfig()) as sim:
        master = start_cli(
            "run",
            "--endpoint",
            sim.url + "/v1",
            "--skip-preflight",
            "-r",
            "20",
            "-d",
            "3s",
            "--expect-workers",
            "1",
            "--master-port",
            str(port),
            "--out",
            str(tmp_path),
        )
        worker = start_cli(
            "worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
        )
        try:
            _out, err = master.communicate(timeout=90)
            worker.communicate(timeout=30)
        finally:
            for proc in (master, worker):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        served = sim.stats()["by_path"]["/v1/chat/completions"]
    assert master.returncode == 0, err
    assert worker.returncode == 0
    df = load_run(only_run_dir(tmp_path)).records
    assert len(df) == served > 30
    assert {w.split("-")[0] for w in df["worker"]} == {"worker0"}


def test_a_databricks_endpoint_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with SimServer(SimConfig(endpoint_name="served-one")) as sim:
        scenario = tmp_path / "s.toml"
        scenario.write_text(
            f'[endpoint]\nhost = "{sim.url}"\nendpoint = "typo-endpoint"\nauth = "none"\n'
            '[[classes]]\noutput_tokens = 8\n[load]\nduration = "1s"\nconcurrency = [1]\n'
        )
        proc = run_cli("run", str(scenario), "--out", str(tmp_path / "runs"))
        expected = (
            f"no serving endpoint named 'typo-endpoint' at {sim.url} (HTTP 404: RESOURCE_DOES_NOT_EXIST: Endpoint "
            "'typo-endpoint' does not exist (this workspace serves 'served-one')); check the name on the workspace's "
            "Serving page"
        )
    refused(proc, 3, expected)
