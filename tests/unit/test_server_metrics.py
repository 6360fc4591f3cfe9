"""Server metrics: parsing real captures of each server kind, the name mapping, one scrape over a mock transport,
the file's round trip, the join to stages with exact values, and what the metrics say binds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import orjson
import pytest

from analysis.server_metrics import (
    ServerMetricsSummary,
    ServerStageMetrics,
    binding_evidence,
    gauge_series,
    stage_server_metrics,
    summarize_server_metrics,
)
from loadtest.client.protocol import EndpointSpec
from loadtest.client.server_metrics import (
    MetricsTextError,
    Scrape,
    decode_body,
    parse_exposition,
    read_metrics,
    scrape_once,
)
from loadtest.errors import ConfigError
from loadtest.rundir import (
    SERVER_METRICS_FILE,
    ServerMetricsHeader,
    ServerMetricsLog,
    ServerMetricsWriter,
    StageWindow,
    read_server_metrics,
)
from loadtest.runner.scrape import MetricsPlan, Scraper, metrics_candidates, resolve_metrics
from reports.html.charts import server_chart
from reports.html.collect import RunView
from reports.html.server_section import server_section
from tests.helpers import wait_for

DATA = Path(__file__).parent / "data" / "server_metrics"


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


# -- real captures, each server kind ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        (
            "llamacpp.txt",
            "llamacpp",
            # 180 prompt tokens processed + 0 from the cache; tokens_predicted counts only finished requests
            {"waiting": 2, "running": 4, "prompt_tokens": 180, "generation_tokens": 0},
        ),
        (
            "llamacpp_idle.txt",
            "llamacpp",
            {"waiting": 0, "running": 0, "prompt_tokens": 182 + 88, "generation_tokens": 1200},
        ),
        (
            "vllm.txt",
            "vllm",
            {
                "waiting": 0, "running": 0, "kv_cache_usage": 0, "preemptions": 0,
                "prompt_tokens": 5, "generation_tokens": 7,
            },
        ),
        (
            "sglang.txt",
            "sglang",
            {"waiting": 0, "running": 0, "kv_cache_usage": 0.25, "prompt_tokens": 5, "generation_tokens": 32},
        ),
        ("tgi.txt", "tgi", {"waiting": 0, "running": 0, "prompt_tokens": 662}),
        (
            "databricks.txt",
            "databricks",
            {
                "cpu_usage_pct": 2.344062231666667,
                "mem_usage_pct": 6.823611259460449,
                "requests_last_min": 0,
                "errors_4xx_last_min": 0,
                "errors_5xx_last_min": 0,
                "provisioned_concurrency": 4,
            },
        ),
        (
            "sim.txt",
            "vllm",
            {
                "waiting": 31,
                "running": 256,
                "kv_cache_usage": 0.359897654104614,
                "preemptions": 0,
                "prompt_tokens": 60000,
                "generation_tokens": 58531,
            },
        ),
    ],
)  # fmt: skip
def test_each_server_kinds_capture_maps_to_the_toolkits_names(
    name: str, kind: str, expected: dict[str, float]
) -> None:
    assert read_metrics(fixture(name)) == (kind, expected)


def test_the_parser_normalises_counters_to_total_and_drops_created_series() -> None:
    samples = parse_exposition(
        "# TYPE llamacpp:n_tokens_max counter\nllamacpp:n_tokens_max 63\n"
        "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total 5\nvllm:prompt_tokens_created 1.7e9\n"
    )
    assert samples == {"llamacpp:n_tokens_max_total": [63.0], "vllm:prompt_tokens_total": [5.0]}


def test_engines_sum_their_queues_and_average_their_kv_use() -> None:
    text = (
        'vllm:num_requests_running{engine="0"} 3\nvllm:num_requests_running{engine="1"} 2\n'
        'vllm:num_requests_waiting{engine="0"} 4\n'
        'vllm:kv_cache_usage_perc{engine="0"} 0.5\nvllm:kv_cache_usage_perc{engine="1"} 0.25\n'
        'vllm:generation_tokens_total{engine="0"} 100\nvllm:generation_tokens_total{engine="1"} 50\n'
        'vllm:num_requests_waiting{engine="1",model_name="a \\"quoted\\" } name"} 1\n'
    )
    kind, values = read_metrics(text.encode())
    assert kind == "vllm"
    assert values == {"running": 5, "waiting": 5, "kv_cache_usage": 0.375, "generation_tokens": 150}


def test_vllms_older_kv_gauge_is_read_when_the_new_one_is_absent() -> None:
    kind, values = read_metrics(b'vllm:gpu_cache_usage_perc{model_name="m"} 0.97\n')
    assert (kind, values) == ("vllm", {"kv_cache_usage": 0.97})


def test_databricks_json_wrapper_is_unwrapped() -> None:
    body = orjson.dumps({"contents": "cpu_usage_percentage 12.5\nrequest_count_total 60\n"})
    assert decode_body(body) == "cpu_usage_percentage 12.5\nrequest_count_total 60\n"
    assert read_metrics(body) == ("databricks", {"cpu_usage_pct": 12.5, "requests_last_min": 60})


@pytest.mark.parametrize(
    "body", [b"<html><body>Not here</body></html>", b'{"object": "list", "data": []}', b"\x00\xff garbage {"]
)
def test_what_is_not_prometheus_text_is_one_error(body: bytes) -> None:
    with pytest.raises(MetricsTextError, match="not Prometheus text"):
        read_metrics(body)


def test_text_without_known_names_has_no_kind() -> None:
    assert read_metrics(b"# TYPE up gauge\nup 1\nhttp_requests_total 5\n") == (None, {})


# -- one scrape --------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = 100.0, step: float = 0.25) -> None:
        self.t, self.step = t, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def scrape_with(handler: httpx.MockTransport) -> Scrape:
    with httpx.Client(transport=handler) as client:
        return scrape_once(
            client, "http://h/metrics", {"Authorization": "Bearer dapiSECRET123456"},
            clock=FakeClock(), cpu_clock=FakeClock(0.0, 0.001),
        )  # fmt: skip


def test_a_scrape_is_timed_and_mapped() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, content=fixture("sim.txt"))

    scrape = scrape_with(httpx.MockTransport(handler))
    assert scrape.ok and scrape.kind == "vllm"
    assert scrape.values is not None and scrape.values["running"] == 256
    assert (scrape.t, scrape.duration_s, scrape.cpu_s) == (100.5, 0.25, pytest.approx(0.001))
    assert seen == ["Bearer dapiSECRET123456"]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(404, text="nope"), "HTTP 404"),
        (httpx.Response(200, text="<html>hi</html>"), "not Prometheus text"),
        (httpx.Response(200, text="up 1\n"), "no known server metric names"),
        (httpx.ReadTimeout("read timed out"), "timed out"),
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            "ConnectError: [Errno 111] Connection refused",
        ),
        (
            httpx.ConnectError("to https://u:dapiSECRET123456@h failed"),
            "ConnectError: to https://***@h failed",
        ),
    ],
)
def test_a_failed_scrape_is_one_line_never_an_exception(
    response: httpx.Response | Exception, error: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(response, Exception):
            raise response
        return response

    scrape = scrape_with(httpx.MockTransport(handler))
    assert not scrape.ok and scrape.values is None
    assert scrape.error is not None and scrape.error.startswith(error)
    assert "SECRET" not in scrape.error


# -- the file ------------------------------------------------------------------------------------------------------


def header() -> ServerMetricsHeader:
    return ServerMetricsHeader("http://h/metrics", False, 1.0, 2.0, 99.0)


def test_the_file_reads_back_what_was_written_and_skips_a_cut_line(tmp_path: Path) -> None:
    writer = ServerMetricsWriter(tmp_path, header())
    writer.write(Scrape(100.0, 0.003, 0.001, "vllm", {"running": 3.0, "waiting": 0.0}))
    writer.write(Scrape(101.0, 2.0, 0.0, error="timed out"))
    writer.close()
    with (tmp_path / SERVER_METRICS_FILE).open("ab") as fh:
        fh.write(b'{"line": "scrape", "t": 10')  # a crash mid-line
    log = read_server_metrics(tmp_path)
    assert log is not None
    assert log.header == header()
    assert log.scrapes == (
        Scrape(100.0, 0.003, 0.001, "vllm", {"running": 3.0, "waiting": 0.0}),
        Scrape(101.0, 2.0, 0.0, error="timed out"),
    )
    assert log.skipped_lines == 1


def test_no_file_is_no_server_metrics_and_another_format_is_named(tmp_path: Path) -> None:
    assert read_server_metrics(tmp_path) is None
    (tmp_path / SERVER_METRICS_FILE).write_bytes(b'{"line": "header", "format": 7}\n')
    with pytest.raises(ConfigError, match="format 7 is not one this version reads"):
        read_server_metrics(tmp_path)


# -- the join to stages ------------------------------------------------------------------------------------------


def ok(t: float, **values: float) -> Scrape:
    return Scrape(t, 0.01, 0.001, "vllm", values)


WINDOWS = [StageWindow("c@1", start=10.0, end=20.0), StageWindow("c@8", start=20.5, end=30.0)]
SCRAPES = [
    ok(9.0, running=9, prompt_tokens=0),  # before the first stage: no stage's
    ok(11.0, running=1, waiting=0, kv_cache_usage=0.1, prompt_tokens=100, preemptions=0),
    ok(13.0, running=1, waiting=0, kv_cache_usage=0.2, prompt_tokens=300, preemptions=0),
    Scrape(15.0, 2.0, 0.0, error="timed out"),
    ok(19.0, running=1, waiting=2, kv_cache_usage=0.3, prompt_tokens=700, preemptions=0),
    ok(21.0, running=8, waiting=4, kv_cache_usage=0.92, prompt_tokens=900, preemptions=1),
    ok(25.0, running=8, waiting=6, kv_cache_usage=0.98, prompt_tokens=50, preemptions=3),  # restarted
    ok(29.0, running=6, waiting=2, kv_cache_usage=0.95, prompt_tokens=250, preemptions=4),
]


def test_gauges_average_and_peak_and_counters_rise_per_stage() -> None:
    first, second = stage_server_metrics(SCRAPES, WINDOWS)
    assert (first.stage, first.scrapes, first.failed) == ("c@1", 4, 1)
    assert first.values == {
        "waiting_mean": pytest.approx(2 / 3),
        "waiting_max": 2,
        "running_mean": 1,
        "running_max": 1,
        "kv_cache_usage_mean": pytest.approx(0.2),
        "kv_cache_usage_max": 0.3,
        "preemptions": 0,
        "preemptions_per_s": 0,
        "prompt_tokens": 600,  # 700 − 100 over 11 s → 19 s
        "prompt_tokens_per_s": 75,
    }
    assert (second.stage, second.scrapes, second.failed) == ("c@8", 3, 0)
    # a counter that fell restarted from 0: its new value is the increase (900 → 50 → 250: 50 + 200)
    assert second.values["prompt_tokens"] == 250
    assert second.values["prompt_tokens_per_s"] == 250 / 8
    assert second.values["preemptions"] == 3
    assert second.values["running_mean"] == pytest.approx(22 / 3)
    assert second.values["kv_cache_usage_max"] == 0.98


def test_a_counter_seen_once_in_a_stage_has_no_rate() -> None:
    (only,) = stage_server_metrics([ok(12.0, generation_tokens=10)], WINDOWS[:1])
    assert only.values == {"generation_tokens": None, "generation_tokens_per_s": None}


def test_what_the_server_says_binds() -> None:
    stages = stage_server_metrics(SCRAPES, WINDOWS)
    summary = summarize_server_metrics(ServerMetricsLog(header(), tuple(SCRAPES)), WINDOWS)
    assert summary.stages == stages
    assert (summary.scrapes, summary.failed, summary.first_error, summary.server) == (
        8,
        1,
        "timed out",
        "vllm",
    )
    assert summary.note == "1 of 8 server-metrics scrapes of http://h/metrics failed; the first: timed out"
    assert binding_evidence(summary, ["c@1", "c@8"]) == (
        "KV cache 98 % full from c@8 on",
        "requests queue in the server from c@8 on (4.0 waiting on average there, 6 at most in c@8)",
        "3 preemptions from c@8 on",
    )
    # a claim holds from a stage on only when every later stage bears it out
    assert binding_evidence(summary, ["c@8", "c@1"]) == ()
    assert binding_evidence(None, ["c@1"]) == ()


# -- where to scrape, and the scraper ------------------------------------------------------------------------------


def test_candidates_for_each_kind_of_endpoint() -> None:
    assert metrics_candidates(EndpointSpec("http://127.0.0.1:8000/v1", "m")) == [
        "http://127.0.0.1:8000/metrics",
        "http://127.0.0.1:8000/v1/metrics",
    ]
    assert metrics_candidates(EndpointSpec("https://h/openai/v1/", "m")) == [
        "https://h/openai/metrics",
        "https://h/metrics",
        "https://h/openai/v1/metrics",
    ]
    assert metrics_candidates(
        EndpointSpec("https://adb-1.azuredatabricks.net", "llama", api="databricks")
    ) == ["https://adb-1.azuredatabricks.net/api/2.0/serving-endpoints/llama/metrics"]


def recording(status: int, body: bytes) -> tuple[httpx.MockTransport, list[tuple[str, str | None]]]:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        return httpx.Response(status, content=body)

    return httpx.MockTransport(handler), seen


def token() -> dict[str, str]:
    return {"Authorization": "Bearer t0ken-value"}


def test_the_default_takes_the_first_candidate_that_answers_and_sends_credentials_home_only() -> None:
    endpoint = EndpointSpec("http://127.0.0.1:8000/v1", "m")
    transport, seen = recording(200, fixture("vllm.txt"))
    lines: list[str] = []
    plan = resolve_metrics(None, endpoint, token, echo=lines.append, transport=transport)
    assert plan is not None and (plan.url, plan.explicit) == ("http://127.0.0.1:8000/metrics", False)
    assert seen == [("http://127.0.0.1:8000/metrics", "Bearer t0ken-value")]
    assert lines == ["server metrics: vllm at http://127.0.0.1:8000/metrics, scraped every 1s"]
    transport, seen = recording(200, fixture("vllm.txt"))
    elsewhere = resolve_metrics("http://10.0.0.9:9400/metrics", endpoint, token, transport=transport)
    assert elsewhere is not None and dict(elsewhere.headers()) == {}
    assert seen == [("http://10.0.0.9:9400/metrics", None)]


def test_the_default_goes_without_silently_and_a_named_url_is_kept_loudly() -> None:
    endpoint = EndpointSpec("http://127.0.0.1:8000/v1", "m")
    transport, seen = recording(404, b"not found")
    lines: list[str] = []
    assert resolve_metrics("auto", endpoint, echo=lines.append, transport=transport) is None
    assert len(seen) == 2 and lines == []
    plan = resolve_metrics("http://127.0.0.1:8000/stats", endpoint, echo=lines.append, transport=transport)
    assert plan is not None and plan.explicit
    assert lines == [
        "warning: server metrics: http://127.0.0.1:8000/stats failed (HTTP 404); the run goes on and keeps "
        "trying, every failure counted"
    ]
    assert resolve_metrics("off", endpoint, transport=transport) is None
    with pytest.raises(ConfigError, match="--server-metrics must be an http"):
        resolve_metrics("ftp://x/metrics", endpoint)


@pytest.fixture
def flaky() -> httpx.MockTransport:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, content=fixture("llamacpp.txt"))

    return httpx.MockTransport(handler)


def test_the_scraper_writes_a_line_per_scrape_and_failures_do_not_stop_it(
    tmp_path: Path, flaky: httpx.MockTransport
) -> None:
    scraper = Scraper(MetricsPlan("http://h/metrics", True, interval_s=0.01), tmp_path, transport=flaky)
    scraper.start()
    assert wait_for(lambda: scraper.scrapes >= 6, timeout=5.0)
    scraper.stop()
    log = read_server_metrics(tmp_path)
    assert log is not None and log.header.explicit and log.header.source == "http://h/metrics"
    assert len(log.scrapes) == scraper.scrapes >= 6
    assert [s.ok for s in log.scrapes[:4]] == [True, False, True, False]
    assert log.scrapes[1].error == "HTTP 503"
    assert log.scrapes[0].values == {"waiting": 2, "running": 4, "prompt_tokens": 180, "generation_tokens": 0}


def test_the_reports_section_escapes_what_the_server_sent() -> None:
    hostile = "<script>alert(1)</script>"
    summary = ServerMetricsSummary(
        source=f"http://h/{hostile}", server="vllm", explicit=True, interval_s=1.0, scrapes=2, failed=1,
        first_error=f"not Prometheus text ({hostile})", duration_mean_s=0.002, duration_max_s=0.003,
        cpu_mean_s=0.001, stages=(ServerStageMetrics(hostile, 2, 1, {"running_mean": 3.0}),),
    )  # fmt: skip
    view = SimpleNamespace(
        server_metrics=summary, capacity=SimpleNamespace(server_evidence=(hostile,)), timeline=None
    )
    html = server_section(cast(RunView, view), "r0")
    assert "<script>" not in html
    # the source (twice: with the failures), first error, evidence, stage
    assert html.count("&lt;script&gt;") == 5
    assert "src=" not in html and "href=" not in html  # nothing fetched from outside


def test_the_gauges_over_time_are_charted_on_the_runs_clock() -> None:
    scrapes = [
        Scrape(100.0, 0.001, 0.001, "vllm", {"waiting": 0.0, "running": 2.0, "kv_cache_usage": 0.25}),
        Scrape(101.0, 2.0, 0.0, error="timed out"),
        Scrape(102.0, 0.001, 0.001, "vllm", {"waiting": 3.0, "running": 8.0, "prompt_tokens": 10.0}),
    ]
    series = gauge_series(scrapes)
    assert series == {
        "waiting": ((100.0, 0.0), (102.0, 3.0)),
        "running": ((100.0, 2.0), (102.0, 8.0)),
        "kv_cache_usage": ((100.0, 0.25),),
    }  # gauges only (not the token counter), from the successful scrapes
    summary = ServerMetricsSummary(
        source="http://h/metrics", server="vllm", explicit=False, interval_s=1.0, scrapes=3, failed=1,
        first_error="timed out", duration_mean_s=0.7, duration_max_s=2.0, cpu_mean_s=0.001, stages=(),
        series=series,
    )  # fmt: skip
    view = SimpleNamespace(
        server_metrics=summary,
        capacity=SimpleNamespace(server_evidence=()),
        timeline=SimpleNamespace(start=99.0, t=[0.5, 1.5, 2.5], bin_s=1.0),
        stage_windows=(("concurrency@4", 0.5, 3.5),),
    )
    html = server_section(cast(RunView, view), "r0")
    assert '<figure id="r0-server-time"' in html and "The server over time" in html
    for label in ("waiting", "running", "KV cache"):
        assert f">{label}<" in html.replace("\n", "")  # one panel each
    assert ">GPU<" not in html  # no panel for a gauge the server did not expose
    assert server_chart("k", {}, 0.0, ()) is None
