"""The README's pictures of the HTML report (run by hand; the PNGs go in docs/images/):

    python scripts/report_screenshot.py [--out docs/images]

Runs the default ``loadtest run`` (the embedded simulator, the demo sweep; about a minute) in a temporary
directory, opens the ``report.html`` whose path it prints last in headless Chromium (Debian's ``/usr/bin/chromium``
through Playwright, as the browser test does: ``tests/e2e/chromium.py``) at a laptop's size, 1280 × 800 CSS
pixels, and saves

- ``report-first-screen.png``: the first screen, down to the end of "What was run" (the verdict, the validity,
  what was run), and
- ``report-capacity.png``: the capacity chart,

each reduced to a 256-colour palette (Pillow) so that it stays small.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.chromium import launched, missing  # noqa: E402

WIDTH, HEIGHT = 1280, 800
FIRST_SCREEN = "report-first-screen.png"
CAPACITY = "report-capacity.png"


def loadtest_command() -> list[str]:
    """``loadtest`` as a user types it (the console script beside this interpreter), so that the report's
    "command" line reads ``loadtest run``; ``python -m loadtest`` where there is no such script."""
    script = Path(sys.executable).with_name("loadtest")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "loadtest"]


def default_run(workdir: Path) -> Path:
    """Run ``loadtest run`` in ``workdir``; the report path it prints last."""
    proc = subprocess.run(
        [*loadtest_command(), "run"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"loadtest run failed (exit {proc.returncode}): {proc.stderr.strip()}")
    last = proc.stdout.strip().splitlines()[-1]
    if not last.startswith("report: "):
        sys.exit(f"loadtest run did not end with the report's path: {last!r}")
    return workdir / last.removeprefix("report: ")


def save_small(png: bytes, path: Path) -> None:
    """``png`` as a 256-colour palette PNG at ``path``."""
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size / 1024:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNGs")
    args = parser.parse_args()
    absent = missing()
    if absent:
        sys.exit(f"cannot take the screenshots: {absent}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loadtest-screenshot-") as tmp:
        report = default_run(Path(tmp))
        with launched() as browser:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(report.as_uri(), wait_until="load")
            run_card = page.locator("#r0-run").bounding_box()
            bottom = HEIGHT if run_card is None else min(HEIGHT, run_card["y"] + run_card["height"] + 16)
            first_screen = page.screenshot(clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom})
            save_small(first_screen, args.out / FIRST_SCREEN)
            save_small(page.locator("#r0-capacity").screenshot(), args.out / CAPACITY)


if __name__ == "__main__":
    main()
