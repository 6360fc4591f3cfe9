"""Samples of requests and responses (``samples.jsonl``): only a captured request keeps its content, texts are
redacted and capped, the run's credentials never reach a sample, and the writer keeps a few per class whatever the
number of processes sending them."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loadtest.client.clock import FakeClock
from loadtest.client.execute import Capture, RecordContext, execute_request
from loadtest.client.httpx_transport import HttpxTransport
from loadtest.client.protocol import EndpointSpec, PreparedRequest, RequestClass, build_request
from loadtest.client.records import RequestRecord, dump_record, read_records
from loadtest.client.scrub import header_secrets
from loadtest.engine.conduct import Recorder
from loadtest.engine.sampling import Sampler
from loadtest.errors import ConfigError
from loadtest.rundir import SAMPLES_FILE, Sample, SampleText, read_samples
from loadtest.rundir.samples import KEEP_FAILED, KEEP_OK, MAX_FILE_BYTES, MAX_TEXT, sample_extras
from tests.helpers import BASE

ENDPOINT = EndpointSpec(base_url="http://sim.test/v1", model="m")
CTX = RecordContext(run_id="r1", stage="concurrency@1", endpoint="e", worker="w")
SECRET = "sk-live-0123456789abcdefSECRET"
HEADERS = {"Authorization": f"Bearer {SECRET}"}


def chunk(text: str | None, finish: str | None = None) -> bytes:
    return orjson.dumps(
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    )


def stream(clock: FakeClock, payloads: list[bytes]) -> Iterator[bytes]:
    for i, payload in enumerate(payloads):
        clock.now += 0.01 * (i + 1)
        yield b"data: " + payload + b"\n\n"


WORDS = [f" w{i}" for i in range(10)]
STREAM = [
    chunk(""),  # the role chunk
    *(chunk(w) for w in WORDS),
    chunk(None, "length"),
    orjson.dumps({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 10}}),
    b"[DONE]",
]


def execute(
    handler: Callable[[httpx.Request], httpx.Response],
    capture: Capture | None,
    request: PreparedRequest | None = None,
    clock: FakeClock | None = None,
) -> RequestRecord:
    request = request or build_request(ENDPOINT, RequestClass(output_tokens=10), "hello world")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return execute_request(
            HttpxTransport(client),
            request,
            HEADERS,
            clock or FakeClock(),
            CTX,
            seq=1,
            scheduled_at=0.0,
            emit=lambda record: None,
            capture=capture,
        )


def streamed(clock: FakeClock, payloads: list[bytes] = STREAM) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=stream(clock, payloads)
    )


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every payload the SSE parser decodes as JSON."""
    seen: list[bytes] = []

    def loads(data: bytes) -> Any:
        seen.append(bytes(data))
        return orjson.loads(data)

    import loadtest.client.sse as sse

    monkeypatch.setattr(
        sse, "orjson", types.SimpleNamespace(loads=loads, JSONDecodeError=orjson.JSONDecodeError)
    )
    return seen


# -- capture at run time -----------------------------------------------------------------------------------------


def test_an_uncaptured_stream_keeps_no_text(decodes: list[bytes]) -> None:
    clock = FakeClock()
    record = execute(streamed(clock), None, clock=clock)
    assert record.ok and record.output_tokens == 10 and record.client_output_tokens == 10
    assert len(decodes) == len(STREAM) - 1  # every chunk but [DONE] is decoded, captured or not
    clock = FakeClock()
    capture = Capture()  # an error body only
    assert execute(streamed(clock), capture, clock=clock).ok
    assert capture.content is None and capture.error_body is None


def test_a_captured_stream_decodes_every_chunk_and_keeps_its_text(decodes: list[bytes]) -> None:
    clock = FakeClock()
    capture = Capture(content=[])
    record = execute(streamed(clock), capture, clock=clock)
    assert len(decodes) == len(STREAM) - 1  # all but [DONE]
    assert capture.content == WORDS
    uncaptured = execute(streamed(clock := FakeClock()), None, clock=clock)
    # the same record either way
    assert replace(record, started_at=0.0) == replace(uncaptured, started_at=0.0)


