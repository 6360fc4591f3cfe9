"""Samples of requests and responses from a real run against the simulator, in one process and with a master and
two workers: a few per class and outcome, each pointing at its record, with the response's text and no credential."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.client.records import read_records
from loadtest.client.sse import count_text_tokens
from loadtest.rundir import read_samples
from loadtest.rundir.samples import KEEP_FAILED, KEEP_OK
from loadtest.sim import SimConfig, SimServer
from loadtest.sim.faults import FaultConfig
from tests.helpers import only_run_dir, run_cli

pytestmark = pytest.mark.slow

SECRET = "sk-samples-0123456789-SECRET"
SCENARIO = """
name = "two-classes"
seed = 5

[[classes]]
name = "chat"
weight = 3
prompt_tokens = 40
output_tokens = 12

[[classes]]
name = "embed"
kind = "embeddings"
weight = 1
prompt_tokens = 30
"""


@pytest.fixture
def sim() -> Iterator[SimServer]:
    faults = FaultConfig(http_500=0.1, stream_cut=0.1)
    config = SimConfig(architecture="llama-3.1-8b", gpu="h100", seed=3, api_token=SECRET, faults=faults)
    with SimServer(config) as server:
        yield server


@pytest.mark.parametrize("processes", [1, 2])
def test_samples_per_class_from_a_run(sim: SimServer, tmp_path: Path, processes: int) -> None:
    scenario = tmp_path / "two.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "runs"
    proc = run_cli(
        "run",
        str(scenario),
        "--endpoint",
        sim.url + "/v1",
        "--model",
        "m",
        "--api-key-env",
        "LT_SAMPLES_KEY",
        "--skip-preflight",
        "-c",
        "4",
        "-d",
        "3s",
        "--processes",
        str(processes),
        "--out",
        str(out),
        env={"LT_SAMPLES_KEY": SECRET},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(out)
    samples = read_samples(run_dir)
    records = {(r.worker, r.seq, r.attempt): r for r in read_records(run_dir)}
    assert len({r.worker for r in records.values()}) == processes
    kinds = Counter((s.request_class, s.error_class) for s in samples)
    assert kinds[("chat", None)] == kinds[("embed", None)] == KEEP_OK  # the whole run's, over every process
    assert kinds[("chat", "server_error")] == kinds[("chat", "stream_cut")] == KEEP_FAILED
    assert all(n <= KEEP_FAILED for n in kinds.values())
    for sample in samples:
        record = records[(sample.worker, sample.seq, sample.attempt)]  # written after its record
        assert (sample.stage, sample.request_class, sample.status) == (
            record.stage,
            record.request_class,
            record.status,
        )
        assert (sample.error_class, sample.output_tokens) == (record.error_class, record.output_tokens)
        assert sample.request.model == "m"
        if sample.ok:
            assert sample.captured and sample.response is not None and not sample.response.truncated
            assert sample.ttft_s is not None or sample.request.kind == "embeddings"
        if sample.ok and sample.request_class == "chat":
            assert sample.request.messages[0].content.chars > 0 and sample.request.max_tokens == 12
            assert sample.response is not None and count_text_tokens(sample.response.text) == 12
        elif sample.ok:
            assert sample.request.prompt is not None and sample.response is not None
            assert "embedding ×" in sample.response.text and "dimensions" in sample.response.text
        elif sample.error_class == "server_error":
            assert sample.error_body is not None and "error" in sample.error_body.text
    for path in run_dir.iterdir():
        assert SECRET not in path.read_bytes().decode("utf-8", "replace"), path.name
