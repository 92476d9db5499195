"""A real browser for the web page's tests and bench/ui.py: Playwright (Python) driving Debian's ``chromium``.

Playwright is the project's dev extra (pyproject); the browser is Debian's package (``scripts/chromium.sh``
installs it; ``AIMA_CHROMIUM`` names another binary) — never a browser build that Playwright downloads.
Without either, the tests that need a browser are skipped saying why — except under ``AIMA_TEST_STRICT=1``
(CI), where they fail.

``Watch`` records what a page did wrong (console errors, uncaught exceptions, failed requests, answers of 400
and above) so every test can end with ``watch.assert_clean()``. Screenshots go to ``ARTIFACTS``
(``AIMA_UI_ARTIFACTS``, default ``.artifacts/ui`` in the repository, ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("AIMA_UI_ARTIFACTS", ROOT / ".artifacts" / "ui"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # the speech a test makes is played without a click first
                 "--autoplay-policy=no-user-gesture-required"]


def chromium_path() -> str | None:
    found = os.environ.get("AIMA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).exists() else None


def unavailable() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "Debian's chromium is not installed (bash scripts/chromium.sh installs it)"
    return None


def need_browser() -> None:
    why = unavailable()
    if why is None:
        return
    if os.environ.get("AIMA_TEST_STRICT") == "1":
        pytest.fail(f"a browser is required here (AIMA_TEST_STRICT=1): {why}", pytrace=False)
    pytest.skip(why)


@contextmanager
def launch(extra_args: list[str] | None = None) -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *(extra_args or [])])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What went wrong on a page: console errors, page errors, failed requests, HTTP errors, and every URL asked."""

    problems: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # substrings of problems that a test expects

    def attach(self, page: Any) -> Watch:
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text} @ {m.location}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self._failed(r))
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.request.method} "
                                                                                f"{r.url}"))
        return self

    def _failed(self, r: Any) -> None:
        failure = r.failure or ""
        if "ERR_ABORTED" in failure and r.resource_type in ("fetch", "xhr"):
            return  # a stream the page closed itself (leaving a page, or a new one replacing it)
        self.problems.append(f"request failed: {r.method} {r.url}: {failure}")

    def allow(self, text: str) -> None:
        self.allowed.append(text)

    def assert_clean(self) -> None:
        left = [p for p in self.problems if not any(a in p for a in self.allowed)]
        assert not left, "the page went wrong:\n" + "\n".join(left)


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
