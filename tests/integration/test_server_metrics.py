"""Server metrics end to end: a short run against the simulator shows them in ``analyze --format json``; a metrics
endpoint that is down never stops the run and is said; the Databricks export is scraped with the endpoint's
credentials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from loadtest.client.protocol import EndpointSpec
from loadtest.rundir import read_server_metrics
from loadtest.runner.scrape import MetricsPlan, Scraper, resolve_metrics
from loadtest.sim import SimConfig, SimServer
from tests.helpers import free_port, only_run_dir, run_cli


@pytest.mark.slow
def test_a_simulated_run_shows_the_servers_metrics_per_stage(tmp_path: Path) -> None:
    proc = run_cli("run", "-c", "2,24", "-d", "2s", "--out", str(tmp_path), "--quiet", timeout=120)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path)
    analyzed = run_cli("analyze", str(run_dir), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    doc = json.loads(analyzed.stdout)
    server = doc["server_metrics"]
    assert (server["server"], server["explicit"], server["failed"], server["first_error"]) == (
        "vllm",
        False,
        0,
        None,
    )
    assert server["source"].endswith("/metrics") and server["scrapes"] >= 3
    assert server["scrape_cpu_mean_s"] < 0.05  # measured: ~2 ms a scrape
    stages = {s["stage"]: s for s in server["stages"]}
    assert list(stages) == ["concurrency@2", "concurrency@24"]
    # the simulator's batch is the closed loop's users: nothing waits, no KV pressure, no preemption
    assert stages["concurrency@2"]["running_max"] == 2
    assert stages["concurrency@24"]["running_max"] == 24
    assert stages["concurrency@24"]["waiting_max"] == 0
    assert 0 < stages["concurrency@24"]["kv_cache_usage_max"] < 0.1
    assert stages["concurrency@24"]["preemptions"] == 0
    # the server counts what the client counts, within a scrape's second at each end of a 2 s stage
    client = {s["stage"]: s for s in doc["summaries"]}["concurrency@24"]["output_tok_per_s"]
    assert stages["concurrency@24"]["generation_tokens_per_s"] == pytest.approx(client, rel=0.3)
    assert doc["capacity"]["server_evidence"] == []
    table = run_cli("analyze", str(run_dir))
    assert "server metrics (vllm, http://127.0.0.1:" in table.stdout
    assert "Server metrics</h3><p>vllm at http://127.0.0.1:" in (run_dir / "report.html").read_text()


@pytest.mark.slow
def test_a_metrics_endpoint_that_is_down_is_noted_and_the_run_completes(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    with SimServer(SimConfig(seed=3)) as sim:
        proc = run_cli(
            "run", "--endpoint", sim.url + "/v1", "-c", "2", "-d", "3s", "--server-metrics", dead,
            "--quiet", "--out", str(tmp_path), timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # --quiet drops the notes, never the warnings
    assert f"warning: server metrics: {dead} failed (ConnectError" in proc.stderr
    assert "embedded simulator" not in proc.stderr and "prompts:" not in proc.stderr
    run_dir = only_run_dir(tmp_path)
    analyzed = run_cli("analyze", str(run_dir), "--format", "json")
    server = json.loads(analyzed.stdout)["server_metrics"]
    assert server["explicit"] and server["server"] is None
    assert server["scrapes"] >= 2 and server["failed"] == server["scrapes"]
    assert server["first_error"].startswith("ConnectError")
    assert (
        f"note: {server['failed']} of {server['scrapes']} server-metrics scrapes of {dead} failed"
        in analyzed.stderr
    )
    assert "server-metrics scrapes" in (run_dir / "report.html").read_text()


def test_the_databricks_export_is_scraped_with_the_endpoints_credentials(tmp_path: Path) -> None:
    token = "dapi-sim-0123456789abcdef"
    with SimServer(SimConfig(seed=4, api_token=token)) as sim:
        endpoint = EndpointSpec(sim.url, "my-llama", api="databricks", auth="databricks")
        denied = resolve_metrics(
            None, endpoint
        )  # no credentials: the export answers 401, the default goes without
        assert denied is None
        lines: list[str] = []
        plan = resolve_metrics(
            None, endpoint, lambda: {"Authorization": f"Bearer {token}"}, echo=lines.append
        )
        assert plan is not None
        assert plan.url == f"{sim.url}/api/2.0/serving-endpoints/my-llama/metrics"
        assert lines == [f"server metrics: databricks at {plan.url}, scraped every 1s"]
        scraper = Scraper(MetricsPlan(plan.url, False, plan.headers, interval_s=0.05), tmp_path)
        scraper.start()
        time.sleep(0.3)
        scraper.stop()
    log = read_server_metrics(tmp_path)
    assert log is not None and log.scrapes and all(s.ok and s.kind == "databricks" for s in log.scrapes)
    values = log.scrapes[-1].values
    assert values is not None
    # the probes' answers (401 and 200) count in the last minute; replicas × max batch are provisioned
    assert values["requests_last_min"] >= 2 and values["errors_4xx_last_min"] == 1
    assert values["provisioned_concurrency"] == 256
    assert token not in (tmp_path / "server_metrics.jsonl").read_text()
