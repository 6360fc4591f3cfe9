"""``samples.jsonl``: a handful of requests and their responses per request class, kept at run time so a report can
show what was sent and what came back (escaped; the HTML report renders them).

Which requests (:class:`SampleQuota`), over the whole run, not per stage:

* the first :data:`KEEP_OK` successful requests of each class — their response text is collected while they run
  (:class:`loadtest.client.execute.Capture`; only these few requests decode every stream chunk);
* the first :data:`KEEP_FAILED` failed requests of each class *and error class* (three 429s do not hide the first
  ``server_error``); ``cancelled`` ones (the generator's Ctrl-C or drain timeout) are not kept. A failed sample has
  the response's body for an HTTP error or an unusable body (``error_body``), and the text streamed before the
  failure only when the request was being collected as a successful sample (``captured``).

"First" is in the order the writer receives them: each engine process (a worker) picks its own first few and the
writer — the local engine or the master, the one writer of ``records.jsonl`` too — keeps the first that arrive.

Each line (``"format": 1``) has the record's stage, class, ``worker`` / ``seq`` / ``attempt`` (which identify its
line in ``records.jsonl``), status, error class and detail, ``ttft_s`` / ``e2e_s`` (``docs/metrics.md``), token counts
and finish reason; the request as sent — kind, model, ``max_tokens``, ``stream``, the chat messages (the first
:data:`MAX_MESSAGES`) or the prompt / embeddings input, the body's other settings — never its headers; and the
response. Every text is a :class:`SampleText`: redacted (:func:`loadtest.client.scrub.redact_content`, with the
run's own credential values), then cut to :data:`MAX_TEXT` characters, with its length before the cut. The file
stops growing at :data:`MAX_FILE_BYTES`. A sample is written after its record, one line each, so a crash or Ctrl-C
keeps every sample written so far; :func:`read_samples` leaves out a partial last line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from loadtest.client.execute import Capture
from loadtest.client.protocol import PreparedRequest
from loadtest.client.scrub import redact, redact_content
from loadtest.errors import ConfigError
from loadtest.rundir.files import SAMPLES_FILE
from loadtest.rundir.jsonshape import JsonObject

__all__ = [
    "KEEP_FAILED",
    "KEEP_OK",
    "MAX_FILE_BYTES",
    "MAX_MESSAGES",
    "MAX_TEXT",
    "SAMPLE_FORMAT",
    "Sample",
    "SampleMessage",
    "SampleQuota",
    "SampleRequest",
    "SampleText",
    "SampleWriter",
    "read_samples",
    "sample_extras",
]

SAMPLE_FORMAT: Final = 1
KEEP_OK: Final = 3  # successful samples per class
KEEP_FAILED: Final = 3  # failed samples per class and error class
MAX_TEXT: Final = 2000  # characters per text
MAX_MESSAGES: Final = 8  # chat messages kept per request
MAX_FILE_BYTES: Final = 1 << 20
_REQUEST_KEYS: Final = frozenset({"model", "max_tokens", "stream", "messages", "prompt", "input"})
_CREDENTIAL_KEY: Final = re.compile(r"(?i)secret|password|token|api[_-]?key|authorization|credential")

Param = bool | int | float | str


@dataclass(frozen=True, slots=True)
class SampleText:
    """A text as shown: redacted, at most :data:`MAX_TEXT` characters; ``chars`` is its length before the cut."""

    text: str
    chars: int

    @property
    def truncated(self) -> bool:
        return self.chars > len(self.text)

    @classmethod
    def of(cls, text: str, secrets: Iterable[str] = ()) -> SampleText:
        shown = redact_content(text, secrets)  # before the cut, so a cut never keeps half a secret
        return cls(shown[:MAX_TEXT], len(shown))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "chars": self.chars, "truncated": self.truncated}

    @classmethod
    def read(cls, obj: JsonObject | None) -> SampleText | None:
        if obj is None:
            return None
        text = obj.text("text", required=True)
        chars = obj.integer("chars", required=True)
        assert text is not None and chars is not None
        return cls(text, chars)


@dataclass(frozen=True, slots=True)
class SampleMessage:
    role: str
    content: SampleText


@dataclass(frozen=True, slots=True)
class SampleRequest:
    """The request as sent, from its JSON body (never its headers). ``messages`` for chat (the first
    :data:`MAX_MESSAGES` of ``messages_total``), ``prompt`` for completions (the prompt) and embeddings (the input);
    ``params``: the body's other settings (``temperature``, ``ignore_eos``, ``stream_options``, a class's
    ``extra_body``), objects as redacted JSON text, a text under a credential's name (``api_key``, ``*token*``, …)
    as ``***``."""

    kind: str
    model: str | None
    max_tokens: int | None
    stream: bool
    messages: tuple[SampleMessage, ...] = ()
    messages_total: int = 0
    prompt: SampleText | None = None
    params: Mapping[str, Param] = field(default_factory=dict)

    @classmethod
    def of(cls, request: PreparedRequest, secrets: Iterable[str] = ()) -> SampleRequest:
        secrets = tuple(secrets)
        body = orjson.loads(request.body)
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        prompt = body.get("prompt", body.get("input"))
        if isinstance(prompt, list):
            prompt = "\n".join(str(p) for p in prompt)
        params: dict[str, Param] = {}
        for key, value in body.items():
            if key in _REQUEST_KEYS:
                continue
            if isinstance(value, bool | int | float):
                params[key] = value
            elif isinstance(value, str) and _CREDENTIAL_KEY.search(
                key
            ):  # {"api_key": "..."} in an extra body
                params[key] = "***"
            else:
                params[key] = redact(
                    value if isinstance(value, str) else orjson.dumps(value).decode(), secrets
                )
        return cls(
            kind=request.kind,
            model=body.get("model") if isinstance(body.get("model"), str) else None,
            max_tokens=request.max_tokens,
            stream=request.stream,
            messages=tuple(_message(m, secrets) for m in messages[:MAX_MESSAGES]),
            messages_total=len(messages),
            prompt=SampleText.of(prompt, secrets) if isinstance(prompt, str) else None,
            params=params,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
            "messages": [{"role": m.role, "content": m.content.to_dict()} for m in self.messages],
            "messages_total": self.messages_total,
            "prompt": self.prompt.to_dict() if self.prompt is not None else None,
            "params": dict(self.params),
        }

    @classmethod
    def read(cls, obj: JsonObject) -> SampleRequest:
        messages = []
        for m in obj.objects("messages") or []:
            content = SampleText.read(m.obj("content", required=True))
            assert content is not None
            messages.append(SampleMessage(m.text("role") or "", content))
        params = obj.obj("params")
        for key, value in (params.raw if params is not None else {}).items():
            if not isinstance(value, bool | int | float | str):
                obj.fail(f"{obj.prefix}params.{key}", "a number, a string or true / false", value)
        return cls(
            kind=obj.text("kind", required=True) or "",
            model=obj.text("model"),
            max_tokens=obj.integer("max_tokens"),
            stream=bool(obj.flag("stream")),
            messages=tuple(messages),
            messages_total=obj.integer("messages_total") or 0,
            prompt=SampleText.read(obj.obj("prompt")),
            params=dict(params.raw) if params is not None else {},
        )


def _message(message: Any, secrets: Iterable[str]) -> SampleMessage:
    if not isinstance(message, dict):
        return SampleMessage("", SampleText.of(orjson.dumps(message).decode(), secrets))
    content = message.get("content")
    if isinstance(content, list):  # content parts: their text, else the part as JSON
        content = "\n".join(
            str(p["text"]) if isinstance(p, dict) and "text" in p else orjson.dumps(p).decode()
            for p in content
        )
    elif not isinstance(content, str):
        content = "" if content is None else orjson.dumps(content).decode()
    return SampleMessage(str(message.get("role", "")), SampleText.of(content, secrets))


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of ``samples.jsonl``: the record's facts, the request as sent and what came back. ``response`` is
    the response's text (streamed chunks joined, a body's content, an embeddings summary) when it was collected
    (``captured``), else None; ``error_body`` the body of a failed response that had one."""

    stage: str
    request_class: str
    worker: str
    seq: int
    attempt: int
    started_at: float | None
    status: int | None
    error_class: str | None
    error_detail: str | None
    ttft_s: float | None
    e2e_s: float | None
    prompt_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    server_request_id: str | None
    captured: bool
    request: SampleRequest
    response: SampleText | None
    error_body: SampleText | None

    @property
    def ok(self) -> bool:
        return self.error_class is None

    @classmethod
    def read(cls, obj: JsonObject) -> Sample:
        found = obj.raw.get("format")
        if isinstance(found, bool) or found != SAMPLE_FORMAT:
            raise ConfigError(
                f"{obj.file}: sample format {orjson.dumps(found).decode()} is not one this version reads "
                f"(format {SAMPLE_FORMAT})"
            )
        request = obj.obj("request", required=True)
        assert request is not None
        return cls(
            stage=obj.text("stage", required=True) or "",
            request_class=obj.text("request_class", required=True) or "",
            worker=obj.text("worker") or "",
            seq=obj.integer("seq", required=True) or 0,
            attempt=obj.integer("attempt") or 0,
            started_at=obj.number("started_at"),
            status=obj.integer("status"),
            error_class=obj.text("error_class"),
            error_detail=obj.text("error_detail"),
            ttft_s=obj.number("ttft_s"),
            e2e_s=obj.number("e2e_s"),
            prompt_tokens=obj.integer("prompt_tokens"),
            output_tokens=obj.integer("output_tokens"),
            finish_reason=obj.text("finish_reason"),
            server_request_id=obj.text("server_request_id"),
            captured=bool(obj.flag("captured")),
            request=SampleRequest.read(request),
            response=SampleText.read(obj.obj("response")),
            error_body=SampleText.read(obj.obj("error_body")),
        )


