"""The HTML report as a reader gets it: a real run's ``report.html``, and a comparison of two runs, opened from
their ``file://`` URLs in headless Chromium (``tests/e2e/chromium.py``).

Each page must log no console error or warning and raise no page error; request nothing but itself (every request
is recorded twice: by Playwright, and by the DevTools protocol, which also sees the ``data:`` URIs that Playwright
does not report); give no two elements the same id; show its verdict, validity, tables, samples and every chart
(each chart's SVG visible, inside the page's width, with a size and something drawn); and print to a PDF of more
than one page, nothing wider than the paper, whose first page holds the verdict (or, compared, the comparison).
A full-page screenshot and the PDF of each are left in the test's ``tmp_path``.

CI installs Chromium (see .ci/run) and sets LOADTEST_REQUIRE_CHROMIUM=1, which turns a missing browser into a failure
instead of a skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.chromium import launched, missing
from tests.helpers import free_port, only_run_dir, run_cli

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FloatRect, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH, HEIGHT = 1280, 800  # a laptop's screen
A4_WIDTH = 794  # CSS px: 210 mm at 96 px per inch
# charts every run of two closed-loop stages on the simulator draws (others depend on what the run holds)
CORE_CHARTS = ("capacity", "cdf", "timeline", "tokens")


@pytest.fixture(scope="module", autouse=True)
def _browser_installed() -> None:
    absent = missing()
    if absent is None and importlib.util.find_spec("pypdf") is None:
        absent = "the Python package pypdf (the test extra) not installed"
    if absent is None:
        return
    if os.environ.get("LOADTEST_REQUIRE_CHROMIUM"):
        pytest.fail(f"{absent}, and LOADTEST_REQUIRE_CHROMIUM is set")
    pytest.skip(absent)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two short sweeps on the embedded simulator, each with the ``report.html`` its run wrote at its end."""
    out = tmp_path_factory.mktemp("runs")
    dirs = []
    for i, users in enumerate(("1,8", "1,4")):
        proc = run_cli("run", "-c", users, "-d", "2s", "--out", str(out / f"run{i}"))
        assert proc.returncode == 0, proc.stderr
        dirs.append(only_run_dir(out / f"run{i}"))
    return dirs[0], dirs[1]


# -- what the browser saw ----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """A page and everything it did while open: console messages (``type: text``), page errors, and the URLs it
    requested, as Playwright reports them and as the DevTools protocol does (with ``data:`` URIs)."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    devtools_requests: list[str] = field(default_factory=list)

    def complaints(self) -> list[str]:
        return [m for m in self.console if m.startswith(("error:", "warning:"))] + self.errors


@contextlib.contextmanager
def opened(browser: Browser, html: Path) -> Iterator[Seen]:
    """``html`` open in a new page of its own context at a laptop's width, watched from before it loads."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    try:
        page = context.new_page()
        seen = Seen(page)
        page.on("console", lambda message: seen.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
        page.on("request", lambda request: seen.requests.append(request.url))
        devtools = context.new_cdp_session(page)
        devtools.on(
            "Network.requestWillBeSent", lambda event: seen.devtools_requests.append(event["request"]["url"])
        )
        devtools.send("Network.enable")
        page.goto(html.as_uri(), wait_until="load")
        yield seen
    finally:
        context.close()


def only_itself(seen: Seen, html: Path) -> None:
    """The page logged and raised nothing, and fetched nothing but its own file."""
    assert not seen.complaints(), seen.complaints()
    assert seen.requests == [html.as_uri()], seen.requests
    assert seen.devtools_requests == [html.as_uri()], [url[:120] for url in seen.devtools_requests]


def ids_unique(page: Page) -> None:
    """No two elements share an id: the charts' clip paths and markers, referenced by id, draw from their own."""
    repeated = page.evaluate(
        """() => {
            const seen = new Map();
            for (const el of document.querySelectorAll("[id]")) seen.set(el.id, (seen.get(el.id) || 0) + 1);
            return [...seen].filter(([, n]) => n > 1).map(([id, n]) => `${id} ×${n}`);
        }"""
    )
    assert not repeated, repeated[:20]


def box(page: Page, selector: str) -> FloatRect:
    """The one element ``selector`` names is visible, with a non-empty box: the box."""
    element = page.locator(selector)
    assert element.count() == 1, f"{selector}: {element.count()} elements"
    assert element.is_visible(), f"{selector} is not visible"
    bounds = element.bounding_box()
    assert bounds is not None and bounds["width"] > 0 and bounds["height"] > 0, (selector, bounds)
    return bounds


def charts_shown(page: Page, scope: str) -> list[str]:
    """Every chart under ``scope``: its SVG visible, sized, inside the page's width, and drawn (it has paths).
    Their ids."""
    keys = page.eval_on_selector_all(f"{scope} figure.chart", "figures => figures.map(f => f.id)")
    for key in keys:
        bounds = box(page, f"#{key} > svg")
        assert bounds["width"] > 300 and bounds["height"] > 100, (key, bounds)
        assert bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= WIDTH, (key, bounds)
        assert page.locator(f"#{key} > svg path").count() > 0, f"{key}: nothing drawn"
    return list(keys)


