"""The simulator's endpoint kinds and failure modes over real HTTP: pay-per-token quotas (429s), the PT band and
optimization info, OAuth tokens, and injected faults as the load generator classifies them."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loadtest.client.auth import AuthOptions, resolve_auth
from loadtest.client.clock import EpochClock, FakeClock
from loadtest.client.execute import RecordContext, execute_request
from loadtest.client.httpx_transport import HttpxTransport
from loadtest.client.protocol import EndpointSpec, RequestClass, build_request
from loadtest.client.records import RequestRecord
from loadtest.errors import ConfigError
from loadtest.model.predict import reference_chunk_size
from loadtest.model.roofline import Deployment
from loadtest.runner.simproc import ManagedProcess, SimulatorProcess
from loadtest.sim.config import SimConfig
from loadtest.sim.documents import model_type
from loadtest.sim.faults import FaultConfig
from loadtest.sim.server import SimServer
from loadtest.spec.simulator import SimSettings
from tests.helpers import sdk_time, wait_for

CTX = RecordContext(run_id="r", stage="s", endpoint="sim", worker="w")
TEN = "one two three four five six seven eight nine ten"  # 10 prompt tokens
SECRET = "oauth-secret-VALUE-123"


def chat(max_tokens: int = 4, model: str = "sim-llama", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": TEN}], "max_tokens": max_tokens, **extra}


def execute(
    url: str,
    *,
    api: str = "openai",
    path_style: str = "openai",
    output: int = 8,
    stream: bool = True,
    read_timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
) -> RequestRecord:
    """One request through the load generator's own executor and httpx transport."""
    endpoint = EndpointSpec(
        base_url=url if api == "databricks" else url + "/v1",
        model="sim-llama",
        api=api,  # type: ignore[arg-type]
        path_style=path_style,  # type: ignore[arg-type]
    )
    request = build_request(endpoint, RequestClass(output_tokens=output, stream=stream), TEN)
    timeout = httpx.Timeout(connect=5.0, read=read_timeout_s, write=5.0, pool=5.0)
    clock = EpochClock()
    with httpx.Client(timeout=timeout) as client:
        return execute_request(
            HttpxTransport(client),
            request,
            headers or {},
            clock,
            CTX,
            seq=0,
            scheduled_at=clock(),
            emit=lambda _record: None,
        )


def idle(sim: SimServer) -> bool:
    s = sim.stats()
    return bool(s["running"] == s["waiting"] == s["kv_used_tokens"] == 0)


@contextmanager
def served(config: SimConfig, clock: FakeClock | None = None) -> Iterator[tuple[SimServer, httpx.Client]]:
    with SimServer(config, clock=clock) as sim, httpx.Client(base_url=sim.url, timeout=10) as client:
        yield sim, client


# -- pay-per-token ---------------------------------------------------------------------------------------------


def test_ppt_answers_429_with_retry_after_on_both_path_styles() -> None:
    clock = FakeClock(start=0.0)
    with served(SimConfig(mode="ppt", itpm=30, qps=100), clock) as (sim, c):
        for _ in range(3):
            assert c.post("/v1/chat/completions", json=chat()).status_code == 200
        refused = c.post("/v1/chat/completions", json=chat())
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
        assert refused.json() == {
            "error": {
                "message": "Rate limit exceeded: ITPM limit of 30 tokens reached",
                "type": "rate_limit_exceeded",
                "code": 429,
                "limit_type": "input_tokens_per_minute",
                "limit": 30,
                "current": 40,
                "retry_after": 60,
            }
        }
        clock.now = 45.5
        for path in ("/serving-endpoints/chat/completions", "/serving-endpoints/sim-llama/invocations"):
            refused = c.post(path, json=chat())
            assert refused.status_code == 429 and refused.headers["retry-after"] == "15"
            body = refused.json()
            assert set(body) == {"error_code", "message"} and body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
            assert body["message"].startswith("Exceeded workspace ITPM rate limit for sim-llama")
        assert c.post("/v1/embeddings", json={"input": TEN}).status_code == 429  # inputs count against ITPM
        record = execute(sim.url, api="databricks", path_style="invocations")
        assert (record.status, record.error_class, record.retry_after_s) == (429, "rate_limited", 15.0)
        assert record.error_detail is not None and "REQUEST_LIMIT_EXCEEDED" in record.error_detail
        record = execute(sim.url)
        assert (record.error_class, record.retry_after_s) == ("rate_limited", 15.0)
        assert record.error_detail is not None and "input_tokens_per_minute" in record.error_detail
        stats = sim.stats()
        assert stats["rate_limited"] == {"input_tokens_per_minute": 6}
        assert stats["by_status"]["429"] == 6 and stats["requests_completed"] == 3
        assert stats["quota_usage"]["input_tokens_per_minute"] == 30  # refusals consumed nothing
        clock.now = 60.0
        assert c.post("/serving-endpoints/sim-llama/invocations", json=chat()).status_code == 200


