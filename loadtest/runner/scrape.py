"""Server metrics during a run: where to scrape them, and a thread of the CLI process that scrapes about once a
second into ``server_metrics.jsonl`` (:mod:`loadtest.rundir.server_metrics`).

The scraper lives in the CLI process, never in the engine: the engine's event loop times every request, and a
scrape there (a blocking GET, a parse of ~20 KB of text) would show up as lag in the measurement. The CLI is
mostly idle while the engine runs (it polls two files five times a second); one short GET and a parse a second
cost it a few milliseconds (docs/performance.md, "Server metrics").

**Where** (:func:`metrics_candidates`): ``--server-metrics URL`` (or a scenario's ``[load] server_metrics``) names
it; by default (``auto``) the endpoint's own ``/metrics`` — for an OpenAI-compatible base URL ``http://host:port/v1``
that is ``http://host:port/metrics`` (vLLM, SGLang, llama.cpp and TGI serve it at the root), then
``{base}/metrics``; for a Databricks endpoint the workspace's export
``{host}/api/2.0/serving-endpoints/{name}/metrics``, with the endpoint's own credentials. The default probes its
candidates once before the run and silently goes without when none answers with known metric names; a named URL is
used whatever its probe said (a failing probe is a warning), and ``off`` scrapes nothing.

**Credentials**: the endpoint's headers go with a scrape only to the endpoint's own origin (scheme, host and port)
— a URL elsewhere gets none, so a token never travels to a host the user did not point the run at. Nothing about
them is written.

**Failures never stop or slow the run**: every scrape has a short timeout; a refused connection, a timeout, a
non-200, a body that is not Prometheus text is one ``error`` line in the file (counted; ``analyze`` and the report
show the count and the first error), and the next scrape is on time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import httpx

from loadtest.client.protocol import EndpointSpec
from loadtest.client.scrub import public_url
from loadtest.client.server_metrics import Scrape, scrape_once
from loadtest.errors import ConfigError
from loadtest.rundir import ServerMetricsHeader, ServerMetricsWriter
from loadtest.spec.runspec import parse_server_metrics

__all__ = [
    "INTERVAL_S",
    "TIMEOUT_S",
    "MetricsPlan",
    "Scraper",
    "metrics_candidates",
    "resolve_metrics",
    "scraping",
]

INTERVAL_S: Final = 1.0
TIMEOUT_S: Final = 2.0

Headers = Callable[[], Mapping[str, str]]


def _no_headers() -> Mapping[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class MetricsPlan:
    """What to scrape: ``url``, the headers of each scrape (called each time: an OAuth token refreshes), whether
    the user named it, and the pace."""

    url: str
    explicit: bool
    headers: Headers = field(default=_no_headers)
    interval_s: float = INTERVAL_S
    timeout_s: float = TIMEOUT_S


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()


def metrics_candidates(endpoint: EndpointSpec) -> list[str]:
    """The URLs the default tries, in order (module docstring)."""
    base = endpoint.base_url.rstrip("/")
    if endpoint.api == "databricks":
        return [f"{base}/api/2.0/serving-endpoints/{endpoint.model}/metrics"]
    parts = urlsplit(base)
    root = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    out = []
    for prefix in (path.removesuffix("/v1"), ""):
        candidate = f"{root}{prefix}/metrics"
        if candidate not in out:
            out.append(candidate)
    own = f"{base}/metrics"
    if own not in out:
        out.append(own)
    return out


def _headers_for(url: str, endpoint: EndpointSpec, headers: Headers) -> Headers:
    return headers if _origin(url) == _origin(endpoint.base_url) else _no_headers


def _probe(url: str, headers: Headers, timeout_s: float, transport: httpx.BaseTransport | None) -> Scrape:
    with _client(timeout_s, transport) as client:
        return scrape_once(client, url, headers())


def _client(timeout_s: float, transport: httpx.BaseTransport | None) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)), transport=transport)


def resolve_metrics(
    option: str | None,
    endpoint: EndpointSpec,
    headers: Headers = _no_headers,
    *,
    echo: Callable[[str], None] = lambda _line: None,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = TIMEOUT_S,
) -> MetricsPlan | None:
    """The plan for ``--server-metrics`` (``None``/``auto``, ``off`` or a URL) against ``endpoint``: probed once.
    ``echo`` gets one line on what was found (and the warning when a named URL fails)."""
    try:
        choice = parse_server_metrics(option or "auto")
    except ValueError as exc:
        raise ConfigError(f"--server-metrics {exc}") from None
    if choice == "off":
        return None
    if choice != "auto":
        chosen = _headers_for(choice, endpoint, headers)
        probe = _probe(choice, chosen, timeout_s, transport)
        shown = public_url(choice)
        if probe.ok:
            echo(f"server metrics: {probe.kind} at {shown}, scraped every {INTERVAL_S:.0f}s")
        else:
            echo(
                f"warning: server metrics: {shown} failed ({probe.error}); the run goes on and keeps "
                "trying, every failure counted"
            )
        return MetricsPlan(choice, True, chosen)
    for url in metrics_candidates(endpoint):
        chosen = _headers_for(url, endpoint, headers)
        probe = _probe(url, chosen, timeout_s, transport)
        if probe.ok:
            echo(f"server metrics: {probe.kind} at {public_url(url)}, scraped every {INTERVAL_S:.0f}s")
            return MetricsPlan(url, False, chosen)
    return None  # the default goes without, silently: most endpoints have no metrics to offer


class Scraper:
    """Scrapes ``plan.url`` every ``plan.interval_s`` on a daemon thread into ``run_dir``'s file until stopped.
    A scrape that takes longer than the interval is followed by the next at once (never two at a time)."""

    def __init__(
        self,
        plan: MetricsPlan,
        run_dir: Path,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self._clock = clock
        self._stop = threading.Event()
        self._client = _client(plan.timeout_s, transport)
        self._writer = ServerMetricsWriter(
            run_dir,
            ServerMetricsHeader(
                source=public_url(plan.url),
                explicit=plan.explicit,
                interval_s=plan.interval_s,
                timeout_s=plan.timeout_s,
                started_at=clock(),
            ),
        )
        self._thread = threading.Thread(target=self._loop, name="server-metrics", daemon=True)
        self.scrapes = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                scrape = scrape_once(self._client, self.plan.url, self.plan.headers(), clock=self._clock)
                if self._stop.is_set() and not scrape.ok:
                    break  # cut short by the run's end: not the server's failure
                self._writer.write(scrape)
                self.scrapes += 1
                self.failed += 0 if scrape.ok else 1
                self._stop.wait(max(0.0, self.plan.interval_s - (time.monotonic() - began)))
        except Exception as exc:  # a bug here must not take the run with it: one last line says what happened
            self._writer.write(
                Scrape(self._clock(), 0.0, 0.0, error=f"scraper stopped: {type(exc).__name__}")
            )

    def stop(self) -> None:
        """Stop after the scrape in flight (at most its timeout), then close the file and the connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.plan.timeout_s + 1.0)
        self._client.close()
        self._writer.close()


@contextmanager
def scraping(plan: MetricsPlan | None, run_dir: Path) -> Iterator[Scraper | None]:
    """A :class:`Scraper` running for the block (nothing when ``plan`` is None)."""
    if plan is None:
        yield None
        return
    scraper = Scraper(plan, run_dir)
    scraper.start()
    try:
        yield scraper
    finally:
        scraper.stop()