def test_a_stream_cut_keeps_what_was_collected_before_it() -> None:
    clock = FakeClock()
    capture = Capture(content=[])
    record = execute(streamed(clock, STREAM[:4]), capture, clock=clock)
    assert record.error_class == "stream_cut"
    assert capture.content == WORDS[:3]


def test_non_streamed_bodies_and_embeddings_are_captured() -> None:
    body = {"choices": [{"message": {"content": "a whole answer"}, "finish_reason": "stop"}]}
    capture = Capture(content=[])
    request = build_request(ENDPOINT, RequestClass(stream=False), "hi")
    assert execute(lambda r: httpx.Response(200, json=body), capture, request).ok
    assert capture.content == ["a whole answer"]
    vectors = {"data": [{"embedding": [0.5, -0.25, 0.125, 1.0]}, {"embedding": [0.0] * 4}]}
    capture = Capture(content=[])
    request = build_request(ENDPOINT, RequestClass(kind="embeddings"), "hi")
    assert execute(lambda r: httpx.Response(200, json=vectors), capture, request).ok
    assert capture.content == ["2 embeddings × 4 dimensions: [0.5, -0.25, 0.125, …]"]


def test_an_error_body_is_kept_when_capturing() -> None:
    capture = Capture()
    record = execute(lambda r: httpx.Response(503, text="<html>upstream down</html>"), capture)
    assert record.error_class == "server_error"
    assert capture.error_body == b"<html>upstream down</html>"
    capture = Capture(content=[])
    record = execute(lambda r: httpx.Response(200, text="<html>login</html>"), capture)
    assert record.error_class == "protocol" and capture.error_body == b"<html>login</html>"


# -- what a sample holds -----------------------------------------------------------------------------------------


def test_texts_are_capped_and_say_so() -> None:
    short = SampleText.of("x" * MAX_TEXT)
    assert (short.text, short.chars, short.truncated) == ("x" * MAX_TEXT, MAX_TEXT, False)
    long = SampleText.of("y" * 5000)
    assert (len(long.text), long.chars, long.truncated) == (MAX_TEXT, 5000, True)
    assert long.to_dict()["truncated"] is True
    request = build_request(ENDPOINT, RequestClass(), "p" * 9000)
    extras = sample_extras(request, Capture(content=["z"] * 7000, error_body=b"e" * 3000))
    assert len(orjson.dumps(extras)) < 3 * MAX_TEXT + 1000
    (message,) = extras["request"]["messages"]
    assert message["content"] == {"text": "p" * MAX_TEXT, "chars": 9000, "truncated": True}
    assert extras["response"] == {"text": "z" * MAX_TEXT, "chars": 7000, "truncated": True}
    assert extras["error_body"]["chars"] == 3000


def test_the_request_as_sent_without_headers() -> None:
    cls = RequestClass(name="rag", output_tokens=7, extra_body={"top_p": 0.9, "metadata": {"team": "x"}})
    extras = sample_extras(build_request(ENDPOINT, cls, "the prompt"), Capture(content=[]))
    assert extras["captured"] is True and extras["response"] == {"text": "", "chars": 0, "truncated": False}
    assert extras["error_body"] is None
    req = extras["request"]
    assert (req["kind"], req["model"], req["max_tokens"], req["stream"]) == ("chat", "m", 7, True)
    assert req["messages"] == [
        {"role": "user", "content": {"text": "the prompt", "chars": 10, "truncated": False}}
    ]
    assert req["params"] == {
        "temperature": 0.0,
        "stream_options": '{"include_usage":true}',
        "ignore_eos": True,
        "top_p": 0.9,
        "metadata": '{"team":"x"}',
    }
    completions = sample_extras(build_request(ENDPOINT, RequestClass(kind="completions"), "go on"), Capture())
    assert completions["captured"] is False and completions["response"] is None
    assert completions["request"]["prompt"]["text"] == "go on" and completions["request"]["messages"] == []