def test_ppt_otpm_reservation_is_credited_back_when_a_stream_ends_early() -> None:
    clock = FakeClock(start=0.0)
    config = SimConfig(mode="ppt", otpm=100, faults=FaultConfig(stream_cut=1.0))
    with served(config, clock) as (sim, _):
        first = execute(sim.url, output=80)  # reserves 80, cut after 40: 40 come back
        assert (first.error_class, first.client_output_tokens) == ("stream_cut", 40)
        assert sim.stats()["quota_usage"]["output_tokens_per_minute"] == 40
        second = execute(sim.url, output=60)  # 40 + 60 fits only because of the credit
        assert second.error_class == "stream_cut"
        assert sim.stats()["quota_usage"]["output_tokens_per_minute"] == 70
        third = execute(sim.url, output=40)
        assert (third.error_class, third.retry_after_s) == ("rate_limited", 60.0)
        stats = sim.stats()
        assert stats["rate_limited"] == {"output_tokens_per_minute": 1}
        assert stats["faults"] == {"stream_cut": 2}
        assert wait_for(lambda: idle(sim))


# -- provisioned throughput ------------------------------------------------------------------------------------


def served_entity(c: httpx.Client) -> dict[str, Any]:
    endpoint = c.get("/api/2.0/serving-endpoints/sim-llama").json()
    entity: dict[str, Any] = endpoint["config"]["served_entities"][0]
    return entity


def test_a_band_of_chunks_is_that_many_replicas() -> None:
    with served(SimConfig(chunks=2)) as (sim, c):
        entity = served_entity(c)
        chunk = entity["throughput_chunk_size"]
        # one replica's saturated tokens/s at the reference mix, as the model computes it (24,600 for 8B on H100)
        expected = reference_chunk_size(Deployment.of("llama-3.1-8b", "h100"))
        assert chunk == sim.stats()["throughput_chunk_size"] == expected
        assert entity["min_provisioned_throughput"] == entity["max_provisioned_throughput"] == 2 * chunk
        assert sim.stats()["replicas"] == 2
        opt_info = "/api/2.0/serving-endpoints/get-model-optimization-info/"
        info = c.get(opt_info + "system.ai.meta_llama_v3_1_8b_instruct/1")  # the served entity, its version
        assert info.json() == {"optimizable": True, "model_type": "llama", "throughput_chunk_size": chunk}
        assert sim.stats()["by_path"][opt_info + "{model}/{version}"] == 1
        bad = c.get(opt_info + "only-a-name")
        assert bad.status_code == 404 and bad.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        # the workspace has one registered model, at versions 1 to entity_version: any other is a 404 naming it
        other = c.get(opt_info + "system.ai.meta_llama_v3_3_70b_instruct/1")
        assert other.status_code == 404 and other.json() == {
            "error_code": "RESOURCE_DOES_NOT_EXIST",
            "message": "Registered model 'system.ai.meta_llama_v3_3_70b_instruct' does not exist "
            "(this workspace has 'system.ai.meta_llama_v3_1_8b_instruct')",
        }
        later = c.get(opt_info + "system.ai.meta_llama_v3_1_8b_instruct/2")
        assert later.status_code == 404 and later.json()["message"] == (
            "Version 2 of registered model 'system.ai.meta_llama_v3_1_8b_instruct' does not exist (its latest is 1)"
        )


