"""Debian's Chromium, headless, driven by Playwright: for the test that opens the HTML report in a browser and for
``scripts/report_screenshot.py``.

Playwright's own browser builds are never downloaded (nothing outside the package registries is reachable here);
it drives the system's ``/usr/bin/chromium`` (Debian's package ``chromium``, which ``.ci/run`` installs). The flags
keep Chromium off the network: on a closed network its background connections (component updates, sync, field
trials) are refused, many at a time. Playwright starts each browser with a new, empty profile directory of its own
and deletes it when the browser closes.

``playwright`` is imported only when a browser is launched, so that a machine without it can still import this
module to learn what is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM", "LAUNCH_ARGS", "launched", "missing"]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = (
    "--no-sandbox",  # CI and the developers' machines run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)


def missing() -> str | None:
    """What is missing to launch the browser, in one line, or None when nothing is."""
    absent = []
    if importlib.util.find_spec("playwright") is None:
        absent.append("the Python package playwright (the test extra)")
    if not CHROMIUM.is_file():
        absent.append(f"{CHROMIUM} (Debian's package chromium)")
    return " and ".join(absent) + " not installed" if absent else None


@contextlib.contextmanager
def launched() -> Iterator[Browser]:
    """Headless Chromium, closed (and Playwright's driver stopped) on the way out, whatever happened."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(LAUNCH_ARGS))
        try:
            yield browser
        finally:
            browser.close()
