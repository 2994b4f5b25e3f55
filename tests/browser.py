"""Headless Chromium for the web page's tests and screenshot (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "tinytcp" / "web" / "static"
SCREENSHOT = ROOT / "docs" / "web.png"
#: the same page at a phone's width
PHONE_SCREENSHOT = ROOT / "docs" / "web-phone.png"
#: the PNG text chunk that records which page files the screenshot shows
STAMP_KEY = b"tinytcp-page-sha256"

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
#: why the browser tests cannot run here, or None
MISSING = (
    None
    if CHROMIUM and CHROMEDRIVER
    else "Chromium or its driver is not installed: apt-get install chromium chromium-driver (.ci/run does)"
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium(width: int = 1200, height: int = 860) -> Any:
    """A headless Chromium driven through chromedriver, with a fresh profile; quit() it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, MISSING
    profile = tempfile.mkdtemp(prefix="tinytcp-chromium-")
    options = webdriver.ChromeOptions()
    # both paths given: Selenium never downloads a browser or driver
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    quit_driver = driver.quit

    def quit_and_clean() -> None:
        quit_driver()
        shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Wait until ``condition(driver)`` is truthy; on timeout say what was awaited and show the page's text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text
        raise AssertionError(f"timed out waiting for {what or condition}; the page shows:\n{body}") from None


def text_of(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def page_digest() -> str:
    """SHA-256 over the page's files: what a screenshot of it depends on."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def stamp_png(png: bytes, digest: str) -> bytes:
    """The PNG with a tEXt chunk recording ``digest``, right after its header chunk."""
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    return png[:end_of_ihdr] + png_chunk(b"tEXt", STAMP_KEY + b"\0" + digest.encode()) + png[end_of_ihdr:]


def png_stamp(png: bytes) -> str | None:
    """The digest a PNG was stamped with, or None."""
    pos = 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"tEXt" and data.startswith(STAMP_KEY + b"\0"):
            return data[len(STAMP_KEY) + 1 :].decode()
        pos += 12 + length
    return None


def require_browser() -> bool:
    """CI sets TINYTCP_REQUIRE_BROWSER=1 so that a missing Chromium fails instead of skipping."""
    return os.environ.get("TINYTCP_REQUIRE_BROWSER") == "1"