def test_a_tokens_per_second_band_with_a_reported_chunk() -> None:
    config = SimConfig(
        chunk_size=970,
        min_provisioned_throughput=970,
        max_provisioned_throughput=2_910,
        entity_name="ml.cat.model",
        entity_version="3",
    )
    assert config.replica_count == 3
    with served(config) as (sim, c):
        entity = served_entity(c)
        assert (
            entity["min_provisioned_throughput"],
            entity["max_provisioned_throughput"],
            entity["throughput_chunk_size"],
        ) == (970, 2_910, 970)
        assert sim.stats()["replicas"] == 3
        info = c.get("/api/2.0/serving-endpoints/get-model-optimization-info/ml.cat.model/3").json()
        assert info["throughput_chunk_size"] == 970


def test_embedding_and_model_unit_architectures_and_ppt_documents() -> None:
    with served(SimConfig(architecture="bge-large", gpu="a100")) as (_, c):
        info = c.get(
            "/api/2.0/serving-endpoints/get-model-optimization-info/system.ai.bge_large_en_v1_5/1"
        ).json()
        assert info["model_type"] == "bge"
        assert info["throughput_chunk_size"] == served_entity(c)["throughput_chunk_size"]
    with served(SimConfig(architecture="llama-4-maverick", chunks=2)) as (sim, c):
        entity = served_entity(c)
        assert "provisioned_model_units" in entity and "throughput_chunk_size" not in entity
        assert sim.stats()["replicas"] == 2
    with served(SimConfig(mode="ppt", itpm=1_000, qph=50)) as (_, c):
        endpoint = c.get("/api/2.0/serving-endpoints/sim-llama").json()
        entity = endpoint["config"]["served_entities"][0]
        assert "min_provisioned_throughput" not in entity and "throughput_chunk_size" not in entity
        assert endpoint["simulator"]["mode"] == "ppt"
        assert endpoint["simulator"]["quotas"] == {"input_tokens_per_minute": 1_000, "queries_per_hour": 50}


@pytest.mark.parametrize(
    ("architecture", "family"),
    [
        ("llama-3.3-70b", "llama"),
        ("llama-2-7b", "llama"),
        ("mistral-7b", "mistral"),
        ("mixtral-8x7b", "mixtral"),
        ("dbrx", "dbrx"),
        ("mpt-30b", "mpt"),
        ("deepseek-r1", "deepseek"),
        ("gte-large", "gte"),
        ("bge-large", "bge"),
    ],
)
def test_model_type_by_family(architecture: str, family: str) -> None:
    assert model_type(SimConfig(architecture=architecture).deployment().architecture) == family


def test_band_configurations_that_cannot_be() -> None:
    with pytest.raises(ConfigError, match="multiples"):
        SimConfig(max_provisioned_throughput=1_000)
    with pytest.raises(ConfigError, match="exceeds"):
        SimConfig(chunk_size=100, min_provisioned_throughput=300, max_provisioned_throughput=200)
    with pytest.raises(ConfigError, match="model units"):
        SimConfig(architecture="llama-4-maverick", max_provisioned_throughput=1_000)
    with pytest.raises(ConfigError, match="one of replicas, chunks"):
        SimConfig(replicas=2, chunks=3)
    assert SimConfig(chunk_size=100, min_provisioned_throughput=0, max_provisioned_throughput=200).band() == (
        0,
        200,
    )


# -- OAuth -----------------------------------------------------------------------------------------------------