def run_shown(page: Page, vid: str) -> None:
    """The run article ``vid``: verdict, validity, what was run, every table, every chart, and the samples."""
    for part in ("verdict", "validity", "run", "tables", "samples"):
        box(page, f"#{vid}-{part}")
    assert page.locator(f"#{vid}-samples pre.sample").first.is_visible(), f"{vid}: no sample shown"
    assert page.inner_text(f"#{vid}-verdict .headline").strip()
    tables = page.locator(f"#{vid}-tables table")
    assert tables.count() >= 2
    for i in range(tables.count()):
        table = tables.nth(i)
        assert table.is_visible() and table.locator("tbody tr").count() > 0, (
            f"{vid}: table {i} empty or hidden"
        )
    keys = charts_shown(page, f"#{vid}")
    assert {f"{vid}-{key}" for key in CORE_CHARTS} <= set(keys), keys


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def fits_the_paper(page: Page) -> None:
    """Laid out for print at A4's width (no margins: the narrower of A4 and Letter), no table, chart, card or sample
    is wider than the page, so none is cut at its right edge."""
    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_WIDTH, "height": HEIGHT})
    try:
        wide = page.evaluate(
            """() => [...document.querySelectorAll("table, figure.chart svg, .card, pre")]
                .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
                .map(el => `${el.closest("[id]")?.id} ${el.tagName}: ${el.getBoundingClientRect().width} px`)"""
        )
    finally:
        page.emulate_media(media="screen")
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    assert not wide, f"wider than A4 ({A4_WIDTH} px) in print: {wide}"


def printed(seen: Seen, pdf_file: Path, *first_page: str) -> None:
    """Print the page to ``pdf_file`` (Chromium's print to PDF): more than one page, and the text of each selector
    in ``first_page`` on the first."""
    from pypdf import PdfReader

    fits_the_paper(seen.page)
    pdf = seen.page.pdf()
    pdf_file.write_bytes(pdf)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 20_000, len(pdf)
    pages = PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) > 1
    page_one = flat(pages[0].extract_text())
    for selector in first_page:
        text = flat(seen.page.inner_text(selector))
        assert text and text in page_one, (selector, text, page_one[:600])


def screenshot(seen: Seen, png: Path) -> None:
    seen.page.screenshot(path=png, full_page=True)
    assert png.stat().st_size > 10_000


# -- the tests ---------------------------------------------------------------------------------------------------


def test_a_runs_report_in_the_browser(browser: Browser, runs: tuple[Path, Path], tmp_path: Path) -> None:
    html = runs[0] / "report.html"
    with opened(browser, html) as seen:
        only_itself(seen, html)
        assert seen.page.locator("article.run").count() == 1
        ids_unique(seen.page)
        run_shown(seen.page, "r0")
        screenshot(seen, tmp_path / "report.png")
        printed(seen, tmp_path / "report.pdf", "#r0-verdict .headline")
        only_itself(seen, html)  # nothing more was fetched or logged while printing


def test_a_comparison_in_the_browser(browser: Browser, runs: tuple[Path, Path], tmp_path: Path) -> None:
    html = tmp_path / "comparison.html"
    proc = run_cli("report", str(runs[0]), str(runs[1]), "-o", str(html))
    assert proc.returncode == 0, proc.stderr
    with opened(browser, html) as seen:
        only_itself(seen, html)
        page = seen.page
        box(page, "#comparison")
        box(page, "#comparison table")
        assert charts_shown(page, "#comparison")
        assert page.locator("article.run").count() == 2
        ids_unique(page)
        # the comparison comes first
        assert box(page, "#comparison")["y"] < box(page, "#r0")["y"] < box(page, "#r1")["y"]
        for vid in ("r0", "r1"):
            run_shown(page, vid)
        screenshot(seen, tmp_path / "comparison.png")
        printed(
            seen,
            tmp_path / "comparison.pdf",
            "#comparison h2",
            "#comparison tbody tr:first-child td:first-child",
        )
        only_itself(seen, html)


def test_the_watch_catches_what_it_is_for(browser: Browser, tmp_path: Path) -> None:
    """A page that logs, throws, and loads from a ``data:`` URI and from a closed port on 127.0.0.1 is caught."""
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    html = tmp_path / "bad.html"
    html.write_text(
        f'<!doctype html><html><head><title>bad</title></head><body><p id="hidden" style="display:none">x</p>'
        f'<svg width="10" height="10"><image href="data:image/png;base64,{pixel}" width="5" height="5"/></svg>'
        f'<link rel="stylesheet" href="http://127.0.0.1:{free_port()}/style.css">'
        '<script>console.warn("careful"); throw new Error("boom");</script></body></html>',
        encoding="utf-8",
    )
    with opened(browser, html) as seen:
        seen.page.wait_for_load_state("networkidle")
        assert "warning: careful" in seen.console
        assert any("boom" in error for error in seen.errors)
        assert any(url.startswith("http://127.0.0.1:") for url in seen.requests)
        assert any(url.startswith("data:image/png") for url in seen.devtools_requests)
        with pytest.raises(AssertionError):
            only_itself(seen, html)
        with pytest.raises(AssertionError, match="not visible"):
            box(seen.page, "#hidden")
