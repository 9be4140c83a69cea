"""Regenerate the README's screenshots (docs/screenshots/*.png) from the browser tests.

Usage, from the repository root with the development environment active::

    python scripts/screenshots.py

It runs the browser tests of issue #14 (tests/e2e/browser: a real ``upkeep serve`` and
headless Chromium), which save what the browser showed in tests/artefacts/screenshots/,
then copies the chosen ones here: cut to at most 1280x800 and reduced to a palette of
256 colours, so the committed files stay small. ``make test`` never writes these files;
only this script does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ROOT / "tests" / "artefacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
CHOSEN = ("overview", "check-turned-red", "alert-acknowledged", "status-page")
"""The browser tests' screenshots the README shows, by name."""
MAX_SIZE = (1280, 800)
COLOURS = 256


def run_browser_tests() -> None:
    """Run the browser tests in one process (one daemon for all); exit if they fail."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "tests/e2e/browser"],
        cwd=ROOT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"the browser tests failed ({done.returncode}): no screenshot copied")


def shrink(source: Path, destination: Path) -> None:
    """Copy a screenshot, cut to ``MAX_SIZE`` from its top left corner, as a palette PNG."""
    with Image.open(source) as image:
        width, height = image.size
        cut = image.convert("RGB").crop((0, 0, min(width, MAX_SIZE[0]), min(height, MAX_SIZE[1])))
        reduced = cut.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT)
        reduced.save(destination, optimize=True)


def main() -> None:
    run_browser_tests()
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in CHOSEN:
        destination = DOCS / f"{name}.png"
        shrink(ARTEFACTS / f"{name}.png", destination)
        size = destination.stat().st_size // 1024
        sys.stdout.write(f"{destination.relative_to(ROOT)}: {size} KiB\n")


if __name__ == "__main__":
    main()