def test_oauth_tokens_are_issued_used_and_expire() -> None:
    clock = FakeClock(start=1_000.0)
    config = SimConfig(
        oauth_client_id="cid", oauth_client_secret=SECRET, oauth_token_ttl_s=60, api_token="pat-1"
    )
    form = {"grant_type": "client_credentials", "scope": "all-apis"}
    with served(config, clock) as (sim, c):
        issued = c.post("/oidc/v1/token", data=form, auth=("cid", SECRET))
        assert issued.status_code == 200
        body = issued.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 60 and body["access_token"]
        other = c.post("/oidc/v1/token", data=form, auth=("cid", SECRET)).json()["access_token"]
        assert other != body["access_token"]
        bearer = {"Authorization": f"Bearer {body['access_token']}"}
        assert c.post("/v1/chat/completions", json=chat(), headers=bearer).status_code == 200
        assert (
            c.post("/serving-endpoints/sim-llama/invocations", json=chat(), headers=bearer).status_code == 200
        )
        assert c.post("/v1/chat/completions", json=chat()).status_code == 401
        assert (
            c.post("/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
        pat = {"Authorization": "Bearer pat-1"}
        clock.advance(59.9)
        assert c.post("/v1/chat/completions", json=chat(), headers=bearer).status_code == 200
        clock.advance(0.1)
        expired = c.post("/v1/chat/completions", json=chat(), headers=bearer)
        assert expired.status_code == 401 and body["access_token"] not in expired.text
        assert (
            c.post("/v1/chat/completions", json=chat(), headers=pat).status_code == 200
        )  # the PAT still works
        wrong = c.post("/oidc/v1/token", data=form, auth=("cid", "not-the-secret"))
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        unknown = c.post("/oidc/v1/token", data=form, auth=("someone", SECRET))
        assert unknown.status_code == 401 and SECRET not in unknown.text
        grant = c.post("/oidc/v1/token", data={"grant_type": "password"}, auth=("cid", SECRET))
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
        assert sim.stats()["oauth_tokens_issued"] == 2
        assert SECRET not in repr(config) and "pat-1" not in repr(config)
        assert SECRET not in c.get("/sim/stats").text


def test_the_toolkits_oauth_client_against_the_simulator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Databricks SDK's OAuth M2M (as the toolkit resolves it) against the simulator's workspace: host metadata,
    OIDC discovery, tokens; one fake clock ages the token for both."""
    clock = FakeClock(start=1_800_000_000.0)
    sdk_time(monkeypatch, clock)
    config = SimConfig(oauth_client_id="cid", oauth_client_secret=SECRET, oauth_token_ttl_s=3_600)
    for name in [n for n in os.environ if n.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    with served(config, clock) as (sim, c):
        monkeypatch.setenv("DATABRICKS_HOST", sim.url)
        monkeypatch.setenv("DATABRICKS_CLIENT_ID", "cid")
        monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SECRET)
        auth = resolve_auth(AuthOptions())
        assert c.post(
            "/v1/completions", json={"prompt": TEN, "max_tokens": 2}, headers=auth.headers()
        ).is_success
        auth.refresh()  # a fresh token: kept
        clock.advance(3_600)
        assert c.post("/v1/completions", json={"prompt": "x"}, headers=auth.headers()).status_code == 401
        auth.refresh()
        assert c.post("/v1/completions", json={"prompt": "x"}, headers=auth.headers()).status_code == 200
        assert sim.stats()["oauth_tokens_issued"] == 2
        monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", "wrong-secret")
        with pytest.raises(ConfigError, match="invalid_client") as failure:
            resolve_auth(AuthOptions())
        assert "wrong-secret" not in str(failure.value)


def test_without_oauth_there_is_no_token_endpoint() -> None:
    with served(SimConfig()) as (_, c):
        assert c.post("/oidc/v1/token", data={"grant_type": "client_credentials"}).status_code == 404
    with pytest.raises(ConfigError, match="both"):
        SimConfig(oauth_client_id="cid")


# -- faults ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error_class", "status"),
    [
        ("http_429", "rate_limited", 429),
        ("http_500", "server_error", 500),
        ("http_503", "server_error", 503),
        ("stream_cut", "stream_cut", 200),
        ("garbage_line", "protocol", 200),
        ("error_event", "server_error", 200),
    ],
)
def test_each_fault_is_what_the_load_generator_classifies(fault: str, error_class: str, status: int) -> None:
    with served(SimConfig(faults=FaultConfig.from_mapping({fault: 1.0}))) as (sim, _):
        for _ in range(2):  # the server stays healthy after a fault
            record = execute(sim.url, output=8)
            assert (record.status, record.error_class) == (status, error_class), record.error_detail
        if fault == "http_429":
            assert record.retry_after_s == 1.0
        if fault in ("stream_cut", "error_event"):
            assert record.client_output_tokens == 4 and record.finish_reason is None  # 8 // 2 tokens went out
        if fault == "garbage_line":
            assert record.client_output_tokens == 8 and record.finish_reason == "length"  # then it went on
        assert wait_for(lambda: idle(sim))
        stats = sim.stats()
        assert stats["faults"] == {fault: 2}
        assert stats["requests_completed"] == (2 if fault == "garbage_line" else 0)


def test_faults_on_the_databricks_paths_have_its_error_shape() -> None:
    with served(SimConfig(faults=FaultConfig(http_503=1.0))) as (_, c):
        refused = c.post("/serving-endpoints/sim-llama/invocations", json=chat())
        assert refused.status_code == 503
        assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert c.post("/v1/embeddings", json={"input": "a"}).json()["error"]["type"] == "server_error"


def test_a_stall_pauses_the_stream_and_a_shorter_read_timeout_gives_up() -> None:
    with served(SimConfig(faults=FaultConfig(stall=1.0, stall_s=0.5))) as (sim, _):
        record = execute(sim.url, output=8)
        assert record.error_class is None and record.client_output_tokens == 8
        assert record.chunk_gaps is not None and max(record.chunk_gaps) >= 0.45
        timed_out = execute(sim.url, output=8, read_timeout_s=0.2)
        assert timed_out.error_class == "timeout"
        assert wait_for(lambda: idle(sim) and sim.stats()["requests_cancelled"] == 1)
        assert sim.stats()["faults"] == {"stall": 2}


def test_faults_are_reproducible_with_the_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with served(SimConfig(seed=seed, faults=FaultConfig(http_500=0.3, http_429=0.2))) as (_, c):
            return [
                c.post("/v1/completions", json={"prompt": "a", "max_tokens": 1}).status_code
                for _ in range(40)
            ]

    first = statuses(4)
    assert first == statuses(4) and first != statuses(5)
    assert {200, 429, 500} == set(first)


def test_many_faulted_streams_leave_the_engine_clean() -> None:
    faults = FaultConfig(stream_cut=0.25, error_event=0.25, garbage_line=0.2, http_503=0.1)

    async def one(c: httpx.AsyncClient, n: int) -> int:
        try:
            async with c.stream("POST", "/v1/chat/completions", json=chat(4 + n % 20, stream=True)) as r:
                await r.aread()
                return r.status_code
        except httpx.HTTPError:
            return -1

    async def main(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            return await asyncio.gather(*(one(c, n) for n in range(60)))

    with served(SimConfig(faults=faults, seed=2)) as (sim, _):
        results = asyncio.run(main(sim.url))
        assert -1 in results and 503 in results and 200 in results
        assert wait_for(lambda: idle(sim))
        stats = sim.stats()
        assert stats["faults"]["stream_cut"] == results.count(-1)
        assert stats["faults"]["http_503"] == results.count(503)
        assert stats["faults"]["error_event"] + stats["faults"]["garbage_line"] + stats[
            "requests_completed"
        ] >= (results.count(200))


# -- fixed slots -------------------------------------------------------------------------------------------------


def test_fixed_slots_serve_n_at_once_from_one_fifo_queue() -> None:
    """Two slots, 60 ms to the first token, 20 ms per further token, 3 tokens: a request holds its slot 100 ms, so
    of three sent together the third waits for the first slot to free. Started by `loadtest sim` from a
    [simulator] table's settings."""
    settings = SimSettings.from_mapping({"slots": 2, "prefill_ms": 60, "tpot_ms": 20})
    assert settings.sim_args(1) == ["--seed", "1", "--slots", "2", "--prefill-ms", "60", "--tpot-ms", "20"]

    async def one(c: httpx.AsyncClient, delay: float) -> tuple[float, list[float], Any]:
        await asyncio.sleep(delay)  # the order of arrival
        body = chat(max_tokens=3, stream=True, stream_options={"include_usage": True})
        stamps, usage, t0 = [], None, asyncio.get_running_loop().time()
        async with c.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    stamps.append(asyncio.get_running_loop().time() - t0)
                elif '"usage"' in line:
                    usage = orjson.loads(line[len("data: ") :])["usage"]
        return stamps[0], [b - a for a, b in itertools.pairwise(stamps)], usage

    async def main(url: str) -> list[tuple[float, list[float], Any]]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            await c.get("/health")  # the connection pool warm
            return await asyncio.gather(*(one(c, 0.01 * i) for i in range(3)))

    with SimulatorProcess(settings.sim_args(1)) as proc:
        (ttft1, gaps1, usage), (ttft2, _, _), (ttft3, gaps3, _) = asyncio.run(main(proc.url))
        stats = httpx.get(proc.url + "/sim/stats").json()
    assert usage == {"prompt_tokens": 10, "total_tokens": 13, "completion_tokens": 3}
    assert 0.055 < ttft1 < 0.12 and 0.055 < ttft2 < 0.12  # a free slot each: the prefill
    assert 0.14 < ttft3 < 0.25  # queued until the first slot freed at 100 ms, then its prefill
    assert all(0.01 < gap < 0.04 for gap in gaps1 + gaps3) and len(gaps1) == 2
    assert (stats["slots"], stats["running"], stats["waiting"]) == (2, 0, 0)


# -- the CLI and scenarios -------------------------------------------------------------------------------------


def test_scenario_simulator_tables_become_sim_flags() -> None:
    args = SimSettings.from_mapping(
        {
            "architecture": "llama-3.1-8b",
            "tp": 1,
            "mode": "ppt",
            "itpm": 200_000,
            "otpm": 40_000,
            "qph": 2_400,
            "qps": 4,
            "jitter_cv": 0.1,
            "faults": {"http_503": 0.05, "stall": 0.01, "stall_seconds": 2},
        }
    ).sim_args(seed=3)
    assert args == [
        "--seed", "3", "--architecture", "llama-3.1-8b", "--tp", "1", "--jitter-cv", "0.1", "--mode", "ppt",
        "--itpm", "200000", "--otpm", "40000", "--qph", "2400", "--qps", "4",
        "--fault", "http_503=0.05", "--fault", "stall=0.01", "--stall-seconds", "2",
    ]  # fmt: skip
    band = {
        "chunks": 2,
        "chunk_size": 970,
        "min_provisioned_throughput": 0,
        "max_provisioned_throughput": 1_940,
    }
    assert SimSettings.from_mapping(band).sim_args(0)[2:] == [
        "--chunks", "2", "--chunk-size", "970", "--min-provisioned-throughput", "0",
        "--max-provisioned-throughput", "1940",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="faults"):
        SimSettings(faults=0.1).sim_args(0)  # type: ignore[arg-type]


def test_loadtest_sim_serves_the_new_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    ppt = {"mode": "ppt", "itpm": 20, "faults": {"http_503": 0.5, "stall_seconds": 2}}
    with (
        SimulatorProcess(SimSettings.from_mapping(ppt).sim_args(1)) as proc,
        httpx.Client(base_url=proc.url) as c,
    ):
        codes = {c.post("/v1/chat/completions", json=chat()).status_code for _ in range(12)}
        assert codes == {200, 429, 503}
        refused = next(
            r
            for r in (c.post("/v1/chat/completions", json=chat()) for _ in range(20))
            if r.status_code == 429
        )
        assert int(refused.headers["retry-after"]) >= 1
    band = {"chunks": 2, "chunk_size": 970, "max_batch": 64}
    with (
        SimulatorProcess(SimSettings.from_mapping(band).sim_args(1)) as proc,
        httpx.Client(base_url=proc.url) as c,
    ):
        entity = served_entity(c)
        assert (entity["max_provisioned_throughput"], entity["throughput_chunk_size"]) == (1_940, 970)
    with pytest.raises(ConfigError, match=r"settings .*unknown fault 'boom'"):
        SimulatorProcess(SimSettings(faults={"boom": 0.1}).sim_args(1)).start()
    monkeypatch.setenv("SIM_OAUTH_SECRET", SECRET)
    argv = [sys.executable, "-m", "loadtest", "sim", "--port", "0", "--oauth-client-id", "cid",
            "--oauth-secret-env", "SIM_OAUTH_SECRET", "--token-ttl", "120"]  # fmt: skip
    with ManagedProcess(argv, what="simulator") as proc, httpx.Client(base_url=proc.url) as c:
        token = c.post(
            "/oidc/v1/token",
            data={"grant_type": "client_credentials", "scope": "all-apis"},
            auth=("cid", SECRET),
        ).json()
        assert token["expires_in"] == 120
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert c.post("/v1/chat/completions", json=chat(), headers=headers).status_code == 200
    assert os.environ["SIM_OAUTH_SECRET"] == SECRET
