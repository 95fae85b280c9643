"""Headless Chromium for tests that check what a person sees, not just what the HTML says.

Debian's ``chromium`` and ``chromedriver`` driven by selenium, with the network cut off (a dead
proxy and a resolver that resolves nothing), so a page that tried to fetch anything would fail
visibly instead of quietly working on a developer's machine and breaking offline. The browser's
console is captured (``goog:loggingPrefs``) so tests can assert that a page logs no error.

Where the browser is missing the tests skip with the reason, unless ``ARCHSMITH_REQUIRE_BROWSER=1``
(CI), where a missing browser fails them: the check must not silently vanish.

Usage::

    from browser import open_page

    def test_page(tmp_path):
        with open_page(tmp_path / "report.html") as driver:
            assert "run" in driver.title

For several pages in one test module, start the browser once with ``chromium()`` and ``load()``
each page into it.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

__all__ = [
    "REQUIRE_ENV",
    "Browser",
    "chromium",
    "console_errors",
    "external_resources",
    "find_browser",
    "full_page_screenshot",
    "load",
    "open_page",
    "png_size",
    "require_browser",
]

REQUIRE_ENV = "ARCHSMITH_REQUIRE_BROWSER"
CHROMIUM_ENV = "ARCHSMITH_CHROMIUM"
CHROMEDRIVER_ENV = "ARCHSMITH_CHROMEDRIVER"

#: Chromium refuses screenshots taller than its largest texture; longer pages are cut here.
MAX_SCREENSHOT_HEIGHT = 16_000

_ARGS = (
    "--headless=new",
    "--no-sandbox",  # containers and CI runners have no user namespaces for Chromium's sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # no network: every HTTP(S) request goes to a closed port, no name resolves
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)


@dataclass(frozen=True)
class Browser:
    """Where Chromium and its driver are."""

    chromium: Path
    chromedriver: Path


def _which(env: str, default: str, name: str) -> Path | None:
    explicit = os.environ.get(env)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    if Path(default).is_file():
        return Path(default)
    found = shutil.which(name)
    return Path(found) if found else None


def find_browser() -> tuple[Browser | None, str]:
    """The browser and driver, or None and why not (for the skip message)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[dev]')"
    chromium_path = _which(CHROMIUM_ENV, "/usr/bin/chromium", "chromium")
    driver_path = _which(CHROMEDRIVER_ENV, "/usr/bin/chromedriver", "chromedriver")
    missing = [
        what
        for what, path in (("chromium", chromium_path), ("chromedriver", driver_path))
        if path is None
    ]
    if chromium_path is None or driver_path is None:
        return None, (
            f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver, or set"
            f" {CHROMIUM_ENV} / {CHROMEDRIVER_ENV})"
        )
    return Browser(chromium_path, driver_path), ""


def require_browser(*, module_level: bool = False) -> Browser:
    """The browser, or skip the test (fail it when ``ARCHSMITH_REQUIRE_BROWSER=1``).

    ``module_level=True`` skips a whole test module from its top, before it imports selenium.
    """
    browser, why = find_browser()
    if browser is not None:
        return browser
    if os.environ.get(REQUIRE_ENV, "") == "1":
        pytest.fail(f"a headless browser is required here ({REQUIRE_ENV}=1) but {why}")
    pytest.skip(f"no headless browser: {why}", allow_module_level=module_level)


@contextmanager
def chromium(*, width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """Start headless Chromium with the network cut off and its console captured; quit after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser.chromium)
    for arg in _ARGS:
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory(prefix="archsmith-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(browser.chromedriver)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def load(driver: WebDriver, path: Path) -> None:
    """Open a local file and wait until it has finished loading."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


@contextmanager
def open_page(path: Path, *, width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """A fresh headless browser showing the local file ``path``."""
    with chromium(width=width, height=height) as driver:
        load(driver, path)
        yield driver


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """The browser console's errors since the last call (the log is drained by reading it)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return [e for e in entries if e.get("level") == "SEVERE"]


def external_resources(driver: WebDriver) -> list[str]:
    """URLs of every resource the page fetched (stylesheets, images, scripts, fonts...)."""
    names: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return names


def full_page_screenshot(driver: WebDriver, path: Path) -> Path:
    """Save the whole page, not just the window, as a PNG (cut at MAX_SCREENSHOT_HEIGHT)."""
    size = driver.get_window_size()
    # the window is taller than the page's viewport by the browser's own (invisible) frame
    frame = size["height"] - int(driver.execute_script("return window.innerHeight"))
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(size["width"], min(height, MAX_SCREENSHOT_HEIGHT) + frame)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(path)):
            raise OSError(f"the browser could not write the screenshot {path}")
    finally:
        driver.set_window_size(size["width"], size["height"])
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header; ValueError when the file is not a PNG."""
    head = Path(path).read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)
