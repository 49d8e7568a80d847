"""Headless Chromium for browser tests: Debian's /usr/bin/chromium, driven by Playwright.

Playwright never downloads a browser here: it launches the system Chromium by path, with a fresh
profile per test and no background network traffic (the machine has no internet).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Error, Page

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
)
ARTIFACTS = Path(__file__).parent / "artifacts"  # gitignored: screenshots of browser tests


@dataclass
class BrowserPage:
    """A page of a fresh headless Chromium, with what its console reported as errors."""

    page: Page
    errors: list[str] = field(default_factory=list)

    async def screenshot(self, name: str) -> Path:
        """Save a full-page PNG under tests/artifacts/ and return its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


def _require_chromium() -> None:
    """Skip the test, saying why, when Chromium or the Playwright driver is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (or set CHROMIUM_PATH)"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("the Playwright driver is not installed: `pip install playwright`")


@contextlib.asynccontextmanager
async def chromium_page(*, width: int = 1280, height: int = 800) -> AsyncIterator[BrowserPage]:
    """Start headless Chromium with a throwaway profile and yield one page; close it after."""
    _require_chromium()
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,  # --user-data-dir: Playwright passes it itself, fresh per test
                executable_path=str(CHROMIUM),
                headless=True,
                args=list(CHROMIUM_ARGS),
                viewport={"width": width, "height": height},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                browser_page = BrowserPage(page)
                page.on("console", lambda msg: _note_console(browser_page, msg))
                page.on("pageerror", lambda err: _note_page_error(browser_page, err))
                yield browser_page
            finally:
                await context.close()


def _note_console(target: BrowserPage, message: ConsoleMessage) -> None:
    if message.type == "error":
        target.errors.append(message.text)


def _note_page_error(target: BrowserPage, error: Error) -> None:
    target.errors.append(f"uncaught: {error}")