def test_no_secret_reaches_a_sample() -> None:
    """A server that echoes the Authorization header into its stream and its error body, and a scenario whose
    prompt and extra body carry credentials: the sample line holds none of them."""
    clock = FakeClock()

    def echo(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        if orjson.loads(request.content).get("stream"):
            payloads = [chunk(f"you sent {auth}"), chunk(f" and {SECRET} again", "stop"), b"[DONE]"]
            return streamed(clock, payloads)(request)
        return httpx.Response(401, text=f"bad credentials: {auth} ({SECRET})")

    cls = RequestClass(extra_body={"api_key": SECRET, "other_service_token": "ghp_unrelated0123"})
    for request in (
        build_request(ENDPOINT, cls, f"my token is {SECRET}"),
        build_request(ENDPOINT, replace(cls, stream=False), "x"),
    ):
        capture = Capture(content=[])
        record = execute(echo, capture, request, clock)
        line = dump_record(record, sample_extras(request, capture, header_secrets(HEADERS)))
        assert SECRET not in line.decode() and b"Bearer sk-" not in line and b"ghp_" not in line
        assert b"authorization" not in line.lower()
        assert b"***" in line


# -- which requests become samples -------------------------------------------------------------------------------


def test_the_sampler_collects_only_a_class_s_first_requests() -> None:
    sampler = Sampler()
    request = build_request(ENDPOINT, RequestClass(name="chat"), "hi")
    ok = replace(BASE, request_class="chat")
    captures = [sampler.capture("chat") for _ in range(5)]  # five in flight at once
    assert [c.content is not None for c in captures] == [True] * KEEP_OK + [False] * 2
    assert sampler.capture("rag").content == []  # another class has its own places

    def finish(record: RequestRecord, capture: Capture) -> dict[str, Any] | None:
        return sampler.finish(record, request, capture, lambda: [SECRET])

    failed = replace(ok, error_class="server_error", status=500)
    assert finish(failed, captures[0]) is not None  # a failed collected request: a failed sample ...
    assert sampler.capture("chat").content == []  # ... and its place goes to the next request
    assert finish(ok, captures[3]) is None  # a success whose text was not collected
    assert finish(ok, captures[1]) is not None and finish(ok, captures[2]) is not None
    assert sampler.capture("chat").content is None  # two taken + one in flight
    cancelled = replace(ok, error_class="cancelled")
    assert finish(cancelled, captures[4]) is None
    # failures: a few per error class, collected or not
    kept = [finish(failed, Capture()) for _ in range(KEEP_FAILED)]
    assert sum(k is not None for k in kept) == KEEP_FAILED - 1  # one server_error was taken above
    limited = replace(ok, error_class="rate_limited", status=429)
    assert finish(limited, Capture(error_body=b"slow down")) is not None


# -- the writer and the reader -----------------------------------------------------------------------------------


def sampled(record: RequestRecord, text: str = "answer") -> bytes:
    request = build_request(ENDPOINT, RequestClass(name=record.request_class), "question")
    capture = Capture(content=None if record.error_class else [text])
    if record.error_class:
        capture.error_body = b'{"error": {"message": "busy"}}'
    return dump_record(record, sample_extras(request, capture))


def test_the_recorder_moves_samples_to_their_file_and_keeps_a_few_per_class(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "master")
    workers = []
    for w in ("worker0", "worker1"):  # each worker sends its own first three of each class
        lines = []
        for i in range(KEEP_OK):
            for cls in ("chat", "embed"):
                lines.append(sampled(replace(BASE, worker=w, seq=i, request_class=cls), f"{w}-{cls}-{i}"))
        failed = replace(BASE, worker=w, seq=9, error_class="server_error", status=500, first_token_at=None)
        lines += [sampled(failed), dump_record(replace(BASE, worker=w, seq=10))]
        workers.append(b"".join(lines))
    for batch in workers:
        rec.write(batch)
    rec.close()
    assert rec.records == 16
    assert all(b'"sample"' not in line for line in (tmp_path / "records.jsonl").read_bytes().splitlines())
    assert [r.seq for r in read_records(tmp_path)][:3] == [0, 0, 1]
    samples = read_samples(tmp_path)
    assert [(s.worker, s.request_class, s.ok) for s in samples] == [
        ("worker0", "chat", True),
        ("worker0", "embed", True),
        ("worker0", "chat", True),
        ("worker0", "embed", True),
        ("worker0", "chat", True),
        ("worker0", "embed", True),
        ("worker0", "chat", False),
        ("worker1", "chat", False),  # worker1's successes came after worker0's three of each class
    ]
    assert rec.samples.written == 8 and rec.samples.dropped == 6
    first = samples[0]
    assert isinstance(first, Sample) and first.captured and first.response is not None
    assert first.response.text == "worker0-chat-0"
    assert (first.ttft_s, first.e2e_s) == (pytest.approx(0.2), pytest.approx(1.0))
    assert (first.status, first.output_tokens, first.finish_reason) == (200, 11, "length")
    assert first.request.messages[0].content.text == "question"
    assert first.request.params["ignore_eos"] is True
    failed_sample = samples[6]
    assert failed_sample.error_class == "server_error" and failed_sample.ttft_s is None
    assert failed_sample.response is None and not failed_sample.captured
    assert failed_sample.error_body is not None and "busy" in failed_sample.error_body.text


def test_the_file_stops_growing_at_its_cap(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "local")
    for n in range(400):  # 400 classes, each sample ≈ 4 kB
        rec.write(sampled(replace(BASE, seq=n, request_class=f"c{n}"), "r" * MAX_TEXT))
    rec.close()
    size = (tmp_path / SAMPLES_FILE).stat().st_size
    assert MAX_FILE_BYTES - 5000 < size <= MAX_FILE_BYTES
    assert rec.samples.dropped == 400 - len(read_samples(tmp_path)) > 0


def test_the_reader_leaves_out_a_partial_last_line_and_names_a_bad_one(tmp_path: Path) -> None:
    assert read_samples(tmp_path) == ()  # a run from before samples
    rec = Recorder(tmp_path, "local")
    rec.write(sampled(BASE) + sampled(replace(BASE, seq=1)))
    rec.close()
    path = tmp_path / SAMPLES_FILE
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # a crash mid-write
    assert [s.seq for s in read_samples(tmp_path)] == [0]
    first, _second = whole.splitlines(keepends=True)
    path.write_bytes(first[:-40] + b"\n" + first)
    with pytest.raises(ConfigError, match=r"samples.jsonl:1 is not valid JSON"):
        read_samples(tmp_path)
    path.write_bytes(first.replace(b'"format":1', b'"format":7'))
    with pytest.raises(ConfigError, match=r"samples.jsonl:1: sample format 7 is not one this version reads"):
        read_samples(tmp_path)
    path.write_bytes(first.replace(b'"status":200', b'"status":"ok"'))
    with pytest.raises(ConfigError, match=r'samples.jsonl:1: status must be an integer, got "ok"'):
        read_samples(tmp_path)


def test_a_sample_reads_back_as_written(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "local")
    rec.write(sampled(BASE, "the answer"))
    rec.close()
    raw = orjson.loads((tmp_path / SAMPLES_FILE).read_bytes())
    (sample,) = read_samples(tmp_path)
    assert raw["request"]["messages"][0]["content"] == sample.request.messages[0].content.to_dict()
    assert raw["response"] == (sample.response.to_dict() if sample.response else None)
    assert set(raw) == {f for f in Sample.__dataclass_fields__} | {"format"}
