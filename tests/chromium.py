"""Headless Chromium (Debian's ``chromium``) for looking at the report as a reader would:
no sandbox (containers), no GPU, and no network at all (every host resolves nowhere,
every proxy is refused), so a page that tried to fetch anything would show it.

``python -m tests.chromium REPORT.html SHOT.png`` saves a screenshot (``make
report-screenshot``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def executable() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("no chromium on PATH: apt-get install chromium (make test does)")
    return found


def _run(page: Path, *flags: str) -> str:
    done = subprocess.run(
        [executable(), *FLAGS, *flags, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def dom(page: Path) -> str:
    """The page's DOM once Chromium has loaded and laid it out."""
    return _run(page, "--dump-dom", "--virtual-time-budget=2000")


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 4000) -> Path:
    _run(page, f"--screenshot={out.resolve()}", f"--window-size={width},{height}")
    return out


def pdf(page: Path, out: Path) -> Path:
    """The page printed (A4 by the page's print styles), as a reader would print it."""
    _run(page, f"--print-to-pdf={out.resolve()}", "--no-pdf-header-footer")
    return out


if __name__ == "__main__":
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
