"""``server_metrics.jsonl``: the endpoint's own metrics, scraped about once a second while the run ran.

Written by the CLI process (:mod:`loadtest.runner.scrape`), one JSON object a line, flushed as written (a crash keeps
every line before it). The first line says where the metrics came from; each later line is one scrape::

    {"line": "header", "format": 1, "source": "http://127.0.0.1:8000/metrics", "explicit": false,
     "interval_s": 1.0, "timeout_s": 2.0, "started_at": 1764547200.1}
    {"line": "scrape", "t": 1764547201.2, "duration_s": 0.004, "cpu_s": 0.002, "server": "vllm",
     "values": {"waiting": 0, "running": 3, "kv_cache_usage": 0.12, "prompt_tokens": 5120, ...}}
    {"line": "scrape", "t": 1764547202.2, "duration_s": 2.0, "cpu_s": 0.0, "error": "timed out"}

``source`` is the URL without credentials or query string; ``explicit`` whether ``--server-metrics URL`` named it
(else the default found it by a probe). ``values`` hold only the metrics the server exposed, under the toolkit's
names (:data:`loadtest.client.server_metrics.METRICS`; docs/metrics.md, "Server metrics"). A run without server
metrics has no such file. :func:`read_server_metrics` reads format 1 and names any other; a line it cannot read
(cut by a crash) is skipped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import orjson

from loadtest.client.server_metrics import Scrape
from loadtest.errors import ConfigError

__all__ = [
    "SERVER_METRICS_FILE",
    "SERVER_METRICS_FORMAT",
    "ServerMetricsHeader",
    "ServerMetricsLog",
    "ServerMetricsWriter",
    "read_server_metrics",
]

SERVER_METRICS_FILE: Final = "server_metrics.jsonl"
SERVER_METRICS_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class ServerMetricsHeader:
    source: str
    explicit: bool
    interval_s: float
    timeout_s: float
    started_at: float
    format: int = SERVER_METRICS_FORMAT

    def to_dict(self) -> dict[str, object]:
        return {
            "line": "header",
            "format": self.format,
            "source": self.source,
            "explicit": self.explicit,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
            "started_at": self.started_at,
        }


@dataclass(frozen=True, slots=True)
class ServerMetricsLog:
    """What the file holds: its header, its scrapes in order, and how many lines could not be read."""

    header: ServerMetricsHeader
    scrapes: tuple[Scrape, ...]
    skipped_lines: int = 0


class ServerMetricsWriter:
    """Appends the header, then one line per scrape, each flushed at once."""

    def __init__(self, run_dir: Path, header: ServerMetricsHeader) -> None:
        self._fh: IO[bytes] = (run_dir / SERVER_METRICS_FILE).open("ab")
        self._write(header.to_dict())

    def _write(self, obj: Mapping[str, object]) -> None:
        self._fh.write(orjson.dumps(obj) + b"\n")
        self._fh.flush()

    def write(self, scrape: Scrape) -> None:
        line: dict[str, object] = {
            "line": "scrape",
            "t": scrape.t,
            "duration_s": round(scrape.duration_s, 6),
            "cpu_s": round(scrape.cpu_s, 6),
        }
        if scrape.error is not None:
            line["error"] = scrape.error
        else:
            line["server"] = scrape.kind
            line["values"] = dict(scrape.values or {})
        self._write(line)

    def close(self) -> None:
        self._fh.close()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _scrape(raw: Mapping[str, object]) -> Scrape | None:
    t, duration, cpu = (_number(raw.get(k)) for k in ("t", "duration_s", "cpu_s"))
    if t is None or duration is None:
        return None
    error = raw.get("error")
    if isinstance(error, str):
        return Scrape(t, duration, cpu or 0.0, error=error)
    values = raw.get("values")
    server = raw.get("server")
    if not isinstance(values, dict) or not isinstance(server, str):
        return None
    numbers = {str(k): v for k, v in ((k, _number(v)) for k, v in values.items()) if v is not None}
    return Scrape(t, duration, cpu or 0.0, kind=server, values=numbers)


def read_server_metrics(run_dir: Path) -> ServerMetricsLog | None:
    """The run's server metrics, or None when it has none (no file, or an empty one). A header of another format,
    or none: one :class:`ConfigError` line naming the file."""
    path = run_dir / SERVER_METRICS_FILE
    if not path.exists():
        return None
    lines = path.read_bytes().splitlines()
    if not lines:
        return None
    try:
        first = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        first = None
    if not isinstance(first, dict) or first.get("line") != "header":
        raise ConfigError(f"{path}: its first line is not a header")
    found = first.get("format")
    if found != SERVER_METRICS_FORMAT:
        raise ConfigError(
            f"{path}: format {orjson.dumps(found).decode()} is not one this version reads "
            f"(format {SERVER_METRICS_FORMAT})"
        )
    interval, timeout, started = (_number(first.get(k)) for k in ("interval_s", "timeout_s", "started_at"))
    header = ServerMetricsHeader(
        source=str(first.get("source", "")),
        explicit=bool(first.get("explicit", False)),
        interval_s=interval or 0.0,
        timeout_s=timeout or 0.0,
        started_at=started or 0.0,
    )
    scrapes: list[Scrape] = []
    skipped = 0
    for line in lines[1:]:
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            skipped += 1
            continue
        scrape = _scrape(raw) if isinstance(raw, dict) and raw.get("line") == "scrape" else None
        if scrape is None:
            skipped += 1
        else:
            scrapes.append(scrape)
    return ServerMetricsLog(header, tuple(scrapes), skipped)
