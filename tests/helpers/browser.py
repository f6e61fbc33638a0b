"""Debian's Chromium, headless, driven by Playwright for the browser tests."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: `make install` puts it there
# Chromium as root in a sandbox-less container, with nothing reaching for Google's hosts.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium: Debian's (``CHROMIUM``), not a downloaded one."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()