def sample_extras(request: PreparedRequest, capture: Capture, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """What an engine adds to a sampled record's wire line (``"sample"``, :func:`loadtest.client.records.dump_record`):
    the request as sent and the response, each text redacted with ``secrets`` (the run's credential values) and cut.
    The writer adds the record's own facts (:meth:`SampleWriter.line`)."""
    secrets = tuple(s for s in secrets if s)
    body = capture.error_body
    return {
        "captured": capture.content is not None,
        "request": SampleRequest.of(request, secrets).to_dict(),
        "response": SampleText.of("".join(capture.content), secrets).to_dict()
        if capture.content is not None
        else None,
        "error_body": SampleText.of(body.decode("utf-8", "replace"), secrets).to_dict() if body else None,
    }


class SampleQuota:
    """How many samples a class has: :data:`KEEP_OK` successful ones, :data:`KEEP_FAILED` per error class, no
    cancelled ones. Kept by each engine process (what to collect) and by the writer (what to write)."""

    __slots__ = ("_failed", "_ok")

    def __init__(self) -> None:
        self._ok: dict[str, int] = {}
        self._failed: dict[tuple[str, str], int] = {}

    def ok_taken(self, request_class: str) -> int:
        return self._ok.get(request_class, 0)

    def take(self, request_class: str, error_class: str | None) -> bool:
        """Count one more sample of this class and outcome, if it has room for one (True)."""
        if error_class is None:
            taken = self._ok.get(request_class, 0)
            if taken >= KEEP_OK:
                return False
            self._ok[request_class] = taken + 1
            return True
        if error_class == "cancelled":
            return False
        key = (request_class, error_class)
        taken = self._failed.get(key, 0)
        if taken >= KEEP_FAILED:
            return False
        self._failed[key] = taken + 1
        return True


def _seconds(end: Any, start: Any) -> float | None:
    number = (int, float)
    if isinstance(end, number) and isinstance(start, number):
        return float(end - start)
    return None


class SampleWriter:
    """The one writer of ``samples.jsonl`` (beside :class:`loadtest.engine.conduct.Recorder`): appends a sample line
    for each sampled record while its class has room (:class:`SampleQuota`) and the file is under
    :data:`MAX_FILE_BYTES`; ``dropped`` counts the samples it left out."""

    def __init__(self, run_dir: Path) -> None:
        self._fd = os.open(run_dir / SAMPLES_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
        self.quota = SampleQuota()
        self.written = 0
        self.dropped = 0

    def line(self, record: Mapping[str, Any], extras: Mapping[str, Any]) -> bytes | None:
        """The line for ``record`` (a record line's fields) with its wire ``extras``, or None when left out."""
        if not self.quota.take(str(record.get("request_class")), record.get("error_class")):
            self.dropped += 1
            return None
        line = (
            orjson.dumps(
                {
                    "format": SAMPLE_FORMAT,
                    **{key: record.get(key) for key in _RECORD_KEYS},
                    "attempt": record.get("attempt") or 0,
                    "ttft_s": _seconds(record.get("first_token_at"), record.get("started_at")),
                    "e2e_s": _seconds(record.get("ended_at"), record.get("started_at")),
                    **{key: extras.get(key) for key in ("captured", "request", "response", "error_body")},
                }
            )
            + b"\n"
        )
        if self.size + len(line) > MAX_FILE_BYTES:
            self.dropped += 1
            return None
        self.size += len(line)
        return line

    def write(self, lines: list[bytes]) -> None:
        """Append lines from :meth:`line` (after their records are written)."""
        view = memoryview(b"".join(lines))
        while view:
            view = view[os.write(self._fd, view) :]
        self.written += len(lines)

    def close(self) -> None:
        os.close(self._fd)


_RECORD_KEYS: Final = (
    "stage",
    "request_class",
    "worker",
    "seq",
    "started_at",
    "status",
    "error_class",
    "error_detail",
    "prompt_tokens",
    "output_tokens",
    "finish_reason",
    "server_request_id",
)


def read_samples(run_dir: Path) -> tuple[Sample, ...]:
    """The samples of a run directory in file order; none when it has no ``samples.jsonl`` (a run from before
    samples). A partial last line (a crash mid-write) is left out; any other line that is not a sample of the
    known format, or has a field of the wrong type, is one :class:`ConfigError` line naming the file and line."""
    path = run_dir / SAMPLES_FILE
    if not path.exists():
        return ()
    data = path.read_bytes()
    lines = data.split(b"\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            if n == len(lines):  # no newline after it: cut by a crash
                break
            raise ConfigError(f"{path}:{n} is not valid JSON") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}:{n} is not a sample (not a JSON object)")
        out.append(Sample.read(JsonObject(raw, Path(f"{path}:{n}"))))
    return tuple(out)
